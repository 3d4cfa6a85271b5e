"""`psct`: the command line. It only wires the parts together; each part lives in its package."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="PSCT: research skull CT from two radiographs. Not for diagnostic use.",
)
log = logging.getLogger("psct")
WORKER_POLL_S = 1.0  # how often `psct serve` checks that its worker is alive
# After SIGTERM, the worker gets this long to finish its task before it is killed; the job then
# resumes at the next start. Below the contract's 30 s exit limit.
WORKER_STOP_GRACE_S = 20.0


def _logging(settings, role: str) -> None:  # type: ignore[no-untyped-def]
    from service.logs import configure

    configure(settings.log_format, role)


def _guard_model(settings) -> None:  # type: ignore[no-untyped-def]
    """Refuse to start on a missing or altered model file (sha256 against its sidecar)."""
    from service.readiness import model_check

    verdict = model_check(settings)
    if verdict != "ok":
        typer.echo(f"refusing to start: PSCT_MODEL_PATH {settings.model_path}: {verdict}", err=True)
        raise typer.Exit(2)


def _settings(make_home: bool = True, **overrides: object):  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    from service.settings import get_settings

    for key, value in overrides.items():
        if value is not None:
            os.environ[f"PSCT_{key.upper()}"] = str(value)
    get_settings.cache_clear()
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"PSCT_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        typer.echo(f"bad settings: {problems}", err=True)
        raise typer.Exit(2) from None
    if make_home:
        settings.home.mkdir(parents=True, exist_ok=True)
    return settings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guard_binding(settings) -> None:  # type: ignore[no-untyped-def]
    if not _is_loopback(settings.http_host) and not settings.api_key_list:
        typer.echo(
            f"refusing to bind REST to {settings.http_host}: set PSCT_API_KEYS when binding off loopback", err=True
        )
        raise typer.Exit(2)
    settings.destination_list  # noqa: B018 - validates PSCT_DESTINATIONS before anything starts
    settings.allowed_networks  # noqa: B018
    from service.tls import export_context, listener_context

    listener_context(settings), export_context(settings)  # TLS files readable, none missing


def _resume_jobs(settings) -> None:  # type: ignore[no-untyped-def]
    """Embedded queue: the store is the truth, so drop stale messages and queue every unfinished job."""
    from service.queue import celery_app, enqueue_reconstruction
    from service.store import JobStore

    celery_app().control.purge()
    for job_id in JobStore(settings.database).jobs_to_resume():
        log.info("resuming job %s", job_id)
        enqueue_reconstruction(job_id)


def _run_gateway(settings) -> None:  # type: ignore[no-untyped-def]
    """Serve REST until SIGINT/SIGTERM, then return (uvicorn alone would re-raise the signal and
    kill the process before the listener and the worker are stopped)."""
    import uvicorn

    from service.api import create_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    # log_config=None: uvicorn's records go through our handler (JSON when PSCT_LOG_FORMAT=json).
    config = uvicorn.Config(create_app(), host=settings.http_host, port=settings.http_port, log_config=None)
    server = Server(config)

    def stop(*_: object) -> None:
        server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    server.run()


def _listener(settings):  # type: ignore[no-untyped-def]
    from service.listener import Listener
    from service.queue import enqueue_reconstruction
    from service.store import JobStore

    return Listener(settings, JobStore(settings.database), enqueue_reconstruction)


Host = Annotated[str | None, typer.Option(help="REST bind address (PSCT_HTTP_HOST)")]
Port = Annotated[int | None, typer.Option(help="REST port (PSCT_HTTP_PORT)")]
DicomPort = Annotated[int | None, typer.Option(help="DICOM port (PSCT_DICOM_PORT)")]
Home = Annotated[Path | None, typer.Option(help="data folder (PSCT_HOME)")]


@app.command()
def serve(home: Home = None, http_host: Host = None, http_port: Port = None, dicom_port: DicomPort = None) -> None:
    """All in one: REST gateway, DICOM listener and a worker, embedded queue and store under PSCT_HOME."""
    settings = _settings(home=home, http_host=http_host, http_port=http_port, dicom_port=dicom_port)
    _logging(settings, "serve")
    _guard_binding(settings)
    _guard_model(settings)
    if settings.embedded_queue:
        _resume_jobs(settings)
    worker = _SupervisedWorker(settings)
    listener = _listener(settings)
    listener.start()
    try:
        _run_gateway(settings)
    finally:
        listener.stop()
        worker.stop()
    log.info("psct stopped")


class _SupervisedWorker:
    """The worker process of `psct serve`, started again when it dies (kill -9, out of memory). The
    embedded queue never redelivers a message its dead consumer held, so the store's unfinished jobs
    are queued again (a job queued twice runs once: a finished job ignores its second message)."""

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        self.settings = settings
        self.process = self._spawn()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="worker-supervisor", daemon=True).start()

    @staticmethod
    def _spawn() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "psct.cli", "worker"], env=os.environ.copy())

    def _watch(self) -> None:
        while not self._stop.wait(WORKER_POLL_S):
            if self.process.poll() is None:
                continue
            log.error("worker exited (status %s): starting a new one", self.process.returncode)
            if self.settings.embedded_queue:
                _resume_jobs(self.settings)
            self.process = self._spawn()

    def stop(self) -> None:
        self._stop.set()
        _stop_worker(self.process)


def _stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)  # Celery warm shutdown: finish the current task
        try:
            worker.wait(WORKER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning(
                "worker still busy after %.0f s: killed, its job resumes at the next start", WORKER_STOP_GRACE_S
            )
            worker.kill()
            worker.wait()


@app.command()
def gateway(home: Home = None, http_host: Host = None, http_port: Port = None) -> None:
    """The REST gateway alone (scale-out on a shared broker and store)."""
    settings = _settings(home=home, http_host=http_host, http_port=http_port)
    _logging(settings, "gateway")
    _guard_binding(settings)
    _run_gateway(settings)


MetricsPort = Annotated[
    int | None, typer.Option(help="port of this process's /metrics, /healthz, /readyz; 0: none (PSCT_METRICS_PORT)")
]


@app.command()
def scp(home: Home = None, dicom_port: DicomPort = None, metrics_port: MetricsPort = None) -> None:
    """The DICOM listener alone."""
    settings = _settings(home=home, dicom_port=dicom_port, metrics_port=metrics_port)
    _logging(settings, "scp")
    listener = _listener(settings)
    if settings.metrics_port:
        from service import metrics_server
        from service.readiness import listener_checks

        metrics_server.serve(settings.metrics_host, settings.metrics_port, lambda: listener_checks(settings))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    listener.start()
    stop.wait()
    listener.stop()


@app.command()
def worker(home: Home = None, metrics_port: MetricsPort = None) -> None:
    """A Celery worker: one task at a time (solo pool: one per GPU), one ONNX session per process."""
    settings = _settings(home=home, metrics_port=metrics_port)
    _logging(settings, "worker")
    from celery import signals

    from service.store import JobStore
    from worker import startup
    from worker.lease import holder, start_sweeper
    from worker.runtime import ModelFileError
    from worker.tasks import app as celery

    store = JobStore(settings.database)
    try:
        startup.start(settings, store)  # the model loads (sha256 checked) before any message is taken
    except ModelFileError as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(2) from None
    from service.queue import declare_queue

    declare_queue()  # before Celery declares it, which would end the worker on a lost race
    start_sweeper(store, settings)  # jobs of dead workers come back
    # Our logging stays: a receiver of setup_logging stops Celery from configuring its own.
    signals.setup_logging.connect(lambda **_: None, weak=False)
    signals.worker_shutdown.connect(lambda **_: store.forget_worker(holder()), weak=False)
    quiet = ["--quiet"] if settings.log_format == "json" else []  # no banner amid JSON lines
    celery.worker_main(
        [*quiet, "worker", "--pool=solo", "--loglevel=INFO", "--without-gossip", "--without-mingle",
         "--without-heartbeat"]
    )  # fmt: skip


@app.command()
def reconstruct(
    pa: Path,
    lateral: Path,
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for the CT series")],
    preview: Annotated[Path | None, typer.Option(help="also write a preview PNG here")] = None,
    model: Annotated[Path | None, typer.Option(help=".onnx model (default: the shipped one)")] = None,
) -> None:
    """Offline one-shot reconstruction of one pair into a CT series folder."""
    from psct.offline import reconstruct_files
    from service.errors import InputError

    room = _settings(make_home=False).room  # PSCT_DEFAULT_SID_MM etc., as the service would use them
    try:
        count = reconstruct_files(pa, lateral, output, preview, model, room)
    except (ValueError, InputError) as exc:  # ModelInputError is a ValueError
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {count} CT instances to {output} (research reconstruction, not for diagnostic use)")


@app.command()
def simulate(
    age: Annotated[float, typer.Option(min=0, max=18, help="age in years")],
    output: Annotated[Path, typer.Option("-o", "--output")],
    condition: Annotated[
        str, typer.Option(help="normal, sagittal, metopic, coronal-left, coronal-right, lambdoid, positional")
    ] = "normal",
    seed: int = 0,
    kvp: Annotated[float | None, typer.Option(min=40, max=150, help="tube voltage (default: randomised)")] = None,
    preview: Annotated[Path | None, typer.Option(help="also write a contact sheet PNG here")] = None,
    omit_geometry: Annotated[bool, typer.Option(help="leave the distance tags out, like some vendors")] = False,
    ct: Annotated[Path | None, typer.Option(help="simulate from a real CT (DICOM folder or NIfTI) instead")] = None,
    storage: Annotated[
        str | None, typer.Option(help="DX, CR or DX-processing (for processing); default: randomised")
    ] = None,
) -> None:
    """Write a synthetic PA + lateral DX pair of a procedural child's head (or a real CT) and its truth."""
    from psct.offline import write_simulated_pair

    try:
        paths = write_simulated_pair(age, seed, output, condition, kvp, preview, omit_geometry, ct, storage)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for path in paths:
        typer.echo(path)


