"""PSCT-Net training in a tiny configuration: it learns, checkpoints, resumes exactly, exports to ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from model.dataset import PairStream
from model.export import export_psct_net
from model.train import TrainConfig, build, inputs_of, train

TINY = Path(__file__).resolve().parents[2] / "model" / "configs" / "tiny.json"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pairs")


@pytest.fixture(scope="module")
def straight_run(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("straight")
    train(TrainConfig.from_json(TINY), run, cache, log=lambda _: None)
    return run


def test_a_run_writes_its_log_curve_and_checkpoint(straight_run: Path) -> None:
    records = [json.loads(line) for line in (straight_run / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["total"]) and r["total"] > 0 for r in records)
    assert (straight_run / "losses.png").stat().st_size > 5_000
    assert torch.load(straight_run / "checkpoint.pt", weights_only=False)["step"] == 4


def test_an_interrupted_run_resumes_to_the_same_weights(straight_run: Path, cache: Path, tmp_path: Path) -> None:
    config = TrainConfig.from_json(TINY)
    train(config, tmp_path, cache, log=lambda _: None, stop_after=2)
    with (tmp_path / "losses.jsonl").open("a") as log:  # a step logged after the checkpoint, then a kill
        log.write(json.dumps({"step": 3, "total": 1.0}) + "\n")
    lines: list[str] = []
    train(config, tmp_path, cache, log=lines.append)
    assert lines[0] == "resumed at step 2 of 4"
    steps = [json.loads(line)["step"] for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    theirs = torch.load(straight_run / "checkpoint.pt", weights_only=False)["model"]
    ours = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-6)


def test_another_config_never_resumes_a_run(straight_run: Path, cache: Path) -> None:
    other = TrainConfig.from_dict({**json.loads(TINY.read_text()), "learning_rate": 0.5})
    with pytest.raises(ValueError, match="another config"):
        train(other, straight_run, cache, log=lambda _: None)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_few_steps_on_one_pair_reduce_its_loss(cache: Path, precision: str) -> None:
    """Not a quality claim: the gradients of every term point downhill (8 Adam steps, one pair)."""
    from model.train import loss_terms

    config = TrainConfig.from_json(TINY)
    net = build(config)
    pair = PairStream(config.pairs, config.base_seed, config.truth_pool, cache)[0]
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(8):
        terms = loss_terms(net, pair, config.losses, precision)
        first = first if first is not None else float(terms["total"])
        optimiser.zero_grad()
        terms["total"].backward()
        optimiser.step()
    assert float(loss_terms(net, pair, config.losses)["total"]) < 0.8 * first


def test_the_hu_terms_are_the_stated_means() -> None:
    """Both stages' HU terms on a case worked by hand: a 4^3 volume, one bone voxel, errors known."""
    from model.network import HU_SCALE
    from model.train import hu_terms

    truth = torch.zeros(4, 4, 4)
    truth[1, 2, 3] = 1000.0 / HU_SCALE
    predicted = truth + 0.25
    predicted[1, 2, 3] = truth[1, 2, 3] - 0.5  # the bone voxel off by 0.5 the other way
    terms = hu_terms(predicted, truth)
    assert float(terms["l1"]) == pytest.approx((63 * 0.25 + 0.5) / 64)
    assert float(terms["bone"]) == pytest.approx(0.5)
    # The error field is 0.25 with a -0.5 dip at one voxel: along each axis the dip makes two
    # differences of 0.75 (one where it is the voxel's last neighbour on that axis: x = 3).
    per_axis = [2 * 0.75 / 48, 2 * 0.75 / 48, 0.75 / 48]
    assert float(terms["gradient"]) == pytest.approx(sum(per_axis))
    # Soft Dice, 50 HU wide around 300 HU: the bone voxel at 500 HU counts sigmoid(4), each of the
    # 63 others at 250 HU sigmoid(-1) of a false positive.
    bone_soft, other_soft = 1 / (1 + np.exp(-4.0)), 1 / (1 + np.exp(1.0))
    assert float(terms["dice"]) == pytest.approx(1 - 2 * bone_soft / (bone_soft + 63 * other_soft + 1), rel=1e-5)
    batched = hu_terms(torch.stack([predicted, truth]), torch.stack([truth, truth]))  # stage 2's patch batches
    assert float(batched["bone"]) == pytest.approx(0.25)


def test_the_exported_onnx_matches_pytorch_within_1_hu(straight_run: Path, cache: Path, tmp_path: Path) -> None:
    """Acceptance (issue 5): max |ONNX - PyTorch| <= 1 HU on phantom inputs (and random ones, in export)."""
    sidecar = export_psct_net(straight_run / "checkpoint.pt", tmp_path / "net.onnx", "test")
    assert sidecar["kind"] == "psct-net" and sidecar["training"]["steps"] == 4
    assert sidecar["outputs"][0]["shape"] == [1, 1, 160, 160, 160]
    config = TrainConfig.from_json(TINY)
    net = build(config)
    net.load_state_dict(torch.load(straight_run / "checkpoint.pt", weights_only=False)["model"])
    inputs = inputs_of(PairStream(config.pairs, config.base_seed, config.truth_pool, cache)[1])
    with torch.no_grad():
        expected = net.eval()(*inputs).numpy()
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    names = ["pa", "lateral", "pa_matrix", "lateral_matrix"]
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]
    assert np.abs(got - expected).max() <= 1.0


