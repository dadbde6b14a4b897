"""A deterministic synthetic look-alike of CelebAMask-HQ.

The real dataset cannot live on the machines that build and test this project, so every test
runs on this generator's output. It therefore reproduces what a build depends on: the on-disk
layout and annotation formats, the mix of 'L' and 'RGB' mask PNGs, the published per-class
presence rates and rough areas, masks that overlap the way the real ones do (so the paint order
decides the label map), and photo-like JPEGs whose DCT-scaled decode stays within the PSNR a real
photo gives. Every sample comes from its own RNG, so output is byte-identical for any ``jobs``.
"""

from __future__ import annotations

import math
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from celebamask.dataset import MASK_CLASS_NAMES

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
POSE_FILE = "CelebAMask-HQ-pose-anno.txt"
README_FILE = "README.txt"

IMAGE_SIZE = 1024
MASK_SIZE = 512
MASKS_PER_FOLDER = 2000
JPEG_QUALITY = 92
GRAIN_LEVEL = 1.5  # grey levels of colour grain (see _add_grain)

# Images (of 30,000) in which each class is present, from the published statistics.
_PUBLISHED_IMAGE_COUNTS: dict[str, int] = {
    "skin": 30000, "nose": 29998, "l_lip": 29896, "u_lip": 29870, "hair": 29300, "r_eye": 29260,
    "l_eye": 29258, "neck": 29148, "l_brow": 29029, "r_brow": 28968, "mouth": 17663, "cloth": 17607,
    "l_ear": 15868, "r_ear": 14326, "ear_r": 7966, "neck_l": 1776, "eye_g": 1549, "hat": 1284,
}
REAL_SAMPLE_COUNT = 30000
MAX_SAMPLE_COUNT = 150_000  # the val split (19,867 CelebA images at ~10%) runs out near 199k
PUBLISHED_PRESENCE: dict[str, float] = {
    name: _PUBLISHED_IMAGE_COUNTS[name] / REAL_SAMPLE_COUNT for name in MASK_CLASS_NAMES
}

# Earrings and necklaces only appear where an ear / the neck does; their conditional rates keep
# the marginal rates at the published ones.
_ANY_EAR_PRESENCE = 1 - (1 - PUBLISHED_PRESENCE["l_ear"]) * (1 - PUBLISHED_PRESENCE["r_ear"])
_EARRING_GIVEN_EAR = PUBLISHED_PRESENCE["ear_r"] / _ANY_EAR_PRESENCE
_NECKLACE_GIVEN_NECK = PUBLISHED_PRESENCE["neck_l"] / PUBLISHED_PRESENCE["neck"]
_CONDITIONAL_CLASSES = frozenset({"ear_r", "neck_l"})

# CelebA's official split by original index, and the published CelebAMask-HQ counts per split.
CELEBA_IMAGE_COUNT = 202599
_SPLIT_RANGES = ((0, 162771), (162771, 182638), (182638, CELEBA_IMAGE_COUNT))
_SPLIT_PROBABILITIES = np.array([24183, 2993, 2824]) / REAL_SAMPLE_COUNT
_MAPPING_STREAM = 0x6D6170  # keeps the mapping RNG apart from the per-sample RNGs [seed, i]

CELEBA_ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)
_MALE_RATE = 0.42
# Rates (female, male) of the attributes drawn at random; roughly CelebA's.
_RATES_BY_SEX: dict[str, tuple[float, float]] = {
    "5_o_Clock_Shadow": (0.0, 0.26), "Arched_Eyebrows": (0.40, 0.08), "Attractive": (0.65, 0.32),
    "Bags_Under_Eyes": (0.12, 0.32), "Bald": (0.5, 0.95),  # kept only where there is no hair
    "Bangs": (0.20, 0.09), "Big_Lips": (0.28, 0.18), "Big_Nose": (0.12, 0.38), "Blurry": (0.05, 0.05),
    "Bushy_Eyebrows": (0.08, 0.23), "Chubby": (0.03, 0.11), "Double_Chin": (0.03, 0.09),
    "Goatee": (0.0, 0.15), "Heavy_Makeup": (0.62, 0.01), "High_Cheekbones": (0.55, 0.32),
    "Mustache": (0.0, 0.10), "Narrow_Eyes": (0.11, 0.13), "No_Beard": (1.0, 0.60),
    "Oval_Face": (0.32, 0.22), "Pale_Skin": (0.06, 0.02), "Pointy_Nose": (0.36, 0.17),
    "Receding_Hairline": (0.05, 0.13), "Rosy_Cheeks": (0.11, 0.01), "Sideburns": (0.0, 0.13),
    "Straight_Hair": (0.20, 0.22), "Wavy_Hair": (0.48, 0.10), "Wearing_Lipstick": (0.80, 0.01),
    "Wearing_Necktie": (0.0, 0.17), "Young": (0.85, 0.68),
}
# Rates (mouth closed, mouth open) — an open mouth is what makes a `mouth` mask.
_RATES_BY_MOUTH: dict[str, tuple[float, float]] = {
    "Smiling": (0.17, 0.70), "Mouth_Slightly_Open": (0.08, 0.75),
}
# Attributes that must agree with a mask's presence.
_MASK_ATTRIBUTES: dict[str, str] = {
    "Eyeglasses": "eye_g", "Wearing_Hat": "hat", "Wearing_Earrings": "ear_r", "Wearing_Necklace": "neck_l",
}

