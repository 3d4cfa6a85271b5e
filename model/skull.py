"""Procedural pediatric skull phantom: seeded, deterministic HU volume and label map, age 0-18 y.

The vault is a direction-dependent radius around its centre (an ellipsoid from the growth norms of
model/growth.py, reshaped per condition); bone layers, sutures and fontanelle are depths and bands
measured from that surface. Face, orbits, sinuses, mandible and cervical spine are simple solids
placed relative to the vault. Pure numpy: parameters and a grid in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np

from model import growth

CONDITIONS = ("normal", "sagittal", "metopic", "coronal-left", "coronal-right", "lambdoid", "positional")


class Label(IntEnum):
    AIR = 0
    SCALP = 1  # and every other soft tissue outside the skull
    OUTER_TABLE = 2
    DIPLOE = 3
    INNER_TABLE = 4
    SUTURE = 5  # open sutures and fontanelle: fibrous tissue in the bone
    BRAIN = 6
    CSF = 7  # subarachnoid space and ventricles
    ORBIT = 8
    FACIAL_BONE = 9  # skull base, facial skeleton
    MANDIBLE = 10
    SINUS = 11
    SPINE = 12
    PETROUS = 13  # petrous temporal bone, the densest of the skull
    TOOTH = 14  # erupted teeth and unerupted crowns


SOFT_HU = {
    Label.AIR: -1000.0, Label.SCALP: 40.0, Label.SUTURE: 60.0, Label.BRAIN: 32.0, Label.CSF: 8.0,
    Label.ORBIT: -80.0, Label.SINUS: -900.0,
}  # fmt: skip
SCALP_MM = 4.0  # scalp thickness over the vault (typical pediatric CT)
CSF_MM = 1.5  # subarachnoid space between inner table and brain
BASE_Z_FRACTION = -0.3  # skull-base plane, as a fraction of the vault's vertical semi-axis
# Cranial fossae relative to that plane (fractions of the vault's semi-axes): the anterior fossa
# ends ~0.3 of the half-length in front of the centre and sits higher, the posterior fossa starts
# behind the petrous ridges and sits lower.
ANTERIOR_FOSSA_END, POSTERIOR_FOSSA_START, FOSSA_STEP = 0.3, 0.12, 0.06
ANTERIOR_FOSSA_RISE, POSTERIOR_FOSSA_DROP = 0.2, 0.25
FLOOR_DOME = 0.05  # side-to-side curvature of the fossae, a fraction of the vertical semi-axis
# Pointed forehead of trigonocephaly: interfrontal angle ~118 deg vs ~145 deg normal (issue 4).
METOPIC_KEEL = 0.22
PLAGIOCEPHALY_FLATTENING = 0.12  # radial flattening of the affected quadrant
SIDE_SOFTNESS = 0.05  # width of the midline transition of one-sided shapes, in direction units


@dataclass(frozen=True)
class SkullParameters:
    age_y: float
    sex: str
    condition: str
    length_mm: float  # glabella-opisthocranion over the scalp
    breadth_mm: float
    height_mm: float  # vertex to the skull-base plane
    thickness_mm: float
    suture_mm: float
    fontanelle_mm: float
    fused: frozenset[str]
    side: str  # "L" or "R": the affected side of unilateral conditions
    rotation_deg: tuple[float, float, float]
    shift_mm: tuple[float, float, float]

    @property
    def cephalic_index(self) -> float:
        return self.breadth_mm / self.length_mm


def parameters(age_y: float, condition: str = "normal", seed: int = 0, pose: bool = True) -> SkullParameters:
    """Growth norms for `age_y`, condition changes, and seeded individual variation."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    if not 0.0 <= age_y <= 18.0:
        raise ValueError(f"age_y must be between 0 and 18, got {age_y}")
    # Every draw happens, in this order, whatever the condition: the same seed is the same child.
    rng = np.random.default_rng(seed)
    sex = "M" if rng.random() < 0.5 else "F"
    hc_mm = growth.head_circumference_mm(age_y, sex) + rng.normal(0.0, growth.HC_SD_MM)
    index = float(np.clip(rng.normal(growth.CEPHALIC_INDEX_MEAN, growth.CEPHALIC_INDEX_SD), 0.76, 0.87))
    scaphocephalic_index = float(rng.uniform(*growth.SCAPHOCEPHALY_INDEX))
    side = "L" if rng.random() < 0.5 else "R"
    height_factor, thickness_factor = rng.uniform(0.95, 1.05), rng.uniform(0.9, 1.1)
    rotation_deg, shift_mm = rng.uniform(-3.0, 3.0, 3), rng.uniform(-5.0, 5.0, 3)
    if condition == "sagittal":
        index = scaphocephalic_index
    half_length, half_breadth = growth.ellipse_axes_for_perimeter(hc_mm, index)
    fused = {"metopic"} if age_y >= growth.METOPIC_CLOSURE_Y else set()
    fused |= {"sagittal": {"sagittal"}, "metopic": {"metopic"}, "coronal-left": {"coronal-L"},
              "coronal-right": {"coronal-R"}, "lambdoid": {f"lambdoid-{side}"}}.get(condition, set())  # fmt: skip
    if condition.startswith("coronal-"):
        side = "L" if condition.endswith("left") else "R"
    return SkullParameters(
        age_y=age_y, sex=sex, condition=condition,
        length_mm=2 * half_length, breadth_mm=2 * half_breadth,
        height_mm=2 * half_length * growth.HEIGHT_OVER_LENGTH * height_factor,
        thickness_mm=growth.calvarial_thickness_mm(age_y) * thickness_factor,
        suture_mm=growth.suture_width_mm(age_y), fontanelle_mm=growth.fontanelle_mm(age_y),
        fused=frozenset(fused), side=side,
        rotation_deg=tuple(rotation_deg) if pose else (0.0, 0.0, 0.0),  # type: ignore[arg-type]
        shift_mm=tuple(shift_mm) if pose else (0.0, 0.0, 0.0),  # type: ignore[arg-type]
    )  # fmt: skip