def test_bfloat16_training_keeps_the_lifting_geometry_in_float32(cache: Path) -> None:
    """Under bfloat16 autocast the convolutions round, but the lifting must not: grid_sample would
    take bfloat16 sampling positions (up to 1/512 of the detector off) and round what it lifts."""
    from model.network import scale_matrix
    from model.projector import back_project

    config = TrainConfig.from_json(TINY)
    net = build(config)
    pa, _, pa_matrix, _ = inputs_of(PairStream(config.pairs, config.base_seed, config.truth_pool, cache)[0])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = net.encoders[0](pa)
        lifted = net._lift(0, pa, pa_matrix)
    assert features.dtype == torch.bfloat16 and lifted.dtype == torch.float32
    features = torch.cat([features.float(), torch.ones_like(features[:, :1], dtype=torch.float32)], 1)
    matrix = scale_matrix(pa_matrix, features.shape[-1] / pa.shape[-1])[None]
    expected = back_project(features, matrix, net.x_mm, net.y_mm, net.z_mm)
    assert float(expected[:, -1].mean()) > 0.1  # the coverage channel: rays reach the grid
    torch.testing.assert_close(lifted, expected, rtol=1e-6, atol=1e-6)


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig.from_dict({**json.loads(TINY.read_text()), "precision": "float16"})


def test_the_comparison_models_have_psct_nets_size() -> None:
    """Issue 5's rows (b) geometry-free and (c) no attention: parameter counts within 5 % of PSCT-Net."""
    folder = TINY.parent
    counts = {}
    for name in ("reference", "geometry-free", "no-attention"):
        net = build(TrainConfig.from_json(folder / f"{name}.json"))
        counts[name] = sum(p.numel() for p in net.parameters())
    for name in ("geometry-free", "no-attention"):
        assert counts[name] == pytest.approx(counts["reference"], rel=0.05), counts


def test_the_geometry_free_model_ignores_the_matrices(cache: Path) -> None:
    config = TrainConfig.from_dict({**json.loads(TINY.read_text()), "lifting": "dense"})
    net = build(config).eval()
    pa, lateral, pa_matrix, lateral_matrix = inputs_of(
        PairStream(config.pairs, config.base_seed, config.truth_pool, cache)[0]
    )
    with torch.no_grad():
        one = net.coarse(pa, lateral, pa_matrix, lateral_matrix)
        other = net.coarse(pa, lateral, 2 * pa_matrix + 1, lateral_matrix * 0.5)
        geometry = build(TrainConfig.from_json(TINY)).eval()
        moved = geometry.coarse(pa, lateral, pa_matrix, torch.roll(lateral_matrix, 1, 0))
        assert not torch.allclose(moved, geometry.coarse(pa, lateral, pa_matrix, lateral_matrix))
    torch.testing.assert_close(one, other)


def flat_config(path: Path) -> dict:
    from dataclasses import asdict

    fields = asdict(TrainConfig.from_json(path))
    del fields["name"]
    losses = {f"losses.{k}": v for k, v in fields.pop("losses").items()}
    return {**fields, **losses}


NAMES = ("reference", "geometry-free", "no-attention")
# Each experiment of model/MODEL_CARD.md against its base, and the one thing it changes: if more
# changed, its rows compare nothing.
EXPERIMENTS = [
    *((f"bone-2/{name}", f"bone-0.5/{name}", {"losses.bone"}) for name in NAMES),
    ("bfloat16/reference", "bone-0.5/reference", {"precision"}),
    *((f"bfloat16/bone-{w}-500-steps", "bfloat16/reference", {"losses.bone", "steps"}) for w in ("0.1", "0.25", "1")),
    ("reference", "bfloat16/reference", {"losses.bone"}),
    ("geometry-free", "reference", {"lifting", "widths"}),
    ("no-attention", "reference", {"attention"}),
    ("dice-1", "reference", {"losses.dice"}),
    ("seeds/dice-1-seed1", "dice-1", {"seed"}),
    ("dice-1-peak-3e-3", "dice-1", {"learning_rate"}),
    ("dice-2", "dice-1", {"losses.dice"}),
    ("dice-1-3000-steps", "dice-1", {"steps"}),
    ("bone-0.5/geometry-free", "bone-0.5/reference", {"lifting", "widths"}),
    ("bone-0.5/no-attention", "bone-0.5/reference", {"attention"}),
    *(
        (f"seeds/{arm}-seed{n}-500-steps", arm, {"seed", "steps"})
        for arm in ("reference", "no-attention")
        for n in (1, 2)
    ),
]


@pytest.mark.parametrize(("variant", "base", "changed"), EXPERIMENTS, ids=[e[0] for e in EXPERIMENTS])
def test_an_experiment_config_changes_only_what_it_tests(variant: str, base: str, changed: set) -> None:
    one, other = flat_config(TINY.parent / f"{variant}.json"), flat_config(TINY.parent / f"{base}.json")
    assert {key for key in one if one[key] != other[key]} == changed


def test_a_later_field_at_its_first_value_leaves_the_digest_as_before() -> None:
    """Runs from before a field (or a term in a table such as losses) existed keep their digest."""
    from model.train import config_digest

    before = {"steps": 10, "losses": {"l1": 1.0}}
    later = {"lifting": "geometry", "losses": {"dice": 0.0}}
    assert config_digest({**before, "lifting": "geometry", "losses": {"l1": 1.0, "dice": 0.0}}, later) == (
        config_digest(before, later)
    )
    assert config_digest({**before, "losses": {"l1": 1.0, "dice": 1.0}}, later) != config_digest(before, later)
    assert config_digest({**before, "lifting": "dense"}, later) != config_digest(before, later)