_HAIR_COLOURS: dict[str, tuple[float, tuple[int, int, int]]] = {
    # name: (probability, RGB)
    "black": (0.24, (28, 24, 22)), "blond": (0.15, (196, 160, 104)), "brown": (0.20, (92, 62, 42)),
    "gray": (0.04, (150, 146, 140)), "dark": (0.27, (55, 38, 28)), "auburn": (0.10, (120, 60, 36)),
}
_HAIR_COLOUR_ATTRIBUTES: dict[str, str] = {
    "Black_Hair": "black", "Blond_Hair": "blond", "Brown_Hair": "brown", "Gray_Hair": "gray",
}

# Label values of the 1024² image canvas: class i is MASK_CLASS_NAMES[i], then image-only parts.
_LABEL = {name: value for value, name in enumerate(MASK_CLASS_NAMES)}
_LABEL.update(background=len(MASK_CLASS_NAMES), iris=len(MASK_CLASS_NAMES) + 1, teeth=len(MASK_CLASS_NAMES) + 2)
_LABEL_COUNT = len(_LABEL)
# The photo is painted back to front as a camera sees it (not in any label convention's order).
_IMAGE_LAYERS = (
    "neck", "cloth", "neck_l", "skin", "nose", "l_brow", "r_brow", "l_eye", "r_eye", "iris",
    "mouth", "teeth", "u_lip", "l_lip", "hair", "l_ear", "r_ear", "ear_r", "eye_g", "hat",
)
_FEATURE_PARTS = frozenset({"l_brow", "r_brow", "l_eye", "r_eye", "iris", "eye_g", "nose", "mouth",
                            "teeth", "u_lip", "l_lip"})

Polygon = np.ndarray  # (n, 2) float coordinates
Region = list[tuple[Polygon, bool]]  # polygons filled (True) or cleared (False), in order


