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
from model.export import INPUT_NAMES, VERIFY_ATOL_HU, VERIFY_RTOL
from model.geometry import projection_matrix
from model.preprocess import preprocess
from model.radiograph import display_values, read_view
from model.simulate import simulate_pair
from service.settings import PHYSICS_BASELINE

# The contract's field: a whole head from newborn to 18 y, face and skull base included.
MIN_FIELD_MM = 220.0
# The baseline is steep where a voxel projects onto a silhouette edge: one float32 ulp of its matrices
# moves such voxels by up to ~2.6 HU (measured, test_one_ulp_of_the_matrices_moves_only_edge_voxels).
# So ONNX and PyTorch, which round some steps differently, are held to the export's 0.1 HU on all but
# EDGE_SHARE of the voxels and to EDGE_ATOL_HU on those.
EDGE_SHARE = 1e-3
EDGE_ATOL_HU = 5.0


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


def baseline_output(module: PhysicsBaseline, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return module(*(torch.from_numpy(inputs[n]) for n in INPUT_NAMES)).numpy()


def assert_equal_but_at_edges(got: np.ndarray, expected: np.ndarray) -> None:
    difference = np.abs(got - expected)
    assert np.mean(difference > VERIFY_ATOL_HU + VERIFY_RTOL * np.abs(expected)) <= EDGE_SHARE
    assert difference.max() <= EDGE_ATOL_HU


def test_one_ulp_of_the_matrices_moves_only_edge_voxels(sidecar: dict) -> None:
    """Why the ONNX check below has two bounds: a max of 0.1 HU is not a property of float32 here."""
    module = PhysicsBaseline(tuple(sidecar["output_grid"]["shape_zyx"]), sidecar["output_grid"]["voxel_mm"]).eval()
    feeds = phantom_inputs(seed=1, age_y=2.0)
    expected = baseline_output(module, feeds)
    up = {k: np.nextafter(v, np.float32(np.inf)) if k.endswith("matrix") else v for k, v in feeds.items()}
    moved = baseline_output(module, up)
    assert np.abs(moved - expected).max() > VERIFY_ATOL_HU  # steep at the edges ...
    assert_equal_but_at_edges(moved, expected)  # ... and only there


def test_one_onnx_file_serves_every_geometry_and_equals_torch(sidecar: dict) -> None:
    session = ort.InferenceSession(str(PHYSICS_BASELINE), providers=["CPUExecutionProvider"])
    module = PhysicsBaseline(tuple(sidecar["output_grid"]["shape_zyx"]), sidecar["output_grid"]["voxel_mm"]).eval()
    feeds = phantom_inputs(seed=1, age_y=2.0)
    # The same views with a magnified geometry: a different study's matrices, same file.
    moved = dict(feeds, lateral_matrix=(np.diag([1.1, 1.1, 1.0]) @ feeds["lateral_matrix"]).astype(np.float32))
    outputs = []
    for inputs in (feeds, moved):
        got = session.run(None, inputs)[0]
        # Usually within 0.005 HU everywhere; one full pytest run (2026-12-07) saw 0.17 HU on 0.07 % of
        # the voxels, the size of a one-ulp change (see EDGE_SHARE).
        assert_equal_but_at_edges(got, baseline_output(module, inputs))
        outputs.append(got)
    assert np.mean(np.abs(outputs[0] - outputs[1])) > 1.0  # the geometry input changes the answer