@dataclass(frozen=True)
class Phantom:
    hu: np.ndarray  # (z, y, x) float32
    labels: np.ndarray  # (z, y, x) uint8, values of Label
    voxel_mm: float
    params: SkullParameters


def rotation_matrix(angles_deg: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _shape_factor(p: SkullParameters, u: np.ndarray) -> np.ndarray:
    """Radial multiplier of the vault surface per unit direction u (..., 3): the conditions' shapes."""
    ux, uy, uz = u[..., 0], u[..., 1], u[..., 2]
    factor = np.ones(ux.shape)
    anterior, posterior = np.clip(-uy, 0, None), np.clip(uy, 0, None)
    # Smooth 0 -> 1 across the midline towards the affected side (LPS: +x is the patient's left), so
    # a one-sided change has no step at the midline.
    affected = 1.0 / (1.0 + np.exp(-(1.0 if p.side == "L" else -1.0) * ux / SIDE_SOFTNESS))
    if p.condition == "metopic":
        # Trigonocephaly: the forehead narrows towards a midline keel.
        factor *= 1.0 - METOPIC_KEEL * anterior**2 * np.abs(ux) * 2.0
    elif p.condition.startswith("coronal-"):
        # Anterior plagiocephaly: ipsilateral forehead flattened, contralateral bossing.
        factor *= 1.0 - PLAGIOCEPHALY_FLATTENING * anterior**2 * affected + 0.04 * anterior**2 * (1.0 - affected)
    elif p.condition == "lambdoid":
        below_lambda = 1.0 / (1.0 + np.exp((uz - 0.3) / 0.1))
        factor *= 1.0 - PLAGIOCEPHALY_FLATTENING * posterior**2 * below_lambda * affected
    elif p.condition == "positional":
        # Deformational plagiocephaly: parallelogram, one occiput flat and the same side's forehead
        # pushed forward; sutures open.
        factor *= 1.0 + affected * (0.05 * anterior**2 - PLAGIOCEPHALY_FLATTENING * posterior**2)
    return factor


def _suture_bands(p: SkullParameters, u: np.ndarray, radius_mm: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of each suture's band on the vault, in direction space."""
    ux, uy, uz = u[..., 0], u[..., 1], u[..., 2]
    half = p.suture_mm / 2.0 / np.maximum(radius_mm, 1.0)  # half-width as a direction difference
    coronal_y = -0.3  # the coronal suture crosses the vertex ~1/3 of the way from the front
    lambdoid = uy - 0.45 * uz - 0.6  # zero on the lambdoid line, running down and back from lambda
    above_base = uz > -0.15
    bands = {
        "coronal-L": (np.abs(uy - coronal_y) < half) & above_base & (ux > 0),
        "coronal-R": (np.abs(uy - coronal_y) < half) & above_base & (ux <= 0),
        "sagittal": (np.abs(ux) < half) & (uy > coronal_y) & (lambdoid < 0) & (uz > 0),
        "metopic": (np.abs(ux) < half) & (uy < coronal_y) & (uz > -0.1),
        "lambdoid-L": (np.abs(lambdoid) < half) & (uz > -0.5) & (ux > 0),
        "lambdoid-R": (np.abs(lambdoid) < half) & (uz > -0.5) & (ux <= 0),
    }
    if p.fontanelle_mm > 0:
        bregma = np.array([0.0, coronal_y, np.sqrt(1 - coronal_y**2)])
        bands["fontanelle"] = np.linalg.norm(u - bregma, axis=-1) < p.fontanelle_mm / 2.0 / np.maximum(radius_mm, 1.0)
    return {name: band for name, band in bands.items() if name not in p.fused}


@dataclass(frozen=True)
class _Vault:
    """Where each voxel sits relative to the vault: what every layer and band is measured from."""

    frame: _Frame
    u: np.ndarray  # (d, h, w, 3) unit direction from the vault centre
    outer: np.ndarray  # outer-table radius along that direction, mm
    depth: np.ndarray  # mm below the outer table; negative outside the skull
    semi: np.ndarray
    floor: np.ndarray  # height of the cranial floor under each voxel, head frame


def _vault(p: SkullParameters, shape_zyx: tuple[int, int, int], voxel_mm: float) -> _Vault:
    d, h, w = shape_zyx
    # float32 throughout: millimetre coordinates need no more, and it halves time and memory.
    axes = [((np.arange(n) - (n - 1) / 2.0) * voxel_mm).astype(np.float32) for n in (w, h, d)]
    x, y, z = np.meshgrid(axes[0], axes[1], axes[2], indexing="xy")  # (h, w, d)
    world = np.stack([x, y, z], axis=-1).transpose(2, 0, 1, 3)  # (d, h, w, 3)
    # Head frame: the vault centre sits a little above the isocentre, so the face fits the field.
    centre = (np.array(p.shift_mm) + np.array([0.0, 0.0, 0.2 * p.height_mm])).astype(np.float32)
    rotation = rotation_matrix(p.rotation_deg)
    local = (world - centre) @ rotation.astype(np.float32)
    frame = _Frame(local, rotation, centre.astype(float), voxel_mm)
    r = np.linalg.norm(local, axis=-1)
    u = local / np.maximum(r, 1e-6)[..., None]
    semi = np.array([p.breadth_mm / 2.0, p.length_mm / 2.0, p.height_mm / (1.0 - BASE_Z_FRACTION)]) - SCALP_MM
    outer = _shape_factor(p, u) / np.sqrt(np.sum((u / semi) ** 2, axis=-1))
    floor = _cranial_floor(local, semi, BASE_Z_FRACTION * semi[2])
    return _Vault(frame, u, outer, outer - r, semi, floor)


def _vault_bone(p: SkullParameters, v: _Vault) -> np.ndarray:
    return (v.depth >= 0) & (v.depth < p.thickness_mm) & (v.frame.local[..., 2] >= v.floor - p.thickness_mm)


def suture_regions(p: SkullParameters, shape_zyx: tuple[int, int, int], voxel_mm: float) -> dict[str, np.ndarray]:
    """Where each major suture runs through the vault, open or fused (the anatomy's location, for
    the suture-patency metric): boolean masks on the grid of `phantom`."""
    v = _vault(p, shape_zyx, voxel_mm)
    bands = _suture_bands(replace(p, fused=frozenset()), v.u, v.outer)
    # The fontanelle stays open over a fused suture: its area says nothing about the suture.
    keep = _vault_bone(p, v) & ~bands.pop("fontanelle", False)
    return {name: band & keep for name, band in bands.items()}


def phantom(p: SkullParameters, shape_zyx: tuple[int, int, int], voxel_mm: float) -> Phantom:
    """Rasterise the head described by `p` on a grid centred on the isocentre (LPS, (z, y, x))."""
    v = _vault(p, shape_zyx, voxel_mm)
    frame, u, outer, depth, semi, floor = v.frame, v.u, v.outer, v.depth, v.semi, v.floor
    local = frame.local
    z_base = BASE_Z_FRACTION * semi[2]
    labels = np.full(depth.shape, Label.AIR, dtype=np.uint8)

    labels[(depth > -SCALP_MM) & (local[..., 2] >= z_base - 0.5 * semi[2])] = Label.SCALP
    t = p.thickness_mm
    diploe = growth.at(p.age_y, growth.DIPLOE_FRACTION_AGE_Y, growth.DIPLOE_FRACTION) * t
    outer_t = (t - diploe) / 2.0
    vault = _vault_bone(p, v)
    labels[vault & (depth < outer_t)] = Label.OUTER_TABLE
    labels[vault & (depth >= outer_t) & (depth < outer_t + diploe)] = Label.DIPLOE
    labels[vault & (depth >= outer_t + diploe)] = Label.INNER_TABLE
    for band in _suture_bands(p, u, outer).values():
        labels[vault & band] = Label.SUTURE
    inside = (depth >= t) & (local[..., 2] >= floor)
    labels[inside] = Label.CSF
    labels[inside & (depth >= t + CSF_MM)] = Label.BRAIN
    _ventricles(labels, frame, semi)
    base = (depth >= 0) & (local[..., 2] < floor) & (local[..., 2] >= floor - max(t, 2.0))
    labels[base] = Label.FACIAL_BONE
    _petrous_ridges(labels, frame, semi, z_base)
    _skull_base_and_face(labels, frame, semi, z_base, p)
    hu = _hounsfield(labels, p.age_y)
    return Phantom(hu=hu, labels=labels, voxel_mm=voxel_mm, params=p)


@dataclass(frozen=True)
class _Frame:
    """The head frame on the grid: local = R^T (world - origin), world voxel centres on the grid."""

    local: np.ndarray  # (d, h, w, 3) head-frame coordinates of every voxel, mm
    rotation: np.ndarray
    origin_mm: np.ndarray  # head-frame origin in world coordinates
    voxel_mm: float

    def box(self, centre: np.ndarray, half_mm: np.ndarray) -> tuple[slice, slice, slice]:
        """Grid slices holding the head-frame box `centre` +- `half_mm` (axis-aligned in the head frame)."""
        shape = np.array(self.local.shape[:3])  # (z, y, x)
        world_centre = self.rotation @ np.asarray(centre, dtype=float) + self.origin_mm  # (x, y, z)
        half = np.abs(self.rotation) @ np.asarray(half_mm, dtype=float) + self.voxel_mm
        index_centre = world_centre[::-1] / self.voxel_mm + (shape - 1) / 2.0
        low = np.clip(np.floor(index_centre - half[::-1] / self.voxel_mm), 0, shape).astype(int)
        high = np.clip(np.ceil(index_centre + half[::-1] / self.voxel_mm) + 1, 0, shape).astype(int)
        return tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))  # type: ignore[return-value]

    def ellipsoid(self, centre: np.ndarray, semi: np.ndarray) -> np.ndarray:
        """Mask of an axis-aligned (head frame) ellipsoid, evaluated only in its bounding box."""
        mask = np.zeros(self.local.shape[:3], dtype=bool)
        box = self.box(centre, semi)
        mask[box] = np.sum(((self.local[box] - centre) / semi) ** 2, axis=-1) <= 1.0
        return mask


