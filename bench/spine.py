"""Benchmark of the spine: prints figures, asserts nothing. Run with `make bench`.

1. Back-projection of 2 views of 256^2 into 128^3: PyTorch (model/projector.py), the same operator
   exported to ONNX (projection matrices as inputs) in ONNX Runtime, and RTK's CPU voxel
   back-projector (itk-rtk, BackProjectionImageFilter) on the same geometry, in the same run.
2. `psct serve` with an Orthanc destination: for 10 pairs sent by storescu, the time from the
   second view received to the job queued and to the series stored at Orthanc; worker peak RSS.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model.projector import back_project  # noqa: E402
from tests.conftest import free_port, port_open, start_orthanc, start_psct, wait_for  # noqa: E402
from tests.rtk_reference import IMAGE, circular  # noqa: E402

VIEWS, DETECTOR_PX, VOLUME_PX = 2, 256, 128
DETECTOR_PITCH_MM, VOXEL_MM = 1.2, 1.5
SID_MM, SOD_MM = 1000.0, 860.0
REPEATS = 10


def rtk_setup():  # type: ignore[no-untyped-def]
    """RTK's back-projector on random projections; our matrices and axis from the same geometry."""
    from itk import RTK as rtk

    setup = circular(
        SOD_MM,
        SID_MM,
        [0.0, 90.0],
        detector_px=DETECTOR_PX,
        pitch_mm=DETECTOR_PITCH_MM,
        volume_px=VOLUME_PX,
        voxel_mm=VOXEL_MM,
    )  # PA-like and lateral-like
    projections_np = np.random.default_rng(0).random((VIEWS, DETECTOR_PX, DETECTOR_PX), dtype=np.float32)
    projections = setup.image(projections_np, setup.detector_origin_mm, DETECTOR_PITCH_MM, third_spacing=1.0)
    volume = setup.image(np.zeros((VOLUME_PX,) * 3, np.float32), setup.volume_origin_mm, VOXEL_MM)
    back_projector = rtk.BackProjectionImageFilter[IMAGE, IMAGE].New()
    back_projector.SetInput(0, volume)
    back_projector.SetInput(1, projections)
    back_projector.SetGeometry(setup.geometry)
    back_projector.InPlaceOff()  # re-run on the same zero volume in every repeat
    # The filter holds raw pointers: keep the Python objects alive with it.
    back_projector.keep_alive = (volume, projections, setup)
    return back_projector, projections_np, setup.matrices().astype(np.float32), setup.axis_mm.astype(np.float32)


