"""Export a model to ONNX with its JSON sidecar: the one interface between training and serving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from model import WEIGHTS
from model.baseline import PhysicsBaseline
from model.evaluate import sha256_of
from model.geometry import GeometryTags, projection_matrix, resolve_view
from model.grid import OUTPUT_SHAPE, VOXEL_MM
from model.preprocess import INPUT_SHAPE_PX

INPUT_NAMES = ["pa", "lateral", "pa_matrix", "lateral_matrix"]
OUTPUT_NAME = "hu"
OPSET = 18
# ORT and torch order the bilinear sums differently; on HU values up to ~2000 float32 rounding
# stays far below 0.1 HU (measured: ~1e-3 HU).
VERIFY_ATOL_HU = 0.1
VERIFY_RTOL = 1e-5
# A trained 3D U-Net sums over many more terms (measured 0.19 HU on the reference run): issue 5's
# acceptance, <= 1 HU, is its tolerance.
LEARNED_ATOL_HU = 1.0


def example_inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random views with a real skull-room geometry (100 cm SID, 1 mm pitch on 256 px)."""
    generator = torch.Generator().manual_seed(seed)
    h, w = INPUT_SHAPE_PX
    matrices = [
        torch.tensor(
            projection_matrix(
                resolve_view(GeometryTags(view=v, rows=h, columns=w, sid_mm=1000.0, imager_pitch_mm=(1.0, 1.0)))
            ),
            dtype=torch.float32,
        )
        for v in ("PA", "LL")
    ]
    images = [torch.rand(1, 1, h, w, generator=generator) for _ in range(2)]
    return (images[0], images[1], matrices[0], matrices[1])


def verify(module: torch.nn.Module, onnx_path: Path, inputs: tuple[torch.Tensor, ...],
           atol_hu: float = VERIFY_ATOL_HU) -> float:  # fmt: skip
    """Max |ONNX - torch| in HU on `inputs`; raises when above the stated tolerance."""
    with torch.no_grad():
        expected = module(*inputs).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)})[0]
    np.testing.assert_allclose(got, expected, rtol=VERIFY_RTOL, atol=atol_hu)
    return float(np.max(np.abs(got - expected)))


STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


def without_stack_traces(onnx_path: Path) -> None:
    """Drop the exporter's per-node Python stack traces: they hold the source files' absolute paths
    and line numbers, so the same weights exported from another clone, or after an edit elsewhere in
    the file, gave another sha256. The graph, its weights and the module names stay."""
    import onnx

    model = onnx.load(str(onnx_path))
    for node in model.graph.node:
        kept = [entry for entry in node.metadata_props if entry.key != STACK_TRACE_KEY]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    onnx.save(model, str(onnx_path))


def export(module: torch.nn.Module, onnx_path: Path, metadata: dict, atol_hu: float = VERIFY_ATOL_HU) -> dict:
    """Write `onnx_path` and `onnx_path.with_suffix('.json')`; returns the sidecar."""
    module = module.eval()
    inputs = example_inputs()
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module,
        inputs,
        str(onnx_path),
        input_names=INPUT_NAMES,
        output_names=[OUTPUT_NAME],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    without_stack_traces(onnx_path)
    max_diff_hu = verify(module, onnx_path, inputs, atol_hu)
    h, w = INPUT_SHAPE_PX
    sidecar = {
        **metadata,
        "inputs": [
            {"name": "pa", "shape": [1, 1, h, w], "dtype": "float32"},
            {"name": "lateral", "shape": [1, 1, h, w], "dtype": "float32"},
            {"name": "pa_matrix", "shape": [3, 4], "dtype": "float32"},
            {"name": "lateral_matrix", "shape": [3, 4], "dtype": "float32"},
        ],
        "outputs": [{"name": OUTPUT_NAME, "shape": [1, 1, *module_shape(module)], "dtype": "float32", "unit": "HU"}],
        "input_preprocessing": "model/preprocess.py: displayed values, percentile 1-99.5 -> [0, 1], "
        f"area-resampled to {h}x{w}; matrices map LPS mm -> pixel of that image",
        "output_grid": {
            "shape_zyx": list(module_shape(module)),
            "voxel_mm": VOXEL_MM,
            "frame": "DICOM LPS, isocentre at the volume centre, array order (z, y, x), z from feet to head",
        },
        "export_check": {"max_abs_diff_hu": max_diff_hu, "atol_hu": atol_hu, "rtol": VERIFY_RTOL},
        "onnx_file": onnx_path.name,
        "sha256": sha256_of(onnx_path),
    }
    onnx_path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def module_shape(module: torch.nn.Module) -> tuple[int, int, int]:
    """The served output grid (PSCT-Net works on a coarser grid inside and upsamples)."""
    if hasattr(module, "output_shape"):
        return tuple(module.output_shape)  # type: ignore[return-value]
    return (len(module.z_mm), len(module.y_mm), len(module.x_mm))  # type: ignore[arg-type]


