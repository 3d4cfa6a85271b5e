"""Stage 2 of PSCT-Net's training: the fine head (model/refine.py) on full-resolution patches.

The coarse network is frozen: each training pair's upsampled coarse output is computed once and
kept in memory, and every step fits the head on a few random patches of that pair (most of them
centred on bone, where the 3 mm grid loses most). The run folder works as stage 1's (config.json,
checkpoint.pt written atomically, losses.jsonl, losses.png; the same config resumes).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.dataset import PairStream, TrainingPair, ct_sources
from model.export import sha256_of
from model.network import HU_SCALE, PSCTNet
from model.refine import (
    FINE_LAYERS,
    FineHead,
    RefinedNet,
    coarse_from_onnx,
    output_axes,
    upsampled_patch,
    upsampled_with_features,
)
from model.train import BONE_HU, TrainConfig, build, config_digest, hu_terms, inputs_of, plot_losses


@dataclass(frozen=True)
class FineLosses:
    l1: float = 1.0
    # The bone term is a mean over bone voxels (~1-5 % of a patch): weight w makes a bone voxel count
    # ~1 + w / share times a soft-tissue one. At 2 the head brightened all tissue near bone (+200 HU
    # in the brain); at 0 it erased the bone it cannot place. 0.1: bone ~3-10x.
    bone: float = 0.1
    gradient: float = 0.5
    # Soft Dice of the bone mask at BONE_HU: the HU terms leave a blurred thin vault just under the
    # threshold, where Dice, the skull surface and the intracranial volume all read it.
    dice: float = 0.0


# Config fields added after the first runs, with the value those runs had (as model/train.py's).
LATER_FIELDS = {"ct_dir": None, "layers": FINE_LAYERS, "coarse_features": 0, "body": "plain", "losses": {"dice": 0.0}}


@dataclass(frozen=True)
class RefineConfig:
    name: str = "refine"
    pairs: int = 150  # distinct pairs of stream `base_seed` (the stage-1 stream: the same heads)
    base_seed: int = 0
    omit_probability: float = 0.1
    steps: int = 3000
    patches: int = 4  # patches per step, all from that step's pair
    patch_voxels: int = 48
    bone_share: float = 0.25  # patches centred on a voxel that is bone in the truth or the coarse output
    learning_rate: float = 1e-3
    channels: int = 8
    view_channels: int = 4
    layers: int = FINE_LAYERS  # 3x3x3 convolutions of the head: its receptive radius, the patches' margin
    coarse_features: int = 0  # > 0: the head also reads stage 1's last features, mixed down to this many
    body: str = "plain"  # "unet": a two-level PatchUNet of `channels` instead of `layers` plain convolutions
    ct_dir: str | None = None  # real CTs instead of phantoms, as stage 1's ct_dir
    seed: int = 0
    checkpoint_every: int = 100
    losses: FineLosses = field(default_factory=FineLosses)

    @classmethod
    def from_json(cls, path: Path) -> RefineConfig:
        raw = {k: v for k, v in json.loads(path.read_text()).items() if k != "digest"}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        return cls(**{**raw, "losses": FineLosses(**raw.get("losses", {}))})

    def digest(self) -> str:
        return config_digest(asdict(self), LATER_FIELDS)


def load_coarse(base: Path) -> tuple[PSCTNet, dict]:
    """The frozen stage 1, from a stage-1 checkpoint or its ONNX export; and what it was."""
    if not base.is_file():
        raise FileNotFoundError(f"no stage-1 model at {base}")
    if base.suffix == ".onnx":
        net = coarse_from_onnx(base)
        training = json.loads(base.with_suffix(".json").read_text())["training"]
        described = {"source": base.name, "config": training["config"], "config_digest": training["config_digest"],
                     "sha256": sha256_of(base)}  # fmt: skip
    else:
        state = torch.load(base, weights_only=False)
        net = build(TrainConfig.from_dict(state["config"]))
        net.load_state_dict(state["model"])
        described = {"source": base.name, "config": state["config"], "config_digest": state["digest"],
                     "sha256": sha256_of(base)}  # fmt: skip
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.eval(), described


def patch_corner(rng: np.random.Generator, bone: np.ndarray, shape: tuple[int, ...], config: RefineConfig,
                 stride: int = 1) -> np.ndarray:  # fmt: skip
    """(z, y, x) of a patch's first voxel, a multiple of the head's `stride`: centred on one of the `bone`
    voxels (truth or coarse output) with probability `bone_share`, else anywhere."""
    size, extent = config.patch_voxels, np.array(shape)
    if rng.random() < config.bone_share:
        centre = bone[rng.integers(len(bone))] if len(bone) else extent // 2
    else:
        centre = rng.integers(0, extent)
    corner = np.clip(centre - size // 2, 0, extent - size)
    return corner - corner % stride


def fine_loss_terms(head: FineHead, pair: TrainingPair, coarse: torch.Tensor, corners: list[np.ndarray],
                    size: int, weights: FineLosses,
                    stage1_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Losses in HU / HU_SCALE on each patch's interior: the head's depth in voxels in from its faces, where
    the head sees the same neighbours as in a whole-volume run. `coarse`: (1, 1, D, H, W); with the head's
    `reduce`, `stage1_features` are stage 1's last features on its own grid."""
    pa, lateral, pa_matrix, lateral_matrix = inputs_of(pair)
    x_mm, y_mm, z_mm = output_axes()
    truth_all = torch.from_numpy(pair.hu) / HU_SCALE
    inner = slice(head.margin, size - head.margin)
    features = head.view_features(pa, lateral)
    mixed = None
    if head.reduce is not None:
        if stage1_features is None:
            raise ValueError("this fine head reads stage 1's features: pass stage1_features")
        mixed = head.reduce(stage1_features)
    stacked, coarse_patches, truth_patches = [], [], []
    for z0, y0, x0 in (tuple(int(c) for c in corner) for corner in corners):
        z, y, x = slice(z0, z0 + size), slice(y0, y0 + size), slice(x0, x0 + size)
        coarse_patches.append(coarse[:, :, z, y, x])
        stage1 = None if mixed is None else upsampled_patch(mixed, z, y, x, tuple(coarse.shape[-3:]))
        stacked.append(
            head.head_inputs(coarse_patches[-1], features, pa_matrix, lateral_matrix, x_mm[x], y_mm[y], z_mm[z], stage1)
        )
        truth_patches.append(truth_all[z, y, x])
    batch = torch.cat(stacked).contiguous(memory_format=torch.channels_last_3d)  # ~1.8x faster convs on CPU
    out = torch.cat(coarse_patches) + head.body(batch)
    p = out[:, 0, inner, inner, inner]
    t = torch.stack(truth_patches)[:, inner, inner, inner]
    terms = hu_terms(p, t)
    terms["total"] = sum(getattr(weights, name) * terms[name] for name in asdict(weights))  # type: ignore[assignment]
    return terms