def _ventricles(labels: np.ndarray, frame: _Frame, semi: np.ndarray) -> None:
    for sign in (-1.0, 1.0):
        mask = frame.ellipsoid(semi * [0.12 * sign, 0.0, 0.15], semi * [0.07, 0.35, 0.15])
        labels[mask & (labels == Label.BRAIN)] = Label.CSF


def _cranial_floor(local: np.ndarray, semi: np.ndarray, z_base: float) -> np.ndarray:
    """Height of the cranial floor under each voxel: anterior fossa (orbital roofs) highest, middle
    fossa at the base plane, posterior fossa lowest, with smooth steps between them."""
    bx, by, bz = semi
    y = local[..., 1]
    anterior = 1.0 / (1.0 + np.exp((y + ANTERIOR_FOSSA_END * by) / (FOSSA_STEP * by)))
    posterior = 1.0 / (1.0 + np.exp(-(y - POSTERIOR_FOSSA_START * by) / (FOSSA_STEP * by)))
    # Bowls, not shelves: the orbital roofs dome up beside the lower cribriform plate, the middle and
    # posterior fossae deepen to the sides (so the floor projects as curves, not one hard line).
    lateral = np.minimum((local[..., 0] / bx) ** 2, 1.0)
    bowl = FLOOR_DOME * bz * (np.minimum(4.0 * lateral, 1.0) * anterior - 2.0 * lateral * (1.0 - anterior))
    return z_base + ANTERIOR_FOSSA_RISE * bz * anterior - POSTERIOR_FOSSA_DROP * bz * posterior + bowl