def generate_source(out: Path | str, count: int, seed: int = 0, jobs: int | None = None,
                    progress: bool = False) -> Path:
    """Write a synthetic CelebAMask-HQ root at `out` (out itself becomes the dataset root) with
    samples 0..count-1; return out.

    Tests and trials run on this because the real dataset cannot be on the machine; the same
    (count, seed) always gives byte-identical files, whatever `jobs` is.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count > MAX_SAMPLE_COUNT:
        raise ValueError(f"count must be <= {MAX_SAMPLE_COUNT}: CelebA's splits have too few unused images beyond that")
    root = Path(out)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    for folder in range(math.ceil(count / MASKS_PER_FOLDER)):
        (root / MASK_DIR / str(folder)).mkdir(parents=True, exist_ok=True)

    workers = effective_n_jobs(jobs or -1)  # None means every core
    batch_size = max(1, min(32, math.ceil(count / (workers * 4))))
    batches = [range(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    results = Parallel(n_jobs=workers, return_as="generator_unordered")(
        delayed(_write_batch)(str(root), seed, batch) for batch in batches
    )
    records: list[_SampleRecord] = []
    with tqdm(total=count, disable=not progress, unit="sample", desc="synthesising") as bar:
        for batch_records in results:
            records.extend(batch_records)
            bar.update(len(batch_records))
    records.sort(key=lambda record: record.index)

    _write_mapping(root / MAPPING_FILE, records, seed)
    _write_attributes(root / ATTRIBUTE_FILE, records)
    _write_poses(root / POSE_FILE, records)
    (root / README_FILE).write_text(
        f"SYNTHETIC CelebAMask-HQ look-alike written by celebamask.synth (count={count}, seed={seed}).\n"
        "Same layout, file formats and class statistics as the real dataset, but every face,\n"
        "mask and annotation is generated; it contains no real data.\n"
    )
    return root


# --------------------------------------------------------------------------- sample plan


class _SampleRecord(NamedTuple):
    """What the annotation files need from one sample (returned by the workers)."""

    index: int
    split: int
    attributes: tuple[int, ...]
    pose: tuple[float, float, float]


@dataclass(frozen=True)
class _FaceFrame:
    """Where the face sits in the 512² mask frame; shapes are designed in face units.

    Face units: the face outline is roughly the unit circle, u to the image right, v down.
    """

    centre_x: float
    centre_y: float
    half_width: float
    half_height: float
    roll: float  # radians

    def place(self, points: Polygon) -> Polygon:
        x = points[:, 0] * self.half_width
        y = points[:, 1] * self.half_height
        cos, sin = math.cos(self.roll), math.sin(self.roll)
        return np.column_stack([self.centre_x + cos * x - sin * y, self.centre_y + sin * x + cos * y])

    def squared_unit_distance(self, size: int) -> np.ndarray:
        """Squared elliptic distance from the face centre on a size² grid (1 on the face outline)."""
        scale = size / MASK_SIZE
        coords = (np.arange(size, dtype=np.float32) + 0.5) / scale
        dx = coords[None, :] - self.centre_x
        dy = coords[:, None] - self.centre_y
        cos, sin = math.cos(self.roll), math.sin(self.roll)
        u = (cos * dx + sin * dy) / self.half_width
        v = (cos * dy - sin * dx) / self.half_height
        return u * u + v * v


@dataclass(frozen=True)
class _SamplePlan:
    """Everything random about one sample, drawn before anything is rendered."""

    record: _SampleRecord
    frame: _FaceFrame
    regions: dict[str, Region]  # mask geometry of each present class, in 512² pixels
    image_regions: dict[str, Region]  # what the photo paints for each layer, in 512² pixels
    palette: np.ndarray  # (_LABEL_COUNT, 3) base RGB per canvas label
    blur_radius: float


def _plan_sample(rng: np.random.Generator, index: int) -> _SamplePlan:
    present = _draw_presence(rng)
    yaw, pitch, roll = (float(np.clip(rng.normal(0.0, sd), -limit, limit))
                        for sd, limit in ((15.0, 60.0), (8.0, 30.0), (5.0, 20.0)))
    male = bool(rng.random() < _MALE_RATE)
    hair_colour = str(rng.choice(list(_HAIR_COLOURS), p=[p for p, _ in _HAIR_COLOURS.values()]))
    attributes = _draw_attributes(rng, present, male, hair_colour)
    long_hair = bool(rng.random() < (0.2 if male else 0.8))

    scale = rng.uniform(0.92, 1.08)
    frame = _FaceFrame(
        centre_x=256 + rng.normal(0, 8),
        centre_y=248 + rng.normal(0, 8),
        half_width=148 * scale * rng.uniform(0.95, 1.05) * (1.06 if attributes["Chubby"] else 1.0),
        half_height=181 * scale * rng.uniform(0.96, 1.04),
        roll=math.radians(roll),
    )
    shapes, image_shapes = _face_shapes(rng, present, attributes, long_hair, yaw, pitch)
    regions = {name: [(frame.place(polygon), filled) for polygon, filled in region] for name, region in shapes.items()}
    image_regions = {name: [(frame.place(polygon), filled) for polygon, filled in image_shapes[name]]
                     for name in _IMAGE_LAYERS if name in image_shapes}
    split = int(rng.choice(len(_SPLIT_RANGES), p=_SPLIT_PROBABILITIES))
    record = _SampleRecord(
        index=index,
        split=split,
        attributes=tuple(1 if attributes[name] else -1 for name in CELEBA_ATTRIBUTE_NAMES),
        pose=(yaw, pitch, roll),
    )
    return _SamplePlan(
        record=record,
        frame=frame,
        regions=regions,
        image_regions=image_regions,
        palette=_draw_palette(rng, attributes, hair_colour),
        blur_radius=rng.uniform(1.5, 2.0) if attributes["Blurry"] else rng.uniform(0.5, 0.8),
    )


def _draw_presence(rng: np.random.Generator) -> frozenset[str]:
    present = {name for name in MASK_CLASS_NAMES
               if name not in _CONDITIONAL_CLASSES and rng.random() < PUBLISHED_PRESENCE[name]}
    if {"l_ear", "r_ear"} & present and rng.random() < _EARRING_GIVEN_EAR:
        present.add("ear_r")
    if "neck" in present and rng.random() < _NECKLACE_GIVEN_NECK:
        present.add("neck_l")
    return frozenset(present)


def _draw_attributes(rng: np.random.Generator, present: frozenset[str], male: bool,
                     hair_colour: str) -> dict[str, bool]:
    """CelebA's 40 attributes, consistent with the masks (glasses, hat, jewellery, hair, mouth)."""
    draws = rng.random(len(CELEBA_ATTRIBUTE_NAMES))
    attributes: dict[str, bool] = {}
    for draw, name in zip(draws, CELEBA_ATTRIBUTE_NAMES):
        if name in _RATES_BY_SEX:
            attributes[name] = bool(draw < _RATES_BY_SEX[name][male])
        elif name in _RATES_BY_MOUTH:
            attributes[name] = bool(draw < _RATES_BY_MOUTH[name]["mouth" in present])
        elif name in _MASK_ATTRIBUTES:
            attributes[name] = _MASK_ATTRIBUTES[name] in present
        elif name in _HAIR_COLOUR_ATTRIBUTES:
            attributes[name] = "hair" in present and hair_colour == _HAIR_COLOUR_ATTRIBUTES[name]
        elif name == "Male":
            attributes[name] = male
    attributes["Bald"] &= "hair" not in present
    attributes["No_Beard"] &= not (attributes["Goatee"] or attributes["Mustache"])
    attributes["Wavy_Hair"] &= not attributes["Straight_Hair"]
    return attributes


