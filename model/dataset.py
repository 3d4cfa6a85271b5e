"""Training pairs from the data engine: generated on the fly, deterministic by (base seed, index).

Each pair is a procedural head (random age 0-18 y and condition), its radiographs simulated with
the full physics and vendor look on ~1 mm binned pixels (RTK projector), then read back through
the same `view_input` the service uses: the network trains on exactly what it will be served.
Ground truth is the head's HU, average-pooled from the serving grid by `truth_pool`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.dx_writer import OPTIONAL_GEOMETRY, study_for_seed
from model.grid import OUTPUT_SHAPE, VOXEL_MM
from model.preprocess import view_input
from model.simulator import simulate_radiographs
from model.skull import CONDITIONS, parameters, phantom

# Half the heads normal, the other half spread over the six conditions craniofacial teams treat.
NORMAL_SHARE = 0.5
AGE_RANGE_Y = (0.0, 18.0)


@dataclass(frozen=True)
class PairSpec:
    age_y: float
    condition: str
    seed: int
    omit_geometry: bool


@dataclass(frozen=True)
class TrainingPair:
    pa: np.ndarray  # (1, 256, 256) float32 in [0, 1], as view_input makes it
    lateral: np.ndarray
    pa_matrix: np.ndarray  # (3, 4) float32, for the 256^2 image
    lateral_matrix: np.ndarray
    hu: np.ndarray  # (D, H, W) float32 whole HU on the serving grid pooled by truth_pool
    spec: PairSpec


def pair_spec(index: int, base_seed: int = 0, omit_probability: float = 0.0) -> PairSpec:
    """Which head and room pair `index` of the stream `base_seed` is; a pure function of both."""
    rng = np.random.default_rng([base_seed, index])
    others = [c for c in CONDITIONS if c != "normal"]
    condition = "normal" if rng.random() < NORMAL_SHARE else str(others[rng.integers(len(others))])
    return PairSpec(
        age_y=round(float(rng.uniform(*AGE_RANGE_Y)), 3),
        condition=condition,
        seed=int(rng.integers(2**31 - 1)),
        omit_geometry=bool(rng.random() < omit_probability),
    )


def make_pair(spec: PairSpec, truth_pool: int = 2) -> TrainingPair:
    head = phantom(parameters(spec.age_y, spec.condition, spec.seed), OUTPUT_SHAPE, VOXEL_MM)
    omit = frozenset(OPTIONAL_GEOMETRY) if spec.omit_geometry else frozenset()
    pa, lateral = simulate_radiographs(head.hu, VOXEL_MM, study_for_seed(spec.seed), spec.seed, omit=omit, bulk=True)
    pa_image, pa_matrix, _ = view_input(pa.dataset, "pa")
    lat_image, lat_matrix, _ = view_input(lateral.dataset, "lateral")
    hu = torch.from_numpy(head.hu.astype(np.float32))[None, None]
    pooled = F.avg_pool3d(hu, truth_pool)[0, 0].numpy() if truth_pool > 1 else hu[0, 0].numpy()
    # Whole HU, as the cache stores them (int16): a cached pair is bit for bit the generated one.
    return TrainingPair(pa_image[0], lat_image[0], pa_matrix, lat_matrix, np.rint(pooled), spec)


def save_pair(pair: TrainingPair, path: Path) -> None:
    """One pair as a compressed .npz (truth as int16 HU)."""
    np.savez_compressed(
        path, pa=pair.pa, lateral=pair.lateral, pa_matrix=pair.pa_matrix, lateral_matrix=pair.lateral_matrix,
        hu=pair.hu.astype(np.int16), spec=json.dumps(asdict(pair.spec)),
    )  # fmt: skip


def load_pair(path: Path) -> TrainingPair:
    with np.load(path) as data:
        spec = PairSpec(**json.loads(str(data["spec"])))
        arrays = {k: data[k] for k in ("pa", "lateral", "pa_matrix", "lateral_matrix")}
        return TrainingPair(**arrays, hu=data["hu"].astype(np.float32), spec=spec)


class PairStream(torch.utils.data.Dataset):
    """Pairs 0..count-1 of stream `base_seed`: read from `cache` when written there, else simulated
    (and written, when `cache` is given), so a training run and a `psct dataset` share their work."""

    def __init__(
        self,
        count: int,
        base_seed: int = 0,
        truth_pool: int = 2,
        cache: Path | None = None,
        omit_probability: float = 0.0,
    ) -> None:
        self.count, self.base_seed, self.truth_pool, self.cache = count, base_seed, truth_pool, cache
        self.omit_probability = omit_probability

    def __len__(self) -> int:
        return self.count

    def path(self, index: int) -> Path | None:
        if self.cache is None:
            return None
        return self.cache / f"seed{self.base_seed}-pool{self.truth_pool}-omit{self.omit_probability:g}-{index:06d}.npz"

    def __getitem__(self, index: int) -> TrainingPair:
        path = self.path(index)
        if path is not None and path.is_file():
            return load_pair(path)
        pair = make_pair(pair_spec(index, self.base_seed, self.omit_probability), self.truth_pool)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.npz")
            save_pair(pair, partial)
            partial.replace(path)  # a killed run never leaves a half-written pair behind
        return pair
