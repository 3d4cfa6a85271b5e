"""Deployment files, checked without a container engine (none runs on the development machines):
docker-compose.yml validates with Docker Compose, the Dockerfile's stages keep to issue 6's rules,
the Kubernetes objects are well formed, every PSCT_* variable any of them sets is a real setting,
and the wheel the images install carries the code, migrations and weights and works on its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from service.settings import Settings
from tests.conftest import REPO

SETTINGS = {f"PSCT_{name.upper()}" for name in Settings.model_fields}
K8S = REPO / "deploy" / "k8s"


def _compose(*args: str, keys: str | None = "test-key") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSCT_")}
    if keys is not None:
        env["PSCT_API_KEYS"] = keys
    # Compose v2 (`docker compose`) where the plugin is installed, else Debian's docker-compose 1.29.
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False) if shutil.which(
        "docker") else None  # fmt: skip
    if plugin is not None and plugin.returncode == 0:
        command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        pytest.fail("Docker Compose is not installed: `make test` installs Debian's docker-compose")
    return subprocess.run([*command, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False)


def _resolved_compose(*profiles: str) -> dict:
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    answer = _compose(*flags, "config")
    assert answer.returncode == 0, answer.stderr
    return yaml.safe_load(answer.stdout)


def test_compose_file_validates_and_demands_api_keys() -> None:
    assert _compose("config", "-q").returncode == 0
    refused = _compose("config", "-q", keys=None)
    assert refused.returncode != 0 and "PSCT_API_KEYS" in refused.stderr


def test_compose_services_follow_the_production_rules() -> None:
    services = _resolved_compose("gpu", "cpu", "demo")["services"]
    assert {"redis", "postgres", "gateway", "scp", "worker", "worker-cpu", "orthanc", "demo"} <= set(services)
    redis = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis and "--appendonly yes" in redis
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["worker"]["build"]["target"] == "gpu" and services["gateway"]["build"]["target"] == "cpu"
    for name in ("gateway", "scp", "worker", "worker-cpu"):
        env = services[name]["environment"]
        assert env["PSCT_BROKER_URL"].startswith("redis://redis:")
        assert env["PSCT_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert {k for k in env if k.startswith("PSCT_")} <= SETTINGS, name
        assert services[name]["stop_grace_period"] in ("35s", 35)
    for name in ("scp", "worker", "worker-cpu"):  # health from their own metrics port
        assert services[name]["environment"]["HEALTHCHECK_URL"].endswith(":9464/readyz")
    # The demo PACS is wired both ways: Orthanc knows PSCT's listener, PSCT can be pointed at Orthanc.
    orthanc = (REPO / "deploy" / "orthanc-demo.json").read_text()
    assert '"psct": ["PSCT", "scp", 11112]' in orthanc and '"DicomAet": "ORTHANC"' in orthanc


def _stages(dockerfile: str) -> dict[str, str]:
    parts = re.split(r"^FROM .* AS (\S+)$", dockerfile, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_dockerfile_stages_keep_cpu_gpu_apart_without_torch_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = _stages(text)
    assert {"wheel", "base", "cpu", "gpu"} <= set(stages)
    assert "[cpu,postgres]" in stages["cpu"] and "gpu" not in stages["cpu"].split("install", 1)[1].split("\n")[0]
    assert "[gpu,postgres]" in stages["gpu"] and "[cpu" not in stages["gpu"]
    for name in ("cpu", "gpu"):
        assert re.search(r"^USER psct$", stages[name], flags=re.MULTILINE), name
        assert "model_check" in stages[name], f"{name}: weights not checked against their sidecar"
    installs = [line for line in text.splitlines() if "install" in line and not line.startswith("#")]
    assert not [line for line in installs if "torch" in line or "train" in line]
    assert "HEALTHCHECK" in stages["base"] and "sha256" in stages["wheel"]


def _k8s_objects() -> list[dict]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [o for o in yaml.safe_load_all(path.read_text()) if o]
    return objects


def test_kubernetes_objects_are_complete_and_use_real_settings() -> None:
    objects = _k8s_objects()
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "psct-gateway"), ("Deployment", "psct-scp"), ("Deployment", "psct-worker"),
            ("Service", "psct-gateway"), ("Service", "psct-scp"), ("PersistentVolumeClaim", "psct-home"),
            ("ConfigMap", "psct"), ("Secret", "psct")} <= kinds  # fmt: skip
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    for o in objects:
        if o["kind"] in ("ConfigMap", "Secret"):
            data = o.get("data") or o.get("stringData")
            assert set(data) <= SETTINGS, o["metadata"]["name"]
        if o["kind"] == "Deployment":
            pod = o["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] and pod["terminationGracePeriodSeconds"] >= 30
            (container,) = pod["containers"]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            if o["metadata"]["name"] == "psct-worker":
                assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
                assert container["image"].endswith(":gpu")
    commented = re.findall(r"#\s*(PSCT_[A-Z_]+):", (K8S / "configmap.yaml").read_text())
    assert commented and set(commented) <= SETTINGS


def test_example_env_file_sets_only_real_settings() -> None:
    text = (REPO / "deploy" / "psct.env.example").read_text()
    names = re.findall(r"^([A-Z_]+)=", text, flags=re.MULTILINE)
    assert {n for n in names if n.startswith("PSCT_")} <= SETTINGS
    compose = (REPO / "docker-compose.yml").read_text()
    assert all(n.startswith("PSCT_") or "${" + n in compose for n in names), "a compose variable compose never reads"


@pytest.mark.slow
def test_the_wheel_the_images_install_works_on_its_own(tmp_path: Path) -> None:
    """Built like the Dockerfile's first stage, unpacked and imported from outside the repo."""
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "--wheel-dir", str(wheels), str(REPO)], capture_output=True, text=True)  # fmt: skip
    assert build.returncode == 0, build.stderr
    shutil.rmtree(REPO / "build", ignore_errors=True)
    (wheel,) = wheels.glob("psct-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    weights = [f"model/weights/psct-net{stage}{suffix}" for stage in ("-stage2", "") for suffix in (".onnx", ".json")]
    for needed in (*weights, "service/migrations/env.py", "service/migrations/script.py.mako",
                   "service/migrations/versions/0001_v0_1_schema.py"):  # fmt: skip
        assert needed in names, needed
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = (
        "import sys; from pathlib import Path; import service, worker.tasks, psct.cli;"
        "from service.store import JobStore; from service import migrate; from service.settings import Settings;"
        "from service.readiness import model_check;"
        "assert Path(service.__file__).is_relative_to(sys.argv[1]), service.__file__;"
        "assert migrate.current(JobStore(f'sqlite:///{sys.argv[1]}/s.sqlite').engine) == migrate.head();"
        "assert model_check(Settings()) == 'ok'; assert 'torch' not in sys.modules; print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSCT_")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