class TwoViewBackProjection(nn.Module):
    def __init__(self, axis: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("axis", torch.tensor(axis))

    def forward(self, images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        return back_project(images, matrices, self.axis, self.axis, self.axis).sum(dim=0, keepdim=True)


def timed(run, repeats: int = REPEATS) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    run()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3, max(samples) * 1e3


def bench_back_projection() -> list[str]:
    import itk

    back_projector, projections, matrices, axis = rtk_setup()
    module = TwoViewBackProjection(axis).eval()
    images = torch.from_numpy(projections[:, None])
    mats = torch.from_numpy(matrices)

    def rtk_run() -> None:
        back_projector.Modified()
        back_projector.Update()

    with torch.no_grad():
        torch_ms = timed(lambda: module(images, mats))
        ours = module(images, mats)[0, 0].numpy()
    rtk_ms = timed(rtk_run)
    reference = itk.array_from_image(back_projector.GetOutput()).copy()
    rel_rms = float(np.sqrt(np.mean((ours - reference) ** 2)) / np.sqrt(np.mean(reference**2)))
    with tempfile.TemporaryDirectory() as folder:
        session = _exported(module, (images, mats), ["images", "matrices"], Path(folder) / "bp.onnx")
        feeds = {"images": projections[:, None], "matrices": matrices}
        onnx_ms = timed(lambda: session.run(None, feeds))
        grid_only_ms = _grid_sample_alone(Path(folder), images)
        onnx_rel = float(
            np.sqrt(np.mean((session.run(None, feeds)[0][0, 0] - reference) ** 2)) / np.sqrt(np.mean(reference**2))
        )
    return [
        f"back-projection, {VIEWS} views of {DETECTOR_PX}^2 into {VOLUME_PX}^3 (median / max of {REPEATS}):",
        f"  RTK BackProjectionImageFilter (CPU) {rtk_ms[0]:7.1f} / {rtk_ms[1]:7.1f} ms",
        f"  PyTorch grid_sample                 {torch_ms[0]:7.1f} / {torch_ms[1]:7.1f} ms"
        f"  rel. RMS vs RTK {rel_rms:.1e}",
        f"  ONNX Runtime (exported, CPU)        {onnx_ms[0]:7.1f} / {onnx_ms[1]:7.1f} ms"
        f"  rel. RMS vs RTK {onnx_rel:.1e}",
        f"  of which ONNX Runtime's GridSample node alone {grid_only_ms[0]:7.1f} / {grid_only_ms[1]:7.1f} ms",
    ]


def _exported(module: nn.Module, inputs: tuple, names: list[str], path: Path) -> ort.InferenceSession:
    torch.onnx.export(module, inputs, str(path), input_names=names, output_names=["out"], opset_version=18,
                      dynamo=True, external_data=False)  # fmt: skip
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


class _GridSample(nn.Module):
    def forward(self, images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _grid_sample_alone(folder: Path, images: torch.Tensor) -> tuple[float, float]:
    """Time ORT's GridSample with the sampling grid given: where the exported operator spends its time."""
    grid = torch.rand(VIEWS, VOLUME_PX, VOLUME_PX * VOLUME_PX, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    session = _exported(_GridSample(), (images, grid), ["images", "grid"], folder / "grid_sample.onnx")
    feeds = {"images": images.numpy(), "grid": grid.numpy()}
    return timed(lambda: session.run(None, feeds))


def bench_service(pairs: int = 10) -> list[str]:
    from pydicom.uid import generate_uid

    from model.simulate import simulate_pair
    from service.store import Instance, JobStore, aware

    work = Path(tempfile.mkdtemp(prefix="psct-bench-"))
    orthanc, receiver = start_orthanc(work / "orthanc")
    http_port, dicom_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSCT_")}
    env.update(
        PSCT_HOME=str(work / "home"),
        PSCT_HTTP_PORT=str(http_port),
        PSCT_DICOM_PORT=str(dicom_port),
        PSCT_DESTINATIONS=receiver.destination,
    )
    serve = start_psct("serve", env)
    try:
        wait_for(lambda: port_open(dicom_port) and port_open(http_port), 60, "psct serve")
        store = JobStore(f"sqlite:///{work / 'home' / 'psct.sqlite'}")
        to_queue, to_stored = [], []
        for seed in range(pairs):
            pair = simulate_pair(age_y=1.0 + seed, seed=1000 + seed)
            files = []
            for name, ds in (("pa", pair.pa), ("lateral", pair.lateral)):
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.save_as(work / f"{name}.dcm", enforce_file_format=True)
                files.append(str(work / f"{name}.dcm"))
            subprocess.run(["storescu", "-aec", "PSCT", "127.0.0.1", str(dicom_port), *files], check=True)
            study = str(pair.pa.StudyInstanceUID)
            job = wait_for(lambda s=study: _finished(store, s), 300, "job")
            with store.session() as session:
                lateral = session.get(Instance, str(pair.lateral.SOPInstanceUID))
                second_view_at = aware(lateral.received_at)
            to_queue.append((aware(job.created_at) - second_view_at).total_seconds() * 1e3)
            to_stored.append((aware(job.finished_at) - second_view_at).total_seconds())
        worker_rss = _worker_peak_rss_mib(serve.pid)
    finally:
        serve.terminate()
        serve.wait(60)
        orthanc.terminate()
        orthanc.wait(30)
    return [
        f"service, {pairs} pairs by storescu into `psct serve`, series C-STOREd to Orthanc (median / p95):",
        f"  second view received -> job queued      {statistics.median(to_queue):7.1f} / {_p95(to_queue):7.1f} ms",
        f"  second view received -> series stored   {statistics.median(to_stored):7.2f} / {_p95(to_stored):7.2f} s",
        f"  worker peak RSS                         {worker_rss:7.0f} MiB",
    ]


def _finished(store, study_uid: str):  # type: ignore[no-untyped-def]
    jobs = [j for j in store.page(500, 0)[0] if j.study_instance_uid == study_uid]
    return jobs[0] if jobs and jobs[0].status in ("succeeded", "failed") else None


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def _worker_peak_rss_mib(parent_pid: int) -> float:
    children = subprocess.run(["pgrep", "-P", str(parent_pid)], capture_output=True, text=True).stdout.split()
    peak_kib = 0
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak_kib = max(peak_kib, int(line.split()[1]))
    return peak_kib / 1024


def main() -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}"
    )
    for line in bench_back_projection() + bench_service():
        print(line)


if __name__ == "__main__":
    main()
