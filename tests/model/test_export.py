"""The shipped ONNX physics baseline: one file for every geometry, equal to the torch code."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model.baseline import PhysicsBaseline
from model.export import INPUT_NAMES, VERIFY_RTOL
from model.geometry import projection_matrix
from model.preprocess import preprocess
from model.radiograph import display_values, read_view
from model.simulate import simulate_pair
from service.settings import PHYSICS_BASELINE

# The contract's field: a whole head from newborn to 18 y, face and skull base included.
MIN_FIELD_MM = 220.0
ISSUE_ATOL_HU = 1.0


@pytest.fixture(scope="module")
def sidecar() -> dict:
    return json.loads(PHYSICS_BASELINE.with_suffix(".json").read_text())


def test_sidecar_describes_the_shipped_file(sidecar: dict) -> None:
    assert hashlib.sha256(PHYSICS_BASELINE.read_bytes()).hexdigest() == sidecar["sha256"]
    assert sidecar["kind"] == "physics-baseline" and "physics baseline" in sidecar["label"]
    assert [i["name"] for i in sidecar["inputs"]] == INPUT_NAMES
    grid = sidecar["output_grid"]
    assert min(grid["shape_zyx"]) * grid["voxel_mm"] >= MIN_FIELD_MM


def test_projection_matrices_are_graph_inputs_not_constants() -> None:
    graph = onnx.load(str(PHYSICS_BASELINE)).graph
    assert [i.name for i in graph.input] == INPUT_NAMES
    assert not {i.name for i in graph.initializer} & set(INPUT_NAMES)
    assert any(node.op_type == "GridSample" for node in graph.node)


def phantom_inputs(seed: int, age_y: float) -> dict[str, np.ndarray]:
    pair = simulate_pair(age_y, seed)
    feeds = {}
    for name, ds in (("pa", pair.pa), ("lateral", pair.lateral)):
        _view, geometry, _notes = read_view(ds)
        image, matrix = preprocess(display_values(ds), projection_matrix(geometry))
        feeds[name], feeds[f"{name}_matrix"] = image, matrix
    return feeds


def test_one_onnx_file_serves_every_geometry_and_equals_torch(sidecar: dict) -> None:
    session = ort.InferenceSession(str(PHYSICS_BASELINE), providers=["CPUExecutionProvider"])
    module = PhysicsBaseline(tuple(sidecar["output_grid"]["shape_zyx"]), sidecar["output_grid"]["voxel_mm"]).eval()
    feeds = phantom_inputs(seed=1, age_y=2.0)
    # The same views with a magnified geometry: a different study's matrices, same file.
    moved = dict(feeds, lateral_matrix=(np.diag([1.1, 1.1, 1.0]) @ feeds["lateral_matrix"]).astype(np.float32))
    outputs = []
    for inputs in (feeds, moved):
        got = session.run(None, inputs)[0]
        with torch.no_grad():
            expected = module(*(torch.from_numpy(inputs[n]) for n in INPUT_NAMES)).numpy()
        # Issue 5's bound for ONNX vs PyTorch (1 HU), not the export's own 0.1 HU: in one full pytest run
        # (2026-12-07) 0.07 % of voxels differed by up to 0.17 HU at ~1300 HU (1.3e-4 relative), while the
        # test alone passed at 0.1 HU; which earlier state changes the float32 arithmetic is not yet known.
        np.testing.assert_allclose(got, expected, rtol=VERIFY_RTOL, atol=ISSUE_ATOL_HU)
        outputs.append(got)
    assert np.mean(np.abs(outputs[0] - outputs[1])) > 1.0  # the geometry input changes the answer
