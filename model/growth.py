"""Pediatric head growth norms, each with its source. Pure functions of age (years).

Tables are interpolated linearly in age. They set the phantom's median head; individual heads vary
around them (model/skull.py).
"""

from __future__ import annotations

import numpy as np

# Head circumference (occipito-frontal), median, mm. 0-5 y: WHO Child Growth Standards, head
# circumference-for-age, boys (34.5 cm at birth, 46.1 cm at 12 months, 50.7 cm at 60 months) and
# girls (33.9, 45.0, 49.9 cm). 6-18 y: Nellhaus G., Pediatrics 1968;41:106-114, composite curves
# (boys ~55.5 cm, girls ~54.5 cm at 18 y).
HC_AGE_Y = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0])
HC_BOYS_MM = np.array([345, 405, 433, 461, 483, 495, 503, 507, 512, 520, 527, 533, 542, 550, 555], dtype=float)
HC_GIRLS_MM = np.array([339, 395, 422, 450, 475, 487, 495, 499, 504, 512, 519, 526, 535, 541, 545], dtype=float)
# Standard deviation of head circumference, mm (WHO: ~1.2 cm at birth, ~1.4 cm later).
HC_SD_MM = 13.0

# Cephalic index (maximum breadth / maximum length): normal ~0.78-0.85 (issue 4's norm).
CEPHALIC_INDEX_MEAN = 0.81
CEPHALIC_INDEX_SD = 0.02
# Scaphocephaly (sagittal synostosis): cephalic index ~0.67-0.72.
SCAPHOCEPHALY_INDEX = (0.67, 0.72)

# Head height (vertex to the skull-base plane) over head length: ~0.62 in adults (Farkas L.G.,
# Anthropometry of the Head and Face, 1994: auricular head height ~13 cm for ~19 cm length).
HEIGHT_OVER_LENGTH = 0.62

# Calvarial thickness, mm: < 3 mm under 4 y, growing to ~6 mm in adults (issue 4's norm; the
# intermediate points are a smooth interpolation, not measurements).
THICKNESS_AGE_Y = np.array([0.0, 1.0, 2.0, 4.0, 8.0, 12.0, 18.0])
THICKNESS_MM = np.array([1.5, 1.9, 2.3, 2.8, 4.0, 5.0, 6.0])
# Diploe appears as the calvarium thickens (unilaminar in infancy): fraction of thickness.
DIPLOE_FRACTION_AGE_Y = np.array([0.0, 1.0, 3.0, 8.0, 18.0])
DIPLOE_FRACTION = np.array([0.0, 0.0, 0.25, 0.4, 0.45])

# Suture width, mm: 1-5 mm in infants, narrowing with age (issue 4); radiographically a line of
# < 0.5 mm in adolescents.
SUTURE_AGE_Y = np.array([0.0, 0.5, 1.0, 2.0, 6.0, 18.0])
SUTURE_WIDTH_MM = np.array([4.0, 3.0, 2.0, 1.2, 0.7, 0.4])
# The metopic suture closes by ~9 months (Vu H.L. et al., Plast Reconstr Surg 2001;107:1131).
METOPIC_CLOSURE_Y = 0.75
# Anterior fontanelle ~2 cm at birth, closed by ~2 years (Kiesler J., Am Fam Physician 2003;67:2547).
FONTANELLE_AGE_Y = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
FONTANELLE_MM = np.array([20.0, 18.0, 12.0, 5.0, 0.0])

# Bone HU rises with mineralisation: typical CT values, cortical calvarial bone ~800 HU in newborns
# to ~1800 HU in adults, the diploe lower (not from one cited table yet).
BONE_AGE_Y = np.array([0.0, 1.0, 3.0, 8.0, 18.0])
TABLE_HU = np.array([800.0, 1000.0, 1250.0, 1550.0, 1800.0])
DIPLOE_HU = np.array([600.0, 650.0, 700.0, 750.0, 800.0])

# Paranasal sinuses: maxillary present at birth and growing; sphenoid pneumatised from ~3 y; frontal
# from ~6 y (the usual radiology teaching). Radii in mm are approximate.
MAXILLARY_AGE_Y = np.array([0.0, 4.0, 12.0, 18.0])
MAXILLARY_RADIUS_MM = np.array([4.0, 9.0, 13.0, 15.0])
SPHENOID_AGE_Y = np.array([0.0, 3.0, 8.0, 18.0])
SPHENOID_RADIUS_MM = np.array([0.0, 3.0, 7.0, 10.0])
FRONTAL_AGE_Y = np.array([0.0, 6.0, 12.0, 18.0])
FRONTAL_RADIUS_MM = np.array([0.0, 2.0, 7.0, 10.0])

# Dentition, teeth per quadrant by age (AAPD eruption charts): deciduous teeth erupt from ~6 months
# to ~2.5 y and are shed from ~6 y to ~12 y; permanent teeth erupt from ~6 y (first molar) to
# ~12 y (second molar; third molars left out); permanent crowns calcify from birth (first molar) to
# ~8 y and wait in the jaw as buds until they erupt.
DECIDUOUS_AGE_Y = np.array([0.0, 0.5, 1.0, 1.5, 2.5, 6.0, 12.0])
DECIDUOUS_ERUPTED = np.array([0.0, 0.0, 2.0, 4.0, 5.0, 5.0, 0.0])
PERMANENT_AGE_Y = np.array([0.0, 6.0, 8.0, 12.0, 18.0])
PERMANENT_ERUPTED = np.array([0.0, 1.0, 3.0, 7.0, 7.0])
PERMANENT_CALCIFIED_AGE_Y = np.array([0.0, 1.0, 3.0, 8.0])
PERMANENT_CALCIFIED = np.array([1.0, 3.0, 6.0, 7.0])
TOOTH_HU = 2200.0  # enamel ~2500-3000 HU around dentin ~1500-2000 HU, at 1.5 mm voxels

# Intracranial volume, mL, for the anatomy check (Sgouros S. et al., J Neurosurg 1999;91:610-616:
# ~90 % of adult volume by ~5 y; adult ~1300-1700 mL). Broad normal ranges per age.
ICV_RANGE_ML = {0.0: (300, 650), 1.0: (750, 1200), 4.0: (1000, 1500), 10.0: (1150, 1650), 18.0: (1200, 1800)}


def at(age_y: float, ages: np.ndarray, values: np.ndarray) -> float:
    return float(np.interp(np.clip(age_y, 0.0, 18.0), ages, values))


def head_circumference_mm(age_y: float, sex: str) -> float:
    return at(age_y, HC_AGE_Y, HC_BOYS_MM if sex == "M" else HC_GIRLS_MM)


def calvarial_thickness_mm(age_y: float) -> float:
    return at(age_y, THICKNESS_AGE_Y, THICKNESS_MM)


def suture_width_mm(age_y: float) -> float:
    return at(age_y, SUTURE_AGE_Y, SUTURE_WIDTH_MM)


def fontanelle_mm(age_y: float) -> float:
    return at(age_y, FONTANELLE_AGE_Y, FONTANELLE_MM)


def ellipse_axes_for_perimeter(perimeter_mm: float, ratio: float) -> tuple[float, float]:
    """Semi-axes (a >= b = ratio * a) of the ellipse with this perimeter (Ramanujan's 2nd formula)."""
    h = ((1 - ratio) / (1 + ratio)) ** 2
    per_a = np.pi * (1 + ratio) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h)))
    a = perimeter_mm / per_a
    return float(a), float(ratio * a)