# --------------------------------------------------------------------------- geometry (face units)


def _ellipse(cu: float, cv: float, ru: float, rv: float, exponent: float = 2.0, points: int = 48) -> Polygon:
    """A closed (super)ellipse; exponent > 2 squares it off like a spectacle lens."""
    t = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    cos, sin = np.cos(t), np.sin(t)
    power = 2.0 / exponent
    return np.column_stack([cu + ru * np.sign(cos) * np.abs(cos) ** power,
                            cv + rv * np.sign(sin) * np.abs(sin) ** power])


def _between(us: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> Polygon:
    """The area between an upper and a lower curve sampled at the same u."""
    return np.concatenate([np.column_stack([us, top]), np.column_stack([us[::-1], bottom[::-1]])])


def _box(u0: float, v0: float, u1: float, v1: float) -> Polygon:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=float)


_SIDES = {"l": 1.0, "r": -1.0}  # l_* is the person's left, on the image right


def _face_shapes(rng: np.random.Generator, present: frozenset[str], attributes: dict[str, bool],
                 long_hair: bool, yaw: float, pitch: float) -> tuple[dict[str, Region], dict[str, Region]]:
    """Mask shapes of every present class, and the photo's layers, in face units.

    Each mask is the class's full region, drawn independently like the real annotations, so
    they overlap: hair over the forehead and cheeks (and the brows under a fringe), long hair
    over neck and clothes, glasses over eyes and skin, a hat over hair and forehead, ears over
    the face edge, earrings over the lobes, clothes over the neck, a necklace over neck and
    clothes, and the lips over the mouth. Ears and earrings are cut out of the hair mask: the
    photo shows them over the hair.
    """
    shapes: dict[str, Region] = {"skin": [(_face_outline(rng, attributes), True)]}
    extras: dict[str, Region] = {}  # what the photo paints differently from the masks
    brow_v = _add_eyes_brows_glasses(rng, attributes, present, shapes, extras)
    _add_nose_lips_mouth(rng, attributes, present, shapes, extras)
    _add_ears_earrings(rng, present, shapes)
    _add_neck_cloth_necklace(rng, shapes)
    shapes["hair"] = _hair(rng, attributes, long_hair, brow_v)
    # The photo draws ears and earrings over the hair and, as in the real annotations, the visible
    # ear is labelled ear: the hair mask stops where a present ear or earring is drawn.
    shapes["hair"] += [(polygon, False) for name in ("l_ear", "r_ear", "ear_r") if name in present
                       for polygon, _ in shapes[name]]
    shapes["hat"] = _hat(rng)

    feature_offset = np.array([0.35 * math.sin(math.radians(yaw)), 0.25 * math.sin(math.radians(pitch))])
    for collection in (shapes, extras):
        for name in _FEATURE_PARTS & collection.keys():
            collection[name] = [(polygon + feature_offset, filled) for polygon, filled in collection[name]]
    mask_shapes = {name: shapes[name] for name in MASK_CLASS_NAMES if name in present}
    return mask_shapes, mask_shapes | extras


def _face_outline(rng: np.random.Generator, attributes: dict[str, bool]) -> Polygon:
    taper = rng.uniform(0.08, 0.14) if attributes["Chubby"] else rng.uniform(0.14, 0.24)  # narrower chin
    t = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
    lower = np.clip(np.sin(t), 0.0, None)
    return np.column_stack([np.cos(t) * (1 - taper * lower**2), np.sin(t) * (1 + 0.03 * lower)])


