"""Procedural pediatric skull phantom: seeded, deterministic HU volume and label map, age 0-18 y.

The vault is a direction-dependent radius around its centre (an ellipsoid from the growth norms of
model/growth.py, reshaped per condition); bone layers, sutures and fontanelle are depths and bands
measured from that surface. Face, orbits, sinuses, mandible and cervical spine are simple solids
placed relative to the vault. Pure numpy: parameters and a grid in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def phantom(p: SkullParameters, shape_zyx: tuple[int, int, int], voxel_mm: float) -> Phantom:
    """Rasterise the head described by `p` on a grid centred on the isocentre (LPS, (z, y, x))."""
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
    depth = outer - r  # mm below the outer table; negative outside the skull
    z_base = BASE_Z_FRACTION * semi[2]
    floor = _cranial_floor(local, semi, z_base)
    labels = np.full(r.shape, Label.AIR, dtype=np.uint8)

    labels[(depth > -SCALP_MM) & (local[..., 2] >= z_base - 0.5 * semi[2])] = Label.SCALP
    t = p.thickness_mm
    diploe = growth.at(p.age_y, growth.DIPLOE_FRACTION_AGE_Y, growth.DIPLOE_FRACTION) * t
    outer_t = (t - diploe) / 2.0
    vault = (depth >= 0) & (depth < t) & (local[..., 2] >= floor - t)
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
    by, bz = semi[1], semi[2]
    y = local[..., 1]
    anterior = 1.0 / (1.0 + np.exp((y + ANTERIOR_FOSSA_END * by) / (FOSSA_STEP * by)))
    posterior = 1.0 / (1.0 + np.exp(-(y - POSTERIOR_FOSSA_START * by) / (FOSSA_STEP * by)))
    return z_base + ANTERIOR_FOSSA_RISE * bz * anterior - POSTERIOR_FOSSA_DROP * bz * posterior


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
    local = frame.local
    bx, by, bz = semi
    t = max(p.thickness_mm, 2.0)
    # The face is small against the cranium at birth (about 1:8) and grows to about 1:2.5.
    f = 0.75 + 0.25 * np.sqrt(p.age_y / 18.0)
    # Face: soft tissue block with a bony shell (maxilla, zygoma) under the anterior skull base.
    face_c = np.array([0.0, -0.6 * by, z_base - 0.45 * bz * f])
    face_r = np.array([0.7 * bx, 0.42 * by, 0.55 * bz * f])
    face = frame.ellipsoid(face_c, face_r) & (labels == Label.AIR)
    labels[face] = Label.SCALP
    shell = ~frame.ellipsoid(face_c, face_r - 3.0 - t) & face & frame.ellipsoid(face_c, face_r - 3.0)
    labels[shell] = Label.FACIAL_BONE
    # Orbits: fat-filled (spheres here) under the frontal bone, in front of the skull base.
    for sign in (-1.0, 1.0):
        # Just under the orbital roof (the anterior fossa floor).
        centre = np.array([0.3 * bx * sign, -0.78 * by, z_base + ANTERIOR_FOSSA_RISE * bz - 0.2 * by * f])
        labels[frame.ellipsoid(centre, np.full(3, 0.18 * by * f))] = Label.ORBIT
    # Nasal cavity and sinuses (air).
    nasal = (np.abs(local[..., 0]) < 0.08 * bx) & (local[..., 1] < -0.45 * by) & (local[..., 1] > -1.0 * by)
    nasal &= (local[..., 2] < z_base - 0.1 * bz * f) & (local[..., 2] > z_base - 0.8 * bz * f)
    labels[nasal & (labels != Label.AIR)] = Label.SINUS
    radius = growth.at(p.age_y, growth.MAXILLARY_AGE_Y, growth.MAXILLARY_RADIUS_MM)
    for sign in (-1.0, 1.0):
        centre = np.array([0.28 * bx * sign, -0.68 * by, z_base - 0.55 * bz * f])
        labels[frame.ellipsoid(centre, np.full(3, radius))] = Label.SINUS
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
    # Mandible: a U-shaped bony arch under the face, with rami up to the skull base.
    arch_c = np.array([0.0, -0.3 * by, z_base - 1.0 * bz * f])
    ring = np.sqrt((local[..., 0] / (0.62 * bx)) ** 2 + ((local[..., 1] - arch_c[1]) / (0.72 * by)) ** 2)
    in_height = np.abs(local[..., 2] - arch_c[2]) < 0.09 * bz * f
    labels[(ring < 1.0) & (ring > 1.0 - t * 3.0 / (0.62 * bx)) & in_height & (local[..., 1] <= arch_c[1])] = (
        Label.MANDIBLE
    )
    for sign in (-1.0, 1.0):
        ramus = (np.abs(local[..., 0] - 0.61 * bx * sign) < t) & (np.abs(local[..., 1] - arch_c[1]) < 0.1 * by)
        labels[ramus & (local[..., 2] > arch_c[2]) & (local[..., 2] < z_base - 0.1 * bz)] = Label.MANDIBLE
    # Cervical spine: a column of vertebral bodies behind the pharynx, below the skull base.
    column = np.sqrt(local[..., 0] ** 2 + (local[..., 1] - 0.1 * by) ** 2) < 0.14 * bx
    below = local[..., 2] < z_base - t
    bodies = np.mod(local[..., 2] - z_base, 0.22 * bz) > 0.04 * bz  # discs between bodies
    labels[column & below] = Label.SCALP
    labels[column & below & bodies] = Label.SPINE


def _hounsfield(labels: np.ndarray, age_y: float) -> np.ndarray:
    table = np.zeros(max(Label) + 1, dtype=np.float32)
    for label, hu in SOFT_HU.items():
        table[label] = hu
    cortical = growth.at(age_y, growth.BONE_AGE_Y, growth.TABLE_HU)
    table[Label.OUTER_TABLE] = table[Label.INNER_TABLE] = cortical
    table[Label.DIPLOE] = growth.at(age_y, growth.BONE_AGE_Y, growth.DIPLOE_HU)
    table[Label.FACIAL_BONE] = table[Label.MANDIBLE] = 0.8 * cortical
    table[Label.SPINE] = 0.45 * cortical  # cancellous vertebral bodies
    table[Label.PETROUS] = 1.1 * cortical
    return table[labels]
