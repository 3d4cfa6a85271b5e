"""Training PSCT-Net on data-engine pairs: losses in HU, checkpoints, resume, a loss-curve PNG.

One run is a folder: `config.json` (what was asked), `checkpoint.pt` (written atomically every
`checkpoint_every` steps and at the end), `losses.jsonl` and `losses.png`. Running the same config
into the same folder resumes from the checkpoint; seeds fix the data order and the initial weights.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.dataset import PairStream, TrainingPair, ct_sources
from model.grid import OUTPUT_SHAPE, VOXEL_MM
from model.network import HU_SCALE, PSCTNet, scale_matrix
from model.preprocess import INPUT_SHAPE_PX
from model.projector import forward_project

BONE_HU = 300.0  # cancellous bone starts here: the bone-weighted term and the Dice threshold
PROJECTION_PX = 64  # detector size of the projection-consistency term (coarse, like the 3D grid)


@dataclass(frozen=True)
class Losses:
    l1: float = 1.0  # mean |HU error| / HU_SCALE
    bone: float = 2.0  # extra weight of that error on true bone (thin bone is the hard part)
    gradient: float = 0.5  # L1 of finite differences: sharp edges, not blurred shells
    projection: float = 0.1  # the prediction re-projected vs the truth re-projected, both views
    # Soft Dice of the bone mask at BONE_HU (soft_dice_loss): the terms above leave thin bone just
    # under the threshold, where Dice, the skull surface and the intracranial volume read it.
    dice: float = 0.0


# Config fields added after the first runs, with the value those runs had (a table for a nested one).
LATER_FIELDS = {"lifting": "geometry", "ct_dir": None, "precision": "float32", "losses": {"dice": 0.0}}
# Width of the soft threshold: the sigmoid goes from 5 % to 95 % over 300 +- 150 HU, about the step
# from soft tissue to cancellous bone, so the Dice term sees voxels near the threshold and not the rest.
SOFT_BONE_WIDTH_HU = 50.0
# "bfloat16": convolutions autocast to bfloat16 (faster where the CPU has AVX512-BF16 or AMX: the
# MODEL_CARD has the figures); weights, optimiser, geometry and losses stay float32, and so do
# export and serving.
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    name: str = "reference"
    pairs: int = 600  # distinct training pairs (stream `base_seed`, indices 0..pairs-1)
    base_seed: int = 0
    truth_pool: int = 2  # truth and coarse grid: 160 / pool voxels of 1.5 * pool mm
    omit_probability: float = 0.1
    steps: int = 2000
    learning_rate: float = 1e-3
    features: int = 16
    widths: tuple[int, ...] = (16, 32, 64, 128)
    attention: bool = True
    lifting: str = "geometry"  # "dense": the geometry-free baseline (model/network.py)
    ct_dir: str | None = None  # real CTs instead of phantoms (model/dataset.py ct_sources)
    precision: str = "float32"  # of the convolutions while training (PRECISIONS)
    seed: int = 0
    checkpoint_every: int = 100
    losses: Losses = field(default_factory=Losses)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config") -> TrainConfig:
        raw = {k: v for k, v in raw.items() if k != "digest"}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{where}: unknown config keys {sorted(unknown)}")
        losses = raw.get("losses", {})
        unknown = set(losses) - set(Losses.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{where}: unknown loss terms {sorted(unknown)}")
        raw["losses"] = Losses(**losses)
        raw["widths"] = tuple(raw.get("widths", cls.widths))
        if raw.get("precision", cls.precision) not in PRECISIONS:
            raise ValueError(f"{where}: precision must be one of {PRECISIONS}, got {raw['precision']!r}")
        return cls(**raw)

    @classmethod
    def from_json(cls, path: Path) -> TrainConfig:
        return cls.from_dict(json.loads(path.read_text()), str(path))

    def digest(self) -> str:
        return config_digest(asdict(self), LATER_FIELDS)

    @property
    def coarse_shape(self) -> tuple[int, int, int]:
        return tuple(n // self.truth_pool for n in OUTPUT_SHAPE)  # type: ignore[return-value]


def config_digest(fields: dict, later_fields: dict) -> str:
    """16 hex digits of a config; a field added later is left out at the value earlier runs had, so
    runs from before it existed keep their digest."""
    return hashlib.sha256(json.dumps(_without_later(fields, later_fields), sort_keys=True).encode()).hexdigest()[:16]


def _without_later(fields: dict, later_fields: dict) -> dict:
    kept = {}
    for name, value in fields.items():
        later = later_fields.get(name, object())
        if isinstance(later, dict) and isinstance(value, dict):  # a table (losses): the same, one level down
            kept[name] = _without_later(value, later)
        elif value != later:
            kept[name] = value
    return kept


def build(config: TrainConfig) -> PSCTNet:
    torch.manual_seed(config.seed)
    return PSCTNet(config.coarse_shape, VOXEL_MM * config.truth_pool, OUTPUT_SHAPE, config.features,
                   config.widths, config.attention, config.lifting)  # fmt: skip


def inputs_of(pair: TrainingPair) -> tuple[torch.Tensor, ...]:
    return (torch.from_numpy(pair.pa)[None], torch.from_numpy(pair.lateral)[None],
            torch.from_numpy(pair.pa_matrix), torch.from_numpy(pair.lateral_matrix))  # fmt: skip


def hu_terms(predicted: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """The HU terms of both stages (HU / HU_SCALE; volumes in the last three dimensions)."""
    error = (predicted - truth).abs()
    bone = truth > BONE_HU / HU_SCALE
    terms = {"l1": error.mean(), "bone": (error * bone).sum() / bone.sum().clamp(min=1)}
    terms["gradient"] = sum(
        (torch.diff(predicted, dim=d) - torch.diff(truth, dim=d)).abs().mean() for d in (-3, -2, -1)
    )  # type: ignore[assignment]
    terms["dice"] = soft_dice_loss(predicted, truth)
    return terms


def soft_dice_loss(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """1 - Dice of the truth's bone mask and a sigmoid of the prediction around BONE_HU (HU / HU_SCALE),
    pooled over everything given (stage 2: all patches, so a patch without bone adds only its false
    positives)."""
    soft = torch.sigmoid((predicted - BONE_HU / HU_SCALE) * (HU_SCALE / SOFT_BONE_WIDTH_HU))
    bone = (truth > BONE_HU / HU_SCALE).to(soft.dtype)
    return 1.0 - 2.0 * (soft * bone).sum() / (soft.sum() + bone.sum()).clamp(min=1.0)


def loss_terms(
    net: PSCTNet, pair: TrainingPair, weights: Losses, precision: str = "float32"
) -> dict[str, torch.Tensor]:
    inputs = inputs_of(pair)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        predicted = net.coarse(*inputs)[0, 0].float()
    truth = torch.from_numpy(pair.hu) / HU_SCALE
    terms = hu_terms(predicted, truth)
    # Attenuation-like volumes (air 0) projected onto each view's detector at PROJECTION_PX.
    projection = predicted.new_zeros(())
    axes = (net.x_mm, net.y_mm, net.z_mm)
    for matrix in inputs[2:]:
        small = scale_matrix(matrix, PROJECTION_PX / INPUT_SHAPE_PX[1])[None]
        shape = (PROJECTION_PX, PROJECTION_PX)
        ours = forward_project((predicted + 1.0)[None, None], small, *axes, shape)
        theirs = forward_project((truth + 1.0)[None, None], small, *axes, shape)
        projection = projection + (ours - theirs).abs().mean() / theirs.abs().mean().clamp(min=1e-6)
    terms["projection"] = projection
    terms["total"] = sum(getattr(weights, name) * terms[name] for name in asdict(weights))  # type: ignore[assignment]
    return terms


def _order(config: TrainConfig, epoch: int) -> list[int]:
    return list(np.random.default_rng([config.seed, epoch]).permutation(config.pairs))


def _indices(config: TrainConfig, start_step: int) -> Iterator[tuple[int, int]]:
    """(step, pair index) from `start_step` on: a fixed order per epoch, the same after a resume."""
    for step in range(start_step, config.steps):
        epoch, position = divmod(step, config.pairs)
        yield step, int(_order(config, epoch)[position])


def train(config: TrainConfig, run_dir: Path, cache: Path | None = None, log=print,  # type: ignore[no-untyped-def]
          stop_after: int | None = None) -> dict:  # fmt: skip
    """Train (or resume) into `run_dir`; `stop_after` ends early at that step, as a kill would
    (after its checkpoint). Returns where the run stands."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    if config_path.exists() and json.loads(config_path.read_text()).get("digest") != config.digest():
        raise ValueError(f"{run_dir} holds a run of another config: use a new folder")
    config_path.write_text(json.dumps({**asdict(config), "digest": config.digest()}, indent=1) + "\n")
    net = build(config)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=max(config.steps, 2))
    start = 0
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        start = state["step"]
        log(f"resumed at step {start} of {config.steps}")
        # Steps logged after that checkpoint (a kill came before the next one) are run again.
        history = run_dir / "losses.jsonl"
        kept = [line for line in history.read_text().splitlines() if json.loads(line)["step"] <= start]
        history.write_text("".join(f"{line}\n" for line in kept))
    sources = ct_sources(Path(config.ct_dir)) if config.ct_dir else ()
    stream = PairStream(config.pairs, config.base_seed, config.truth_pool, cache, config.omit_probability, sources)
    net.train()
    tick = time.perf_counter()
    for step, index in _indices(config, start):
        terms = loss_terms(net, stream[index], config.losses, config.precision)
        optimiser.zero_grad()
        terms["total"].backward()
        optimiser.step()
        schedule.step()
        record = {"step": step + 1, "pair": index, **{k: round(v.item(), 6) for k, v in terms.items()},
                  "seconds": round(time.perf_counter() - tick, 3)}  # fmt: skip
        with (run_dir / "losses.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 in (config.steps, stop_after):
            save_checkpoint(net, optimiser, schedule, step + 1, config, checkpoint)
            plot_losses(run_dir / "losses.jsonl", run_dir / "losses.png")
            log(f"step {step + 1}/{config.steps} loss {record['total']:.4f} ({record['seconds']:.0f} s)")
        if step + 1 == stop_after:
            return {"step": step + 1, "digest": config.digest(), "checkpoint": str(checkpoint)}
    return {"step": config.steps, "digest": config.digest(), "checkpoint": str(checkpoint)}


def save_checkpoint(net, optimiser, schedule, step: int, config: TrainConfig, path: Path) -> None:  # type: ignore[no-untyped-def]
    partial = path.with_suffix(".partial")
    torch.save({"model": net.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                "step": step, "config": asdict(config), "digest": config.digest()}, partial)  # fmt: skip
    partial.replace(path)  # a kill mid-write leaves the previous checkpoint intact


def plot_losses(
    log_path: Path, png_path: Path, names: tuple[str, ...] = ("total", "l1", "bone", "gradient", "projection", "dice")
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    steps = [r["step"] for r in records]
    figure, axis = plt.subplots(figsize=(7, 4))
    for name in (n for n in names if all(n in r for r in records)):  # a run resumed across a new term
        values = np.array([r[name] for r in records])
        window = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axis.plot(steps[window - 1 :], smooth, label=name)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel(f"loss (HU / {HU_SCALE:g}), running mean")
    axis.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