def _add_eyes_brows_glasses(rng: np.random.Generator, attributes: dict[str, bool], present: frozenset[str],
                            shapes: dict[str, Region], extras: dict[str, Region]) -> float:
    """Eyes, brows and glasses (the photo gets irises and only the glasses' frame); returns the brow line."""
    eye_u = rng.uniform(0.37, 0.43)
    eye_v = rng.uniform(-0.08, -0.02)
    eye_rv = rng.uniform(0.04, 0.05) if attributes["Narrow_Eyes"] else rng.uniform(0.052, 0.064)
    gaze = rng.normal(0.0, 0.02)
    for side, sign in _SIDES.items():
        shapes[f"{side}_eye"] = [(_ellipse(sign * eye_u, eye_v, rng.uniform(0.125, 0.14), eye_rv), True)]
    extras["iris"] = [(_ellipse(sign * eye_u + gaze, eye_v, 0.045, 0.037), True)
                      for side, sign in _SIDES.items() if f"{side}_eye" in present]

    brow_v = eye_v - rng.uniform(0.15, 0.2)
    brow_half_length = rng.uniform(0.25, 0.3)
    brow_half_thickness = rng.uniform(0.05, 0.065) if attributes["Bushy_Eyebrows"] else rng.uniform(0.038, 0.05)
    brow_arch = rng.uniform(0.07, 0.1) if attributes["Arched_Eyebrows"] else rng.uniform(0.03, 0.06)
    along = np.linspace(-1.0, 1.0, 17)
    centre_line = brow_v - brow_arch * (1 - along**2)
    for side, sign in _SIDES.items():
        half = brow_half_thickness * (1 - 0.5 * np.clip(sign * along, 0.0, None))  # thinner outer end
        shapes[f"{side}_brow"] = [(_between(sign * eye_u + brow_half_length * along,
                                            centre_line - half, centre_line + half), True)]

    lens_ru, lens_rv = rng.uniform(0.34, 0.38), rng.uniform(0.2, 0.24)
    lens_v = eye_v + rng.uniform(-0.02, 0.02)
    lenses = [_ellipse(sign * eye_u, lens_v, lens_ru, lens_rv, exponent=3.0) for sign in _SIDES.values()]
    glass = [_ellipse(sign * eye_u, lens_v, lens_ru * 0.86, lens_rv * 0.8, exponent=3.0) for sign in _SIDES.values()]
    bridge = _box(-eye_u + lens_ru * 0.8, lens_v - 0.09, eye_u - lens_ru * 0.8, lens_v - 0.05)
    arms = [_box(sign * (eye_u + lens_ru * 0.9), lens_v - 0.11, sign * 1.1, lens_v - 0.06) for sign in _SIDES.values()]
    bridge_and_arms = [(part, True) for part in [bridge, *arms]]
    shapes["eye_g"] = [(lens, True) for lens in lenses] + bridge_and_arms
    if "eye_g" in present:  # the photo shows the eyes through the lenses
        extras["eye_g"] = [op for lens, inner in zip(lenses, glass) for op in ((lens, True), (inner, False))]
        extras["eye_g"] += bridge_and_arms
    return brow_v


def _add_nose_lips_mouth(rng: np.random.Generator, attributes: dict[str, bool], present: frozenset[str],
                         shapes: dict[str, Region], extras: dict[str, Region]) -> None:
    """Nose, lips and (open) mouth; the lips close over the mouth's border, and the photo gets teeth."""
    nose_width = rng.uniform(1.2, 1.35) if attributes["Big_Nose"] else rng.uniform(1.0, 1.15)
    nose_bottom = rng.uniform(0.32, 0.38)
    nose_outline = np.array([[-0.1, -0.16], [0.1, -0.16], [0.19, nose_bottom - 0.14], [0.27, nose_bottom - 0.06],
                             [0.22, nose_bottom], [0.0, nose_bottom + 0.02], [-0.22, nose_bottom],
                             [-0.27, nose_bottom - 0.06], [-0.19, nose_bottom - 0.14]])
    shapes["nose"] = [(nose_outline * np.array([nose_width, 1.0]), True)]

    lip_v = nose_bottom + rng.uniform(0.17, 0.23)
    lip_half_width = rng.uniform(0.36, 0.44)
    lip_scale = rng.uniform(1.2, 1.4) if attributes["Big_Lips"] else rng.uniform(0.9, 1.1)
    opening_half_height = rng.uniform(0.04, 0.075) if "mouth" in present else 0.0
    opening_half_width = 0.8 * lip_half_width
    smile = rng.uniform(0.02, 0.05) if attributes["Smiling"] else 0.0
    overlap = 0.008  # lips and mouth share a pixel or two along their borders
    us = np.linspace(-lip_half_width, lip_half_width, 29)
    profile = (1 - (us / lip_half_width) ** 2) ** 0.6
    cupid_bow = 1 - 0.3 * np.exp(-(us / (0.15 * lip_half_width)) ** 2)
    corners_up = smile * (us / lip_half_width) ** 2
    opening = opening_half_height * np.sqrt(np.clip(1 - (us / opening_half_width) ** 2, 0.0, None))
    upper_bottom = lip_v - opening + overlap - corners_up
    lower_top = lip_v + opening - overlap - corners_up
    shapes["u_lip"] = [(_between(us, upper_bottom - 0.07 * lip_scale * profile * cupid_bow, upper_bottom), True)]
    shapes["l_lip"] = [(_between(us, lower_top, lower_top + 0.105 * lip_scale * profile), True)]
    if "mouth" in present:
        mouth = _ellipse(0.0, lip_v, opening_half_width, opening_half_height)
        mouth[:, 1] -= smile * (mouth[:, 0] / lip_half_width) ** 2
        shapes["mouth"] = [(mouth, True)]
        extras["teeth"] = [(_ellipse(0.0, lip_v - 0.35 * opening_half_height,
                                     0.85 * opening_half_width, 0.5 * opening_half_height), True)]