@app.command()
def dataset(
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="number of pairs")],
    output: Annotated[Path, typer.Option("-o", "--output")],
    seed: Annotated[int, typer.Option(help="base seed of the stream; pair i is a function of (seed, i)")] = 0,
    truth_pool: Annotated[int, typer.Option(min=1, help="ground truth pooled from 1.5 mm by this factor")] = 2,
    omit_probability: Annotated[float, typer.Option(min=0, max=1, help="share of pairs without geometry")] = 0.1,
) -> None:
    """Write training pairs (network inputs, matrices, truth) as .npz; existing ones are kept (resumable)."""
    from psct.offline import write_dataset

    typer.echo(write_dataset(count, output, seed, truth_pool, omit_probability))


@app.command("contact-sheet")
def contact_sheet(
    output: Annotated[Path, typer.Option("-o", "--output")] = Path("docs/phantoms.png"),
    seed: int = 1,
) -> None:
    """Every condition at ages 0.5, 2, 6 and 14 y: phantom slices and simulated radiographs (slow)."""
    from psct.offline import write_condition_sheet

    write_condition_sheet(output, (0.5, 2.0, 6.0, 14.0), seed)
    typer.echo(output)


@app.command()
def demo(
    output: Annotated[Path, typer.Option("-o", "--output")] = Path("demo"),
    age: float = 6.0,
    seed: int = 0,
) -> None:
    """Simulate -> reconstruct -> metrics + preview PNG, in one go."""
    from psct.offline import run_demo

    for line in run_demo(output, age, seed):
        typer.echo(line)


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="training config JSON (see model/configs/)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="run folder; the same config resumes")],
    cache: Annotated[Path | None, typer.Option(help="pair cache folder (psct dataset writes one)")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="override the config's steps (matched-budget rows)")] = None,
    pairs: Annotated[int | None, typer.Option(min=1, help="override the config's pairs (the half-data row)")] = None,
    ct_dir: Annotated[
        Path | None, typer.Option(help="train on real head CTs: sub-folders of DICOM slices or .nii/.nii.gz files")
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(help="stage 2: train the fine head (a refine config) on this stage-1 checkpoint.pt or .onnx"),
    ] = None,
) -> None:
    """Train PSCT-Net on data-engine pairs (needs the [train] extra)."""
    from dataclasses import replace

    from model.train import TrainConfig
    from model.train import train as run_training

    if base is not None:
        _train_stage2(config, base, output, cache, steps, pairs, ct_dir)
        return
    try:
        settings = TrainConfig.from_json(config)
        ct = str(ct_dir.resolve()) if ct_dir else None
        overrides = {k: v for k, v in (("steps", steps), ("pairs", pairs), ("ct_dir", ct)) if v is not None}
        settings = replace(settings, **overrides)  # the digest follows: a run folder holds one config
        summary = run_training(settings, output, cache, log=typer.echo)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"done: {summary}")