def data_description(config: dict) -> str:
    """What a run trained on, from its training config (stage 1's or stage 2's: each has its ct_dir)."""
    if config.get("ct_dir"):
        return f"real head CTs from {config['ct_dir']}, simulated radiographs (model/dataset.py)"
    return ("synthetic: procedural pediatric heads 0-18 y, 7 conditions, simulated radiographs "
            "(model/dataset.py); no patient data")  # fmt: skip


def default_output(checkpoint: Path) -> Path:
    """Where `psct export` writes a checkpoint by default: a stage-2 one to the served default, never over
    the stage 1 it was trained on."""
    stage2 = "head" in torch.load(checkpoint, weights_only=False)
    return WEIGHTS / ("psct-net-stage2.onnx" if stage2 else "psct-net.onnx")


def export_psct_net(checkpoint: Path, onnx_path: Path, version: str, base: Path | None = None) -> dict:
    """A trained checkpoint (model/train.py, or a stage-2 one of model/train_refine.py) as the served
    ONNX model, its training recorded."""
    from model.train import TrainConfig, build

    state = torch.load(checkpoint, weights_only=False)
    if "head" in state:
        return export_refined(checkpoint, onnx_path, version, base)
    if base is not None:
        raise ValueError(f"{checkpoint} is a stage-1 checkpoint: it has no base, drop --base {base}")
    config = TrainConfig.from_dict(state["config"])
    net = build(config)
    net.load_state_dict(state["model"])
    return export(
        net,
        onnx_path,
        {
            "name": net.name,
            "label": "PSCT-Net (learned): research reconstruction, not for diagnostic use",
            "kind": "psct-net",
            "version": version,
            "training": {
                "config": state["config"],
                "config_digest": state["digest"],
                "steps": state["step"],
                "data": data_description(state["config"]),
            },  # fmt: skip
            "architecture": net.config,
            "parameters": sum(p.numel() for p in net.parameters()),
            "metrics": None,  # psct record-metrics, once `psct evaluate` has scored this file
        },
        LEARNED_ATOL_HU,
    )


def export_refined(checkpoint: Path, onnx_path: Path, version: str, base: Path | None = None) -> dict:
    """Stage 1 (from `base`, default where it was when stage 2 trained) and the fine head as one ONNX
    file; the sidecar's `training` is stage 1's (as for a coarse export), the head's run under `stage2`."""
    from model.train_refine import refined_net

    net, state = refined_net(checkpoint, base)
    stage1 = state["stage1"]
    return export(
        net,
        onnx_path,
        {
            "name": net.name,
            "label": "PSCT-Net (learned): research reconstruction, not for diagnostic use",
            "kind": "psct-net",
            "version": version,
            "training": {
                "config": stage1["config"],
                "config_digest": stage1["config_digest"],
                "steps": stage1["config"]["steps"],
                "data": data_description(stage1["config"]),
                "stage2": {
                    "config": state["config"],
                    "config_digest": state["digest"],
                    "steps": state["step"],
                    "stage1_source": stage1["source"],
                    "stage1_sha256": stage1["sha256"],
                    "data": data_description(state["config"]),
                },
            },  # fmt: skip
            "architecture": net.config,
            "parameters": sum(p.numel() for p in net.parameters()),
            "metrics": None,  # psct record-metrics, once `psct evaluate` has scored this file
        },
        LEARNED_ATOL_HU,
    )


def export_physics_baseline(onnx_path: Path, version: str) -> dict:
    module = PhysicsBaseline(OUTPUT_SHAPE, VOXEL_MM)
    return export(
        module,
        onnx_path,
        {
            "name": PhysicsBaseline.name,
            "label": "PSCT physics baseline (no learned weights): research reconstruction, not for diagnostic use",
            "kind": "physics-baseline",
            "version": version,
            "training": None,
        },
    )