def _add_ears_earrings(rng: np.random.Generator, present: frozenset[str], shapes: dict[str, Region]) -> None:
    """Ears reaching over the face edge, earrings hanging over the lobes of the present ears."""
    ear_v = rng.uniform(-0.02, 0.06)
    for side, sign in _SIDES.items():
        shapes[f"{side}_ear"] = [(_ellipse(sign * rng.uniform(1.05, 1.1), ear_v,
                                           rng.uniform(0.14, 0.17), rng.uniform(0.25, 0.29)), True)]
    earring_size = rng.uniform(0.8, 1.2)
    shapes["ear_r"] = [(_ellipse(sign * 1.09, ear_v + 0.36, 0.11 * earring_size, 0.2 * earring_size), True)
                       for side, sign in _SIDES.items() if f"{side}_ear" in present]


def _add_neck_cloth_necklace(rng: np.random.Generator, shapes: dict[str, Region]) -> None:
    """Neck from under the jaw, clothes over its base, a necklace across both."""
    neck_half_width = rng.uniform(0.36, 0.42)
    shapes["neck"] = [(np.array([[-neck_half_width, 0.75], [neck_half_width, 0.75],
                                 [neck_half_width + 0.04, 1.35], [-neck_half_width - 0.04, 1.35]]), True)]
    shoulder_v = rng.uniform(1.2, 1.36)
    neckline = rng.uniform(0.02, 0.22)
    shapes["cloth"] = [(np.array([[-3.5, 4.0], [-3.5, shoulder_v + 0.35], [-1.4, shoulder_v + 0.03],
                                  [-0.55, shoulder_v - 0.08], [0.0, shoulder_v + neckline], [0.55, shoulder_v - 0.08],
                                  [1.4, shoulder_v + 0.03], [3.5, shoulder_v + 0.35], [3.5, 4.0]]), True)]
    chain_u = np.linspace(-0.62, 0.62, 21)
    chain_v = 1.12 + rng.uniform(0.15, 0.3) * (1 - (chain_u / 0.62) ** 2)
    shapes["neck_l"] = [(_between(chain_u, chain_v - 0.026, chain_v + 0.026), True),
                        (_ellipse(0.0, chain_v.max() + 0.05, 0.05, 0.05), True)]  # pendant


def _hair(rng: np.random.Generator, attributes: dict[str, bool], long_hair: bool, brow_v: float) -> Region:
    """A crown with the face cut out below the hairline, plus a fringe and long side locks."""
    crown_shift = rng.normal(0.0, 0.05)
    hairline = -0.86 + (rng.uniform(0.08, 0.15) if attributes["Receding_Hairline"] else rng.uniform(-0.04, 0.04))
    face_ru = rng.uniform(0.9, 0.96)  # narrower than the face, so hair covers the cheeks' edges
    hair: Region = [(_ellipse(crown_shift, -0.2, rng.uniform(1.22, 1.5), rng.uniform(1.0, 1.15)), True),
                    (_ellipse(0.0, hairline + 0.98, face_ru, 0.98), False)]
    if attributes["Bangs"]:
        fringe_u = np.linspace(-face_ru, face_ru, 31)
        fringe_top = hairline + 0.98 - 0.98 * np.sqrt(np.clip(1 - (fringe_u / face_ru) ** 2, 0.0, None))
        fringe_edge = brow_v + rng.uniform(-0.2, 0.0) + 0.03 * np.sin(fringe_u * rng.uniform(8, 14))
        hair.append((_between(fringe_u, fringe_top, np.maximum(fringe_top, fringe_edge)), True))
    if long_hair:
        length = rng.uniform(1.5, 1.9)
        lock = np.array([[0.8, 0.2], [1.45, 0.1], [1.65, length], [0.26, length], [0.48, 1.0], [0.8, 0.6]])
        hair += [(lock * np.array([sign, 1.0]), True) for sign in _SIDES.values()]
    return hair


def _hat(rng: np.random.Generator) -> Region:
    shift = rng.normal(0.0, 0.06)
    return [(_ellipse(shift, -0.85, rng.uniform(1.12, 1.28), rng.uniform(0.46, 0.54)), True),
            (_ellipse(shift, -0.42, rng.uniform(1.45, 1.65), 0.13), True)]  # brim over the forehead


# --------------------------------------------------------------------------- colours and texture


