"""The ONNX model runtime: one session per process, its sidecar checked before the model loads."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)


class ModelFileError(RuntimeError):
    """The model file is missing, altered or does not match its sidecar."""


@dataclass(frozen=True)
class ModelRuntime:
    session: ort.InferenceSession
    sidecar: dict
    path: Path

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        d, h, w = self.sidecar["output_grid"]["shape_zyx"]
        return (int(d), int(h), int(w))

    @property
    def voxel_mm(self) -> float:
        return float(self.sidecar["output_grid"]["voxel_mm"])

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    @property
    def label(self) -> str:
        return f"{self.sidecar['name']} {self.sidecar['version']}"

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """HU volume (z, y, x) for the preprocessed views and matrices."""
        output = self.session.run([self.sidecar["outputs"][0]["name"]], feeds)[0]
        return np.asarray(output[0, 0], dtype=np.float32)


def providers(cuda_device: int = 0) -> list[str | tuple[str, dict[str, str]]]:
    """CUDA device `cuda_device` when this onnxruntime build (onnxruntime-gpu) offers CUDA, then CPU."""
    available = ort.get_available_providers()
    chosen: list[str | tuple[str, dict[str, str]]] = []
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"device_id": str(cuda_device)}))
    return [*chosen, "CPUExecutionProvider"]


def load(path: Path, cuda_device: int = 0) -> ModelRuntime:
    sidecar_path = path.with_suffix(".json")
    if not path.is_file() or not sidecar_path.is_file():
        raise ModelFileError(f"model {path} or its sidecar {sidecar_path.name} is missing")
    sidecar = json.loads(sidecar_path.read_text())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sidecar.get("sha256"):
        raise ModelFileError(f"model {path.name} sha256 {digest} does not match its sidecar {sidecar.get('sha256')}")
    # onnxruntime-gpu lists CUDA even where its libraries are missing, logs an error and falls back
    # to CPU: expected on CPU-only hosts, so keep only errors that stop the load.
    ort.set_default_logger_severity(4)
    if "CUDAExecutionProvider" in ort.get_available_providers() and hasattr(ort, "preload_dlls"):
        try:  # CUDA and cuDNN from the nvidia-* wheels of the `gpu` extra, not the system
            ort.preload_dlls()
        except Exception as exc:  # no usable CUDA here: the session falls back to the CPU
            log.warning("CUDA libraries not loaded (%s); running on the CPU", exc)
    options = ort.SessionOptions()
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers(cuda_device))
    log.info("loaded %s %s on %s", sidecar["name"], sidecar["version"], session.get_providers()[0])
    return ModelRuntime(session, sidecar, path)


@lru_cache(maxsize=2)
def cached(path: Path, cuda_device: int = 0) -> ModelRuntime:
    """The process's session for `path`: loaded once (after any fork: Celery's solo pool runs tasks
    in the worker process itself), reused by every task."""
    return load(path, cuda_device)
