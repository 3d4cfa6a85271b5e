"""Stage 2 (the fine head) in a tiny configuration: patches agree with the whole volume, it resumes,
it starts from an exported stage 1, and stage 1 + head export to one ONNX file within 1 HU."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model.dataset import PairStream
from model.export import INPUT_NAMES, STACK_TRACE_KEY, default_output, export_psct_net
from model.metrics import dice
from model.network import HU_SCALE
from model.refine import FINE_LAYERS, FineHead, coarse_from_onnx, output_axes, upsampled_patch
from model.train import TrainConfig, inputs_of, soft_dice_loss, train
from model.train_refine import RefineConfig, refined_net, train_refine
from service.settings import DEFAULT_MODEL

CONFIGS = Path(__file__).resolve().parents[2] / "model" / "configs"
TINY = CONFIGS / "tiny.json"
TINY_REFINE = CONFIGS / "tiny-refine.json"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pairs")


@pytest.fixture(scope="module")
def stage1(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stage 1, trained and exported as `psct export` does."""
    run = tmp_path_factory.mktemp("stage1")
    train(TrainConfig.from_json(TINY), run, cache, log=lambda _: None)
    onnx_path = run / "coarse.onnx"
    export_psct_net(run / "checkpoint.pt", onnx_path, "test")
    return onnx_path


@pytest.fixture(scope="module")
def stage2(stage1: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("stage2")
    train_refine(RefineConfig.from_json(TINY_REFINE), stage1, run, cache, log=lambda _: None)
    return run


@pytest.mark.parametrize("layers", [FINE_LAYERS, 6])
def test_the_head_on_a_patch_interior_is_the_head_on_the_whole_volume(cache: Path, layers: int) -> None:
    """What patch training rests on: no normalisation, a receptive radius of `layers` voxels."""
    torch.manual_seed(0)
    head = FineHead(channels=4, view_channels=2, layers=layers).eval()
    pa, lateral, pa_matrix, lateral_matrix = inputs_of(PairStream(1, 900, 8, cache)[0])
    x_mm, y_mm, z_mm = (a[::4][:24] for a in output_axes())  # a 24^3 grid of 6 mm voxels: quick
    coarse = torch.randn(1, 1, 24, 24, 24) * 0.5
    with torch.no_grad():
        whole = head(coarse, pa, lateral, pa_matrix, lateral_matrix, x_mm, y_mm, z_mm)
        z, y, x = slice(3, 19), slice(5, 21), slice(8, 24)
        patch = head(coarse[:, :, z, y, x], pa, lateral, pa_matrix, lateral_matrix, x_mm[x], y_mm[y], z_mm[z])
    inner = slice(head.margin, 16 - head.margin)
    torch.testing.assert_close(patch[..., inner, inner, inner], whole[:, :, z, y, x][..., inner, inner, inner])
    # ... and not at the patch faces, where its zero padding stands in for neighbours it lacks.
    assert not torch.allclose(patch[..., 0, :, :], whole[:, :, z, y, x][..., 0, :, :])


def test_a_unet_head_on_an_even_patch_interior_is_the_head_on_the_whole_volume(cache: Path) -> None:
    """The U-Net body's stride-2 blocks align with the whole volume's only on a patch starting at even
    voxels; there, its interior (margin = the measured receptive radius) is the whole volume's."""
    torch.manual_seed(0)
    head = FineHead(channels=4, view_channels=2, body="unet").eval()
    torch.nn.init.normal_(head.body.decode[-1].weight, std=0.1)  # the zero start would hide the body
    pa, lateral, pa_matrix, lateral_matrix = inputs_of(PairStream(1, 900, 8, cache)[0])
    x_mm, y_mm, z_mm = (a[::4][:40] for a in output_axes())
    coarse = torch.randn(1, 1, 40, 40, 40) * 0.5
    size = 2 * head.margin + 6
    inner = slice(head.margin, size - head.margin)

    def patch_interiors(corner: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        z, y, x = (slice(c, c + size) for c in corner)
        patch = head(coarse[:, :, z, y, x], pa, lateral, pa_matrix, lateral_matrix, x_mm[x], y_mm[y], z_mm[z])
        return patch[..., inner, inner, inner], whole[:, :, z, y, x][..., inner, inner, inner]

    with torch.no_grad():
        whole = head(coarse, pa, lateral, pa_matrix, lateral_matrix, x_mm, y_mm, z_mm)
        torch.testing.assert_close(*patch_interiors((4, 10, 16)))
        assert not torch.allclose(*patch_interiors((5, 10, 16)), atol=1e-4)  # an odd corner: misaligned blocks
    assert head.config["body"] == "unet" and "body" not in FineHead().config  # earlier sidecars unchanged


def test_a_unet_head_starts_as_stage1_and_its_patches_start_on_even_voxels() -> None:
    from model.train_refine import patch_corner

    head = FineHead(channels=4, view_channels=2, body="unet")
    coarse = torch.randn(1, 1, 24, 24, 24)
    views = torch.rand(1, 1, 32, 32)
    matrix = torch.tensor([[1.0, 0, 0, 16], [0, 0, 1, 16], [0, 0, 0, 1]])
    axes = [torch.linspace(-50, 50, 24)] * 3
    assert torch.equal(head(coarse, views, views, matrix, matrix, *axes), coarse)
    rng, bone = np.random.default_rng(0), np.argwhere(np.ones((9, 9, 9)))
    config = replace(RefineConfig.from_json(TINY_REFINE), patch_voxels=20)
    corners = np.array([patch_corner(rng, bone, (41, 40, 39), config, 2) for _ in range(200)])
    assert (corners % 2 == 0).all() and (corners >= 0).all() and (corners + 20 <= [41, 40, 39]).all()


def test_a_unet_head_trains_resumes_and_exports_within_1_hu(stage1: Path, cache: Path, tmp_path: Path) -> None:
    from model.train_refine import untrained_like

    config = replace(RefineConfig.from_json(TINY_REFINE), body="unet", patch_voxels=2 * 9 + 4)
    train_refine(config, stage1, tmp_path / "run", cache, log=lambda _: None, stop_after=2)
    train_refine(config, stage1, tmp_path / "run", cache, log=lambda _: None)
    sidecar = export_psct_net(tmp_path / "run" / "checkpoint.pt", tmp_path / "net.onnx", "test")
    assert sidecar["architecture"]["fine_head"]["body"] == "unet"
    assert sum(p.numel() for p in untrained_like(sidecar).parameters()) == sidecar["parameters"]
    net, _ = refined_net(tmp_path / "run" / "checkpoint.pt")
    inputs = inputs_of(PairStream(2, 900, 8, cache)[1])
    with torch.no_grad():
        expected = net(*inputs).numpy()
        coarse_only = net.coarse(*inputs).numpy()
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)})[0]
    assert np.abs(got - expected).max() <= 1.0
    assert np.abs(expected - coarse_only).max() > 1.0  # four steps moved the zero-started output