def _draw_palette(rng: np.random.Generator, attributes: dict[str, bool], hair_colour: str) -> np.ndarray:
    """Base RGB of every canvas label: skin tone, hair colour, clothes, jewellery, background."""
    darkness = rng.beta(1.5, 4.0) * (0.3 if attributes["Pale_Skin"] else 1.0)
    skin = (1 - darkness) * np.array([236, 198, 172]) + darkness * np.array([110, 72, 52]) + rng.normal(0, 5, 3)
    hair = np.array(_HAIR_COLOURS[hair_colour][1], dtype=float) + rng.normal(0, 6, 3)
    metal = np.array([212, 175, 90]) if rng.random() < 0.6 else np.array([200, 200, 205])
    iris = np.array([[70, 45, 30], [80, 100, 120], [80, 95, 70]])[rng.choice(3, p=[0.7, 0.2, 0.1])]
    lips = np.array([185, 40, 60]) if attributes["Wearing_Lipstick"] else 0.5 * np.array([176, 96, 96]) + 0.4 * skin
    colours = {
        "background": 0.6 * rng.uniform(30, 220, 3) + 0.4 * rng.uniform(60, 200),  # muted
        "skin": skin,
        "nose": skin * 1.03,
        "l_ear": skin * np.array([0.95, 0.9, 0.9]),
        "r_ear": skin * np.array([0.95, 0.9, 0.9]),
        "neck": skin * 0.82,
        "l_brow": 0.65 * hair + 0.25 * skin,
        "r_brow": 0.65 * hair + 0.25 * skin,
        "l_eye": np.array([170, 150, 140]) * rng.uniform(0.9, 1.05),
        "r_eye": np.array([170, 150, 140]) * rng.uniform(0.9, 1.05),
        "iris": iris,
        "eye_g": np.array([25, 25, 30]) if rng.random() < 0.7 else metal,
        "ear_r": metal,
        "neck_l": metal,
        "mouth": np.array([80, 30, 35]),
        "teeth": np.array([225, 215, 200]),
        "u_lip": lips,
        "l_lip": lips * 1.05,
        "hair": hair,
        "cloth": 0.8 * rng.uniform(20, 230, 3) + 0.2 * rng.uniform(20, 230),
        "hat": 0.8 * rng.uniform(20, 230, 3) + 0.2 * rng.uniform(20, 230),
    }
    palette = np.zeros((_LABEL_COUNT, 3), dtype=np.float32)
    for name, colour in colours.items():
        palette[_LABEL[name]] = np.clip(colour, 0, 255)
    return palette


def _per_label(default: float, **values: float) -> np.ndarray:
    table = np.full(_LABEL_COUNT, default, dtype=np.float32)
    for name, value in values.items():
        table[_LABEL[name]] = value
    return table


# How strongly each label takes the fine 1/f texture and the hair strands (grey levels).
_TEXTURE_LEVEL = _per_label(2.5, background=3.5, hair=5.0, cloth=5.0, hat=5.0, neck_l=7.0, ear_r=7.0)
_STRAND_LEVEL = _per_label(0.0, hair=10.0, l_brow=5.0, r_brow=5.0)
_ILLUMINATION_SIZE = 128  # the lighting is smooth, so it is computed small and upsampled


def _upsample(field: np.ndarray, height: int, width: int) -> np.ndarray:
    if field.shape == (height, width):
        return field
    return np.asarray(Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC))


def _octave_noise(rng: np.random.Generator, sizes: tuple[tuple[int, int], ...], out: int) -> np.ndarray:
    """Sum of upsampled noise octaves (equal power per octave ≈ a photo's 1/f spectrum), unit std."""
    field = np.zeros(sizes[0], dtype=np.float32)
    for height, width in sizes:
        field = _upsample(field, height, width) + rng.standard_normal((height, width), dtype=np.float32)
    field = _upsample(field, out, out)
    return (field - field.mean()) / field.std()


def _illumination(rng: np.random.Generator, frame: _FaceFrame) -> np.ndarray:
    """Multiplicative 1024² lighting: a directional ramp, soft shading blotches, darker face edges."""
    size = _ILLUMINATION_SIZE
    shading = _octave_noise(rng, ((2, 2), (4, 4), (8, 8), (16, 16)), size)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.arange(size, dtype=np.float32) / size - 0.5) * rng.uniform(0.0, 0.3)
    light = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
    falloff = np.minimum(frame.squared_unit_distance(size), 1.5)
    gain = 1.0 + light + rng.uniform(0.06, 0.12) * shading - rng.uniform(0.1, 0.18) * falloff
    return _upsample(gain.astype(np.float32), IMAGE_SIZE, IMAGE_SIZE)


def _render_image(rng: np.random.Generator, plan: _SamplePlan) -> Image.Image:
    """The 1024² photo: the same geometry as the masks (×2), painted back to front and textured."""
    scale = IMAGE_SIZE / MASK_SIZE
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), _LABEL["background"])
    draw = ImageDraw.Draw(canvas)
    for name, region in plan.image_regions.items():
        if all(filled for _, filled in region):
            for polygon, _ in region:
                draw.polygon((polygon * scale).ravel().tolist(), fill=_LABEL[name])
        else:
            canvas.paste(_LABEL[name], mask=_rasterise(region, IMAGE_SIZE, scale))
    labels = np.asarray(canvas)

    illumination = _illumination(rng, plan.frame)
    texture = _octave_noise(rng, tuple((size, size) for size in (32, 64, 128, 256, 512)), IMAGE_SIZE)
    strands = _octave_noise(rng, ((16, 64), (32, 128), (64, 256), (128, 512)), IMAGE_SIZE)
    detail = np.take(_TEXTURE_LEVEL, labels) * texture + np.take(_STRAND_LEVEL, labels) * strands
    channels = []
    for channel in range(3):
        plane = np.take(plan.palette[:, channel], labels) * illumination
        plane += detail
        plane += 0.5
        np.clip(plane, 0, 255, out=plane)
        channels.append(Image.fromarray(plane.astype(np.uint8)))
    blurred = np.asarray(Image.merge("RGB", channels).filter(ImageFilter.BoxBlur(plan.blur_radius)), dtype=np.float32)
    return Image.fromarray(_add_grain(rng, blurred))