def _petrous_ridges(labels: np.ndarray, frame: _Frame, semi: np.ndarray, z_base: float) -> None:
    """The dense petrous temporal bones: ridges running forward and inward from each side at ~45 deg
    to the midline, between the middle and posterior fossae (the bright oblique lines of a PA skull)."""
    bx, by, bz = semi
    for sign in (-1.0, 1.0):
        centre = np.array([0.42 * bx * sign, 0.08 * by, z_base + 0.02 * bz])
        box = frame.box(centre, np.array([0.32 * bx, 0.32 * bx, 0.08 * bz]))  # holds the ridge at any angle
        offset = frame.local[box] - centre
        angle = np.deg2rad(45.0) * sign
        along = offset[..., 0] * np.cos(angle) - offset[..., 1] * np.sin(angle)
        across = offset[..., 0] * np.sin(angle) + offset[..., 1] * np.cos(angle)
        ridge = (along / (0.32 * bx)) ** 2 + (across / (0.07 * bx)) ** 2 + (offset[..., 2] / (0.08 * bz)) ** 2 <= 1
        labels[box][ridge] = Label.PETROUS


def _skull_base_and_face(labels: np.ndarray, frame: _Frame, semi: np.ndarray, z_base: float,
                         p: SkullParameters) -> None:  # fmt: skip
    """Face and neck under the anterior skull base, placed on the vault's axes (x left, y back, z up).

    Landmarks are fractions of the vault's semi-axes, with the face's height scaled by `f`: the
    face is small against the cranium at birth (about 1:8 in volume) and grows to about 1:2.5.
    """
    bx, by, bz = semi
    t = max(p.thickness_mm, 2.0)
    f = 0.75 + 0.25 * np.sqrt(p.age_y / 18.0)
    wall = 1.5 + 0.3 * t  # thin facial bone: orbital walls, maxillary sinus walls
    # Soft tissue of the face, down to the chin.
    face_c = np.array([0.0, -0.6 * by, z_base - 0.5 * bz * f])
    face = frame.ellipsoid(face_c, np.array([0.7 * bx, 0.42 * by, 0.62 * bz * f])) & (labels == Label.AIR)
    labels[face] = Label.SCALP
    # Orbits: fat-filled, just under the orbital roof; bony walls around them, open at the front,
    # so each shows a bony rim (the orbital outlines of a PA skull film).
    orbit_r = 0.18 * by * f
    orbit_z = z_base + ANTERIOR_FOSSA_RISE * bz - 0.2 * by * f
    orbit_semi = orbit_r * np.array([1.0, 1.15, 0.9])
    for sign in (-1.0, 1.0):
        centre = np.array([0.3 * bx * sign, -0.78 * by, orbit_z])
        box = frame.box(centre, orbit_semi + wall)
        q = (frame.local[box] - centre) / orbit_semi
        inner = np.sum(q**2, axis=-1) <= 1.0
        outer = np.sum(((frame.local[box] - centre) / (orbit_semi + wall)) ** 2, axis=-1) <= 1.0
        behind_rim = q[..., 1] > -0.7  # the front of the cone is the orbital opening
        region = labels[box]
        region[outer & ~inner & behind_rim & ~np.isin(region, (Label.BRAIN, Label.CSF))] = Label.FACIAL_BONE
        region[inner] = Label.ORBIT
    # Maxilla: a bony box of sinus walls under the orbits down to the alveolar ridge, with the
    # pear-shaped nasal aperture in front and the nasal cavity and septum in the midline.
    floor_z = orbit_z - orbit_semi[2] - wall
    crest_z = z_base - 0.78 * bz * f  # upper alveolar crest; the occlusal plane is just below
    maxilla_c = np.array([0.0, -0.72 * by, 0.5 * (floor_z + crest_z)])
    maxilla_semi = np.array([0.42 * bx, 0.24 * by, 0.5 * (floor_z - crest_z) + wall])
    box = frame.box(maxilla_c, maxilla_semi)
    local = frame.local[box]
    region = labels[box]
    inside = np.sum(((local - maxilla_c) / maxilla_semi) ** 2, axis=-1) <= 1.0
    core = np.sum(((local - maxilla_c) / (maxilla_semi - wall)) ** 2, axis=-1) <= 1.0
    free = ~np.isin(region, (Label.ORBIT, Label.BRAIN, Label.CSF))
    region[inside & free] = Label.FACIAL_BONE
    region[core & free] = Label.SCALP  # filled below by sinuses and nasal cavity
    x, y, z = local[..., 0], local[..., 1], local[..., 2]
    height = np.clip((z - crest_z) / max(floor_z - crest_z, 1.0), 0.0, 1.0)
    aperture_half = 0.11 * bx * (0.6 + 0.8 * height * (1.0 - height))  # widest in the middle: a pear
    nasal = (np.abs(x) < aperture_half) & (z > crest_z + 0.15 * (floor_z - crest_z)) & (z < orbit_z)
    region[nasal & inside & (y < maxilla_c[1] + 0.6 * maxilla_semi[1])] = Label.SINUS  # nasal cavity, air
    region[nasal & inside & (np.abs(x) < 0.9) & (y > maxilla_c[1] - 0.6 * maxilla_semi[1])] = Label.FACIAL_BONE
    radius = growth.at(p.age_y, growth.MAXILLARY_AGE_Y, growth.MAXILLARY_RADIUS_MM)
    for sign in (-1.0, 1.0):
        centre = np.array([0.24 * bx * sign, maxilla_c[1], maxilla_c[2] + 0.1 * maxilla_semi[2]])
        sinus = frame.ellipsoid(centre, np.minimum(np.full(3, radius), maxilla_semi * [0.45, 0.8, 0.8] - wall))
        labels[sinus & (labels == Label.SCALP)] = Label.SINUS
    # Zygoma: the cheek bone at the lower outer orbital rim and its arch running back to the temple.
    for sign in (-1.0, 1.0):
        body = np.array([0.5 * bx * sign, -0.7 * by, floor_z])
        labels[frame.ellipsoid(body, np.array([0.12 * bx, 0.1 * by, 0.1 * bz * f])) & (labels != Label.ORBIT)] = (
            Label.FACIAL_BONE
        )
        arch_c = np.array([0.64 * bx * sign, -0.38 * by, floor_z - 0.02 * bz])
        arch = frame.ellipsoid(arch_c, np.array([0.06 * bx, 0.34 * by, 0.035 * bz * f + 1.5]))
        labels[arch & ~np.isin(labels, (Label.BRAIN, Label.CSF))] = Label.FACIAL_BONE
    # Sinuses pneumatise bone, never the cranial cavity.
    outside_brain = ~np.isin(labels, (Label.BRAIN, Label.CSF))
    frontal = growth.at(p.age_y, growth.FRONTAL_AGE_Y, growth.FRONTAL_RADIUS_MM)
    if frontal > 0:
        centre = np.array([0.0, -0.88 * by, z_base + 0.12 * bz])
        labels[frame.ellipsoid(centre, np.array([1.5, 0.8, 1.0]) * frontal) & outside_brain] = Label.SINUS
    sphenoid = growth.at(p.age_y, growth.SPHENOID_AGE_Y, growth.SPHENOID_RADIUS_MM)
    if sphenoid > 0:
        sinus = frame.ellipsoid(np.array([0.0, -0.25 * by, z_base - 0.08 * bz]), np.full(3, sphenoid))
        labels[sinus & outside_brain] = Label.SINUS
    _mandible_and_teeth(labels, frame, semi, z_base, crest_z, f, p)
    # Cervical spine: a column of vertebral bodies behind the pharynx, below the skull base.
    local = frame.local
    column = np.sqrt(local[..., 0] ** 2 + (local[..., 1] - 0.1 * by) ** 2) < 0.14 * bx
    below = local[..., 2] < z_base - t
    bodies = np.mod(local[..., 2] - z_base, 0.22 * bz) > 0.04 * bz  # discs between bodies
    labels[column & below] = Label.SCALP
    labels[column & below & bodies] = Label.SPINE