def train_refine(config: RefineConfig, base: Path, run_dir: Path, cache: Path | None = None, log=print,  # type: ignore[no-untyped-def]
                 stop_after: int | None = None) -> dict:  # fmt: skip
    """Train (or resume) the fine head on top of the frozen stage 1 at `base` into `run_dir`."""
    coarse_net, stage1 = load_coarse(base)
    head = head_of(config, coarse_net)
    if config.patch_voxels <= 2 * head.margin or config.patch_voxels % head.stride:
        raise ValueError(f"patch_voxels must exceed {2 * head.margin} (the head's margin on both sides) and be a "
                         f"multiple of {head.stride}, got {config.patch_voxels}")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    recorded = {**asdict(config), "digest": config.digest(), "stage1": stage1}
    if config_path.exists():
        before = json.loads(config_path.read_text())
        if before.get("digest") != config.digest() or before.get("stage1", {}).get("sha256") != stage1["sha256"]:
            raise ValueError(f"{run_dir} holds a run of another config or stage 1: use a new folder")
    config_path.write_text(json.dumps(recorded, indent=1) + "\n")
    torch.manual_seed(config.seed)
    head = head_of(config, coarse_net)  # again, after the seed: the weights are the seed's
    optimiser = torch.optim.Adam(head.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=max(config.steps, 2))
    checkpoint, history = run_dir / "checkpoint.pt", run_dir / "losses.jsonl"
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        start = state["step"]
        log(f"resumed at step {start} of {config.steps}")
        kept = [line for line in history.read_text().splitlines() if json.loads(line)["step"] <= start]
        history.write_text("".join(f"{line}\n" for line in kept))
    # Full-resolution truth (pool 1): its own cache files, the same heads and rooms as stage 1's.
    sources = ct_sources(Path(config.ct_dir)) if config.ct_dir else ()
    stream = PairStream(config.pairs, config.base_seed, 1, cache, config.omit_probability, sources)
    # Upsampled HU (and, for a head that reads them, stage 1's features): recomputed after a resume.
    coarse_outputs: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    head.train()
    tick = time.perf_counter()
    for step in range(start, config.steps):
        epoch, position = divmod(step, config.pairs)
        index = int(np.random.default_rng([config.seed, epoch]).permutation(config.pairs)[position])
        pair = stream[index]
        if index not in coarse_outputs:
            coarse_outputs[index] = stage1_outputs(coarse_net, pair, with_features=head.reduce is not None)
        coarse, stage1_features = coarse_outputs[index]
        rng = np.random.default_rng([config.seed, step])
        candidates = np.argwhere((pair.hu > BONE_HU) | (coarse[0, 0].numpy() > BONE_HU / HU_SCALE))
        corners = [patch_corner(rng, candidates, pair.hu.shape, config, head.stride) for _ in range(config.patches)]
        terms = fine_loss_terms(head, pair, coarse, corners, config.patch_voxels, config.losses, stage1_features)
        optimiser.zero_grad()
        terms["total"].backward()
        optimiser.step()
        schedule.step()
        record = {"step": step + 1, "pair": index, **{k: round(v.item(), 6) for k, v in terms.items()},
                  "seconds": round(time.perf_counter() - tick, 3)}  # fmt: skip
        with history.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 in (config.steps, stop_after):
            partial = checkpoint.with_suffix(".partial")
            torch.save({"head": head.state_dict(), "optimiser": optimiser.state_dict(),
                        "schedule": schedule.state_dict(), "step": step + 1, "config": asdict(config),
                        "digest": config.digest(), "stage1": stage1, "base": str(base)}, partial)  # fmt: skip
            partial.replace(checkpoint)  # a kill mid-write leaves the previous checkpoint intact
            plot_losses(history, run_dir / "losses.png", ("total", "l1", "bone", "gradient", "dice"))
            log(f"step {step + 1}/{config.steps} loss {record['total']:.4f} ({record['seconds']:.0f} s)")
        if step + 1 == stop_after:
            break
    return {"step": min(config.steps, stop_after or config.steps), "digest": config.digest(),
            "checkpoint": str(checkpoint)}  # fmt: skip