def _train_stage2(config: Path, base: Path, output: Path, cache: Path | None, steps: int | None,
                  pairs: int | None, ct_dir: Path | None) -> None:  # fmt: skip
    from dataclasses import replace

    from model.train_refine import RefineConfig, train_refine

    try:
        settings = RefineConfig.from_json(config)
        ct = str(ct_dir.resolve()) if ct_dir else None
        overrides = {k: v for k, v in (("steps", steps), ("pairs", pairs), ("ct_dir", ct)) if v is not None}
        summary = train_refine(replace(settings, **overrides), base, output, cache, log=typer.echo)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"done: {summary}")


@app.command()
def evaluate(
    model: Annotated[
        list[str],
        typer.Option(help="NAME=PATH.onnx, once per row (e.g. physics-baseline=model/weights/physics-baseline.onnx)"),
    ],
    output: Annotated[Path, typer.Option("-o", "--output")] = Path("docs/results.md"),
    per_cell: Annotated[int, typer.Option(min=1, help="heads per (age band, condition)")] = 1,
    variant: Annotated[
        list[str] | None, typer.Option(help="standard, unseen-processing, pose-5deg, no-geometry")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N heads (a quick look)")] = None,
    robust: Annotated[
        list[str] | None, typer.Option(help="NAME of a --model scored on the robustness variants too (default: all)")
    ] = None,
) -> None:
    """Score exported models on the fixed held-out set; writes a Markdown table (+ JSON beside it)."""
    from model.evaluate import VARIANTS, run_evaluation

    models = {}
    for item in model:
        name, _, path = item.partition("=")
        if not name or not path or not Path(path).is_file():
            typer.echo(f"error: --model wants NAME=PATH to an existing .onnx file, got {item!r}", err=True)
            raise typer.Exit(2)
        models[name] = Path(path)
    unknown = set(variant or []) - set(VARIANTS)
    if unknown:
        typer.echo(f"error: unknown variant(s) {sorted(unknown)}: one of {', '.join(VARIANTS)}", err=True)
        raise typer.Exit(2)
    if set(robust or []) - set(models):
        typer.echo(f"error: --robust {sorted(set(robust or []) - set(models))} is not a --model NAME", err=True)
        raise typer.Exit(2)
    path = run_evaluation(models, output, per_cell, tuple(variant or VARIANTS), limit, log=typer.echo,
                          robust=set(robust) if robust else None)  # fmt: skip
    typer.echo(path)


@app.command("export")
def export_model(
    output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="a training checkpoint to export; without it, the physics baseline")
    ] = None,
    base: Annotated[
        Path | None, typer.Option(help="a stage-2 checkpoint's stage 1, when it no longer lies where it trained")
    ] = None,
) -> None:
    """Export a model to ONNX with its JSON sidecar (needs the [train] extra: torch)."""
    from model import __version__
    from model.export import default_output, export_physics_baseline, export_psct_net

    if checkpoint is None:
        output = output or Path("model/weights/physics-baseline.onnx")
        sidecar = export_physics_baseline(output, __version__)
    else:
        if not checkpoint.is_file():
            typer.echo(f"error: no checkpoint at {checkpoint}", err=True)
            raise typer.Exit(2)
        output = output or default_output(checkpoint)
        try:
            sidecar = export_psct_net(checkpoint, output, __version__, base)
        except (ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(
        f"wrote {output} sha256 {sidecar['sha256']} (max |ONNX - torch| "
        f"{sidecar['export_check']['max_abs_diff_hu']:.2g} HU)"
    )


@app.command("record-metrics")
def record_metrics(
    model: Annotated[Path, typer.Argument(help="an exported .onnx file with its JSON sidecar beside it")],
    metrics: Annotated[str, typer.Option(help="RESULTS.json:ROW of a `psct evaluate` run that scored this file")],
) -> None:
    """Record an evaluation row's means in a model's sidecar without re-exporting (sha256-checked)."""
    from model.evaluate import record_metrics as record

    results, _, row = metrics.rpartition(":")
    try:
        sidecar = record(model, Path(results), row)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    recorded = sidecar["metrics"]
    typer.echo(f"{model.with_suffix('.json')}: {row} PSNR {recorded['psnr_db']:.3g} dB, "
               f"bone Dice {recorded['bone_dice']:.3g} on {recorded['heads']} heads")  # fmt: skip


def main() -> None:
    app()


if __name__ == "__main__":
    main()