def _mandible_and_teeth(labels: np.ndarray, frame: _Frame, semi: np.ndarray, z_base: float, crest_z: float,
                        f: float, p: SkullParameters) -> None:  # fmt: skip
    """A horseshoe mandible (body, angles, rami up to the condyles in front of the ears) and the
    dental arches: erupted teeth on the alveolar crests, unerupted crowns (buds) deeper in the jaws."""
    bx, by, bz = semi
    local = frame.local
    arch_y = -0.42 * by  # centre of the dental arch ellipse; teeth lie on its anterior half
    arch = np.array([0.34 * bx, 0.42 * by])
    body_height = 0.16 * bz * f
    lower_crest = crest_z - 2.0  # the occlusal plane between the arches
    bottom = lower_crest - body_height
    ring = np.sqrt((local[..., 0] / (arch[0] * 1.1)) ** 2 + ((local[..., 1] - arch_y) / (arch[1] * 1.1)) ** 2)
    bar = 0.12 + 0.04 * f  # body thickness as a fraction of the arch radius
    body = (np.abs(ring - 1.0) < bar) & (local[..., 2] < lower_crest) & (local[..., 2] > bottom)
    labels[body & (local[..., 1] <= arch_y + 0.1 * by)] = Label.MANDIBLE
    for sign in (-1.0, 1.0):  # rami: from the angle (gonion) up and back to the condyle
        gonion = np.array([1.1 * arch[0] * sign, arch_y + 0.1 * by, bottom + 0.3 * body_height])
        condyle = np.array([0.62 * bx * sign, -0.02 * by, z_base - 0.06 * bz])
        _segment(labels, frame, gonion, condyle, np.array([0.05 * bx, 0.09 * by]), Label.MANDIBLE)
    # Teeth: per quadrant, erupted ones along the crest, buds 0.4 of the body height inside the jaw.
    deciduous = growth.at(p.age_y, growth.DECIDUOUS_AGE_Y, growth.DECIDUOUS_ERUPTED)
    permanent = growth.at(p.age_y, growth.PERMANENT_AGE_Y, growth.PERMANENT_ERUPTED)
    calcified = growth.at(p.age_y, growth.PERMANENT_CALCIFIED_AGE_Y, growth.PERMANENT_CALCIFIED)
    erupted, buds = int(round(deciduous + permanent)), int(round(max(calcified - permanent, 0.0)))
    size = 2.2 + 1.6 * f  # crown semi-axis, mm
    for crest, down in ((crest_z, 1.0), (lower_crest, -1.0)):  # upper teeth hang down, lower stand up
        for count, depth, scale in ((erupted, 0.0, 1.0), (buds, 0.4 * body_height, 0.8)):
            for k in range(min(count, 8)):
                angle = np.deg2rad(8.0 + 80.0 * k / max(count - 1, 1) if count > 1 else 8.0)
                for sign in (-1.0, 1.0):
                    centre = np.array([sign * arch[0] * np.sin(angle), arch_y - arch[1] * np.cos(angle),
                                       crest - down * (size + depth)])  # fmt: skip
                    tooth = frame.ellipsoid(centre, scale * np.array([size * 0.8, size * 0.8, size * 1.3]))
                    labels[tooth & (labels != Label.AIR)] = Label.TOOTH