def head_of(config: RefineConfig, coarse_net: PSCTNet) -> FineHead:
    stage1_channels = coarse_net.refiner.head.in_channels  # the features before stage 1's HU head
    return FineHead(config.channels, config.view_channels, config.layers, config.coarse_features, stage1_channels,
                    config.body)  # fmt: skip


@torch.no_grad()
def stage1_outputs(coarse_net: PSCTNet, pair: TrainingPair,
                   with_features: bool) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """The frozen stage 1 on one pair: its HU / HU_SCALE upsampled to the serving grid, and its last
    features on its own grid when the head reads them (the same operations as RefinedNet's forward)."""
    upsampled, features = upsampled_with_features(coarse_net, *inputs_of(pair))
    return upsampled, (features if with_features else None)


def refined_net(checkpoint: Path, base: Path | None = None) -> tuple[RefinedNet, dict]:
    """The served network of a stage-2 checkpoint (stage 1 from `base`, default the path it trained on)."""
    state = torch.load(checkpoint, weights_only=False)
    coarse_net, stage1 = load_coarse(base or Path(state["base"]))
    if stage1["sha256"] != state["stage1"]["sha256"]:  # the same weights, wherever the file now lies
        raise ValueError(f"{checkpoint} was trained on another stage 1 than {base}")
    config = RefineConfig(**{**state["config"], "losses": FineLosses(**state["config"]["losses"])})
    head = head_of(config, coarse_net)
    head.load_state_dict(state["head"])
    return RefinedNet(coarse_net, head).eval(), state


def untrained_like(sidecar: dict) -> torch.nn.Module:
    """The architecture an exported PSCT-Net sidecar describes, with fresh weights (benchmarks)."""
    coarse = build(TrainConfig.from_dict(sidecar["training"]["config"]))
    fine = sidecar.get("architecture", {}).get("fine_head")
    return (RefinedNet(coarse, FineHead(**fine)) if fine else coarse).eval()