def test_a_patch_of_the_upsampled_coarse_grid_is_that_patch_of_the_whole_upsampling() -> None:
    """Patch training samples stage 1's upsampled features only where a patch lies; faces included."""
    coarse = torch.randn(1, 3, 12, 10, 8, dtype=torch.float64)
    whole = torch.nn.functional.interpolate(coarse, size=(24, 20, 16), mode="trilinear", align_corners=False)
    for z, y, x in [(slice(0, 7), slice(13, 20), slice(5, 16)), (slice(9, 24), slice(0, 20), slice(0, 1))]:
        torch.testing.assert_close(upsampled_patch(coarse, z, y, x, (24, 20, 16)), whole[:, :, z, y, x])


def test_a_head_reading_stage1_features_sees_on_a_patch_interior_what_it_sees_on_the_whole_volume(
    cache: Path,
) -> None:
    torch.manual_seed(0)
    head = FineHead(channels=4, view_channels=2, coarse_features=3, stage1_channels=5).eval()
    pa, lateral, pa_matrix, lateral_matrix = inputs_of(PairStream(1, 900, 8, cache)[0])
    x_mm, y_mm, z_mm = (a[::4][:24] for a in output_axes())
    coarse, stage1_features = torch.randn(1, 1, 24, 24, 24) * 0.5, torch.randn(1, 5, 12, 12, 12)
    with torch.no_grad():
        whole = head(coarse, pa, lateral, pa_matrix, lateral_matrix, x_mm, y_mm, z_mm, stage1_features)
        z, y, x = slice(3, 19), slice(5, 21), slice(8, 24)
        mixed = upsampled_patch(head.reduce(stage1_features), z, y, x, (24, 24, 24))
        views = head.view_features(pa, lateral)
        stacked = head.head_inputs(coarse[:, :, z, y, x], views, pa_matrix, lateral_matrix, x_mm[x], y_mm[y], z_mm[z],
                                   mixed)  # fmt: skip
        patch = coarse[:, :, z, y, x] + head.body(stacked)
        inner = slice(head.margin, 16 - head.margin)
        torch.testing.assert_close(patch[..., inner, inner, inner], whole[:, :, z, y, x][..., inner, inner, inner])
        # The features do reach the output.
        other = head(coarse, pa, lateral, pa_matrix, lateral_matrix, x_mm, y_mm, z_mm, stage1_features.flip(2))
        assert not torch.allclose(other, whole)
    with pytest.raises(ValueError, match="stage1_features"):
        head(coarse, pa, lateral, pa_matrix, lateral_matrix, x_mm, y_mm, z_mm)