def _segment(labels: np.ndarray, frame: _Frame, start: np.ndarray, stop: np.ndarray, half_mm: np.ndarray,
             label: Label) -> None:  # fmt: skip
    """A bar from `start` to `stop` with an elliptical cross-section (half widths in x and y)."""
    box = frame.box((start + stop) / 2.0, np.abs(stop - start) / 2.0 + half_mm.max())
    q = frame.local[box] - start
    axis = stop - start
    s = np.clip(q @ axis / (axis @ axis), 0.0, 1.0)
    off = q - s[..., None] * axis
    inside = (off[..., 0] / half_mm[0]) ** 2 + (off[..., 1] / half_mm[1]) ** 2 + (off[..., 2] / half_mm[1]) ** 2 <= 1
    labels[box][inside] = label


def _hounsfield(labels: np.ndarray, age_y: float) -> np.ndarray:
    table = np.zeros(max(Label) + 1, dtype=np.float32)
    for label, hu in SOFT_HU.items():
        table[label] = hu
    cortical = growth.at(age_y, growth.BONE_AGE_Y, growth.TABLE_HU)
    table[Label.OUTER_TABLE] = table[Label.INNER_TABLE] = cortical
    table[Label.DIPLOE] = growth.at(age_y, growth.BONE_AGE_Y, growth.DIPLOE_HU)
    table[Label.FACIAL_BONE] = 0.8 * cortical
    table[Label.MANDIBLE] = cortical  # a thick cortex round a thin cancellous core
    table[Label.SPINE] = 0.45 * cortical  # cancellous vertebral bodies
    table[Label.PETROUS] = 1.1 * cortical
    table[Label.TOOTH] = growth.TOOTH_HU
    return table[labels]