def _add_grain(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """Independent colour grain at the 512 scale: without it the 512² images are smoother than a
    photograph's and compress too well (lossless predictors reached ~5x where real CelebA-HQ
    images reach ~3.3x; with it zstd, delta+zstd and WebP-lossless ratios land near the real ones)."""
    for channel in range(3):
        grain = GRAIN_LEVEL * rng.standard_normal((MASK_SIZE, MASK_SIZE), dtype=np.float32)
        block = IMAGE_SIZE // MASK_SIZE  # one grain per 2x2 pixels: what survives the decode at 512
        pixels[:, :, channel] += np.repeat(np.repeat(grain, block, axis=0), block, axis=1)
    pixels += 0.5
    np.clip(pixels, 0, 255, out=pixels)
    return pixels.astype(np.uint8)


def _rasterise(region: Region, size: int, scale: float = 1.0) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for polygon, filled in region:
        draw.polygon((polygon * scale).ravel().tolist(), fill=255 if filled else 0)
    return mask


# --------------------------------------------------------------------------- writing


def _write_batch(root: str, seed: int, indices: range) -> list[_SampleRecord]:
    """Render and write the samples of one worker task; return their annotation records."""
    return [_write_sample(Path(root), seed, index) for index in indices]


def _write_sample(root: Path, seed: int, index: int) -> _SampleRecord:
    rng = np.random.default_rng([seed, index])
    plan = _plan_sample(rng, index)
    _render_image(rng, plan).save(root / IMAGE_DIR / f"{index}.jpg", quality=JPEG_QUALITY)
    folder = root / MASK_DIR / str(index // MASKS_PER_FOLDER)
    for name, region in plan.regions.items():
        mask = _rasterise(region, MASK_SIZE)
        if rng.random() < 0.5:  # users' copies hold both single-channel and RGB masks
            mask = mask.convert("RGB")
        mask.save(folder / f"{index:05d}_{name}.png", compress_type=zlib.Z_RLE)  # fast, and small for 0/255
    return plan.record


def _write_mapping(path: Path, records: list[_SampleRecord], seed: int) -> None:
    """Unique CelebA indices drawn from each sample's split, stable when `count` grows."""
    rng = np.random.default_rng([seed, _MAPPING_STREAM])
    shuffled = [start + rng.permutation(stop - start) for start, stop in _SPLIT_RANGES]
    used = [0] * len(_SPLIT_RANGES)
    lines = [f"{'idx':<7}{'orig_idx':<11}orig_file"]
    for record in records:
        if used[record.split] == len(shuffled[record.split]):
            raise ValueError(f"too many samples: CelebA split {record.split} has no unused images left")
        orig = int(shuffled[record.split][used[record.split]])
        used[record.split] += 1
        lines.append(f"{record.index:<7}{orig:<11}{orig + 1:06d}.jpg")
    path.write_text("\n".join(lines) + "\n")


def _write_attributes(path: Path, records: list[_SampleRecord]) -> None:
    # Like CelebA's list: values right-aligned in two columns, so "  1" but " -1".
    lines = [str(len(records)), " ".join(CELEBA_ATTRIBUTE_NAMES)]
    lines += [f"{record.index}.jpg " + " ".join(f"{value:>2}" for value in record.attributes) for record in records]
    path.write_text("\n".join(lines) + "\n")


def _write_poses(path: Path, records: list[_SampleRecord]) -> None:
    lines = [str(len(records)), "Yaw Pitch Raw"]
    lines += [f"{record.index}.jpg " + " ".join(f"{round(angle, 2) + 0.0:.2f}" for angle in record.pose)
              for record in records]
    path.write_text("\n".join(lines) + "\n")


def generate_zip(out: Path | str, count: int, seed: int = 0, jobs: int | None = None,
                 progress: bool = False) -> Path:
    """Write the synthetic source as a .zip laid out like the official download
    (``CelebAMask-HQ/...`` inside), to test reading an archive in place."""
    archive = Path(out)
    if archive.exists():
        raise FileExistsError(f"{archive} already exists")
    with tempfile.TemporaryDirectory(dir=archive.parent) as scratch:
        root = generate_source(Path(scratch) / "CelebAMask-HQ", count, seed=seed, jobs=jobs, progress=progress)
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:  # JPEG and PNG are compressed already
            for path in sorted(root.rglob("*")):
                zipped.write(path, path.relative_to(root.parent).as_posix())
    return archive