def test_a_head_reading_stage1_features_trains_and_exports_within_1_hu(stage1: Path, cache: Path,
                                                                      tmp_path: Path) -> None:  # fmt: skip
    from model.train_refine import untrained_like

    config = replace(RefineConfig.from_json(TINY_REFINE), coarse_features=2)
    assert config.digest() != RefineConfig.from_json(TINY_REFINE).digest()
    train_refine(config, stage1, tmp_path / "run", cache, log=lambda _: None)
    sidecar = export_psct_net(tmp_path / "run" / "checkpoint.pt", tmp_path / "net.onnx", "test")
    assert sidecar["architecture"]["fine_head"]["coarse_features"] == 2
    assert sum(p.numel() for p in untrained_like(sidecar).parameters()) == sidecar["parameters"]
    net, _ = refined_net(tmp_path / "run" / "checkpoint.pt")
    inputs = inputs_of(PairStream(2, 900, 8, cache)[1])
    with torch.no_grad():
        expected = net(*inputs).numpy()
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)})[0]
    assert np.abs(got - expected).max() <= 1.0


def test_stage1_is_rebuilt_from_its_onnx_export(stage1: Path, cache: Path) -> None:
    net = coarse_from_onnx(stage1)
    inputs = inputs_of(PairStream(2, 900, 8, cache)[1])
    with torch.no_grad():
        ours = net(*inputs).numpy()
    session = ort.InferenceSession(str(stage1), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)})[0]
    assert np.abs(ours - theirs).max() <= 1.0


def test_a_composite_or_baseline_export_is_refused_as_stage1(stage2: Path, tmp_path: Path) -> None:
    composite = tmp_path / "refined.onnx"
    export_psct_net(stage2 / "checkpoint.pt", composite, "test")
    with pytest.raises(ValueError, match="not a coarse PSCT-Net"):
        coarse_from_onnx(composite)
    baseline = Path(__file__).resolve().parents[2] / "model" / "weights" / "physics-baseline.onnx"
    with pytest.raises(ValueError, match="not a coarse PSCT-Net"):
        coarse_from_onnx(baseline)


def test_a_base_for_a_stage1_checkpoint_is_refused(stage1: Path, tmp_path: Path) -> None:
    """--base only says where a stage-2 checkpoint's stage 1 lies; on stage 1 it would be ignored."""
    with pytest.raises(ValueError, match="stage-1 checkpoint"):
        export_psct_net(stage1.parent / "checkpoint.pt", tmp_path / "x.onnx", "test", base=stage1)
    assert not (tmp_path / "x.onnx").exists()


def test_an_interrupted_stage2_resumes_to_the_same_weights(stage1: Path, stage2: Path, cache: Path,
                                                           tmp_path: Path) -> None:  # fmt: skip
    config = RefineConfig.from_json(TINY_REFINE)
    train_refine(config, stage1, tmp_path, cache, log=lambda _: None, stop_after=2)
    lines: list[str] = []
    train_refine(config, stage1, tmp_path, cache, log=lines.append)
    assert lines[0] == f"resumed at step 2 of {config.steps}"
    steps = [json.loads(line)["step"] for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert steps == list(range(1, config.steps + 1))
    theirs = torch.load(stage2 / "checkpoint.pt", weights_only=False)["head"]
    ours = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["head"]
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="another config"):
        train_refine(replace(config, learning_rate=0.5), stage1, tmp_path, cache, log=lambda _: None)


def test_stage1_and_head_export_as_one_onnx_within_1_hu(stage2: Path, cache: Path, tmp_path: Path) -> None:
    sidecar = export_psct_net(stage2 / "checkpoint.pt", tmp_path / "net.onnx", "test")
    assert sidecar["kind"] == "psct-net" and sidecar["architecture"]["fine_head"]["channels"] == 4
    assert sidecar["training"]["config_digest"] == TrainConfig.from_json(TINY).digest()
    assert sidecar["training"]["stage2"]["config_digest"] == RefineConfig.from_json(TINY_REFINE).digest()
    assert sidecar["outputs"][0]["shape"] == [1, 1, 160, 160, 160]
    training = sidecar["training"]
    assert training["data"].startswith("synthetic") and training["stage2"]["data"].startswith("synthetic")
    net, _ = refined_net(stage2 / "checkpoint.pt")
    inputs = inputs_of(PairStream(2, 900, 8, cache)[0])
    with torch.no_grad():
        expected = net(*inputs).numpy()
        coarse_only = net.coarse(*inputs).numpy()
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)})[0]
    assert np.abs(got - expected).max() <= 1.0
    assert np.abs(expected - coarse_only).max() > 1.0  # the head does change the volume
    # No source paths or line numbers in the file: its sha256 is the graph's and the weights' alone.
    nodes = onnx.load(str(tmp_path / "net.onnx")).graph.node
    assert not [e for node in nodes for e in node.metadata_props if e.key == STACK_TRACE_KEY]
    assert all(node.metadata_props for node in nodes)  # the rest of the provenance stays


