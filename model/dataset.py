"""Training pairs from the data engine: generated on the fly, deterministic by (base seed, index).

Each pair is a procedural head (random age 0-18 y and condition), its radiographs simulated with
the full physics and vendor look on ~1 mm binned pixels (RTK projector), then read back through
the same `view_input` the service uses: the network trains on exactly what it will be served.
Ground truth is the head's HU, average-pooled from the serving grid by `truth_pool`.
With `ct_sources` the heads are real CTs instead (a hospital's own folder, read through the
real-CT path of model/ct_volume.py); each CT is seen under many randomised rooms.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.ct_volume import CtError, prepare_ct
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
    return pair_of_head(head.hu, spec, truth_pool)


def pair_of_head(head_hu: np.ndarray, spec: PairSpec, truth_pool: int) -> TrainingPair:
    """The radiograph pair of a head on the serving grid (rooms from `spec.seed`) and its pooled truth."""
    omit = frozenset(OPTIONAL_GEOMETRY) if spec.omit_geometry else frozenset()
    pa, lateral = simulate_radiographs(head_hu, VOXEL_MM, study_for_seed(spec.seed), spec.seed, omit=omit, bulk=True)
    pa_image, pa_matrix, _ = view_input(pa.dataset, "pa")
    lat_image, lat_matrix, _ = view_input(lateral.dataset, "lateral")
    hu = torch.from_numpy(head_hu.astype(np.float32))[None, None]
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


def ct_sources(folder: Path) -> tuple[Path, ...]:
    """The CTs of a training folder: every .nii/.nii.gz file and every sub-folder holding files (one
    series each); a folder of slices alone is one CT."""
    if not folder.is_dir():
        raise CtError(f"--ct-dir {folder} is not a folder")
    found = sorted(
        p for p in folder.iterdir()
        if p.name.endswith((".nii", ".nii.gz")) or (p.is_dir() and any(q.is_file() for q in p.rglob("*")))
    )  # fmt: skip
    if not found and any(p.is_file() for p in folder.iterdir()):
        found = [folder]
    if not found:
        raise CtError(f"--ct-dir {folder} holds no CT (sub-folders of DICOM slices or .nii/.nii.gz files)")
    return tuple(found)


@lru_cache(maxsize=16)  # ~16 MB each: the CTs of a small folder stay prepared between epochs
def _prepared_ct(path: Path) -> np.ndarray:
    return prepare_ct(path, OUTPUT_SHAPE, VOXEL_MM)


class PairStream(torch.utils.data.Dataset):
    """Pairs 0..count-1 of stream `base_seed`: read from `cache` when written there, else simulated
    (and written, when `cache` is given), so a training run and a `psct dataset` share their work.
    With `ct_sources`, pair i is CT i mod len(ct_sources) under the room of spec i."""

    def __init__(
        self,
        count: int,
        base_seed: int = 0,
        truth_pool: int = 2,
        cache: Path | None = None,
        omit_probability: float = 0.0,
        ct_sources: tuple[Path, ...] = (),
    ) -> None:
        self.count, self.base_seed, self.truth_pool, self.cache = count, base_seed, truth_pool, cache
        self.omit_probability, self.ct_sources = omit_probability, ct_sources
        # Cached pairs of a CT folder never mix with phantom pairs or with another folder's.
        listing = "\n".join(str(p.resolve()) for p in ct_sources)
        self.prefix = f"ct{hashlib.sha256(listing.encode()).hexdigest()[:8]}-" if ct_sources else ""

    def __len__(self) -> int:
        return self.count

    def path(self, index: int) -> Path | None:
        if self.cache is None:
            return None
        name = f"seed{self.base_seed}-pool{self.truth_pool}-omit{self.omit_probability:g}-{index:06d}.npz"
        return self.cache / f"{self.prefix}{name}"

    def __getitem__(self, index: int) -> TrainingPair:
        path = self.path(index)
        if path is not None and path.is_file():
            return load_pair(path)
        spec = pair_spec(index, self.base_seed, self.omit_probability)
        if self.ct_sources:
            source = self.ct_sources[index % len(self.ct_sources)]
            spec = replace(spec, age_y=math.nan, condition=f"real CT {source.name}")  # age and findings unknown
            pair = pair_of_head(_prepared_ct(source), spec, self.truth_pool)
        else:
            pair = make_pair(spec, self.truth_pool)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.npz")
            save_pair(pair, partial)
            partial.replace(path)  # a killed run never leaves a half-written pair behind
        return pair