@pytest.mark.parametrize(("body", "patch_voxels"), [("plain", 2 * FINE_LAYERS), ("unet", 18), ("unet", 25)])
def test_a_patch_without_interior_or_misaligned_is_refused(stage1: Path, tmp_path: Path, body: str,
                                                          patch_voxels: int) -> None:  # fmt: skip
    config = replace(RefineConfig.from_json(TINY_REFINE), body=body, patch_voxels=patch_voxels)
    with pytest.raises(ValueError, match="patch_voxels"):
        train_refine(config, stage1, tmp_path, log=lambda _: None)
    assert not (tmp_path / "config.json").exists()


def test_the_untrained_architecture_of_a_sidecar_has_its_parameter_count(stage2: Path, tmp_path: Path) -> None:
    from model.train_refine import untrained_like

    sidecar = export_psct_net(stage2 / "checkpoint.pt", tmp_path / "net.onnx", "test")
    assert sum(p.numel() for p in untrained_like(sidecar).parameters()) == sidecar["parameters"]


def test_psct_export_writes_stage2_to_the_served_default_never_over_its_stage1(stage1: Path, stage2: Path) -> None:
    assert default_output(stage2 / "checkpoint.pt") == DEFAULT_MODEL
    assert default_output(stage1.parent / "checkpoint.pt") == DEFAULT_MODEL.with_name("psct-net.onnx")


# Each against refine.json, the baseline (served until the soft-Dice term; refine-dice-1.json is now).
STAGE2_EXPERIMENTS = [("refine-3000-steps", {"steps"}), ("refine-16-channels", {"channels"}),
                      ("refine-8-layers", {"layers"}), ("refine-8-view-channels", {"view_channels"}),
                      ("refine-bone-share-0.5", {"bone_share"}), ("refine-seed1", {"seed"}),
                      ("refine-dice-0.25", {"losses"}), ("refine-dice-1", {"losses"}),
                      ("refine-dice-3", {"losses"}),
                      ("refine-dice-1-300-pairs", {"losses", "pairs"}),
                      ("refine-dice-1-stage1-features", {"losses", "coarse_features"}),
                      ("refine-dice-1-unet-16", {"losses", "body", "channels", "patch_voxels"})]  # fmt: skip
# MODEL_CARD reports each of them.


@pytest.mark.parametrize(("variant", "changed"), STAGE2_EXPERIMENTS)
def test_a_stage2_experiment_config_changes_only_what_it_tests(variant: str, changed: set) -> None:
    one, other = (asdict(RefineConfig.from_json(CONFIGS / f"{name}.json")) for name in (variant, "refine"))
    assert {key for key in one if key != "name" and one[key] != other[key]} == changed


def test_the_soft_dice_term_is_one_minus_dice_away_from_the_threshold_and_pulls_bone_over_it() -> None:
    """Voxels >= 500 HU from 300 HU sit 10 widths out, where the sigmoid is within 5e-5 of 0 or 1: the
    term must equal 1 - Dice of the 300 HU masks to that (summed over a few hundred voxels, 1e-3)."""
    rng = np.random.default_rng(3)
    truth_hu = np.where(rng.random((2, 12, 12, 12)) < 0.2, 1200.0, 20.0)
    predicted_hu = np.where(rng.random(truth_hu.shape) < 0.25, 1000.0, -200.0)
    predicted = torch.tensor(predicted_hu / HU_SCALE, requires_grad=True)
    loss = soft_dice_loss(predicted, torch.tensor(truth_hu / HU_SCALE))
    assert loss.item() == pytest.approx(1.0 - dice(predicted_hu > 300, truth_hu > 300), abs=1e-3)
    # At the threshold the gradient raises a true-bone voxel and lowers a false one.
    at = torch.full((1, 4, 4, 4), 300.0 / HU_SCALE, requires_grad=True)
    truth = torch.zeros(1, 4, 4, 4)
    truth[0, :2] = 1000.0 / HU_SCALE
    soft_dice_loss(at, truth).backward()
    assert (at.grad[0, :2] < 0).all() and (at.grad[0, 2:] > 0).all()


def test_a_config_without_the_soft_dice_term_keeps_the_digest_its_runs_recorded() -> None:
    """refine.json's runs (the stage 2 served until the term existed) recorded this digest."""
    config = RefineConfig.from_json(CONFIGS / "refine.json")
    assert config.losses.dice == 0.0 and config.digest() == "08d77f720a3a6db2"
    assert RefineConfig.from_json(CONFIGS / "refine-dice-1.json").digest() != config.digest()
