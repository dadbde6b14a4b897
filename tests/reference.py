"""An independent reference merge, written the way the official g_mask.py means to work.

It shares no code with ``pipeline``: file names are built per class (as g_mask.py does, with
integer division), every mask is decoded through Pillow's RGB conversion, and the first
channel decides. Tests compare the pipeline against this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Paint orders and ids copied from the dataset facts file, not from configs/.
DEFAULT_ORDER = ["skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                 "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"]
OFFICIAL_ORDER = ["skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                  "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"]
CONVENTIONS = {
    # name: (paint order, id of the first painted class, background id)
    "default": (DEFAULT_ORDER, 0, 18),
    "face-parsing": (DEFAULT_ORDER, 1, 0),
    "official": (OFFICIAL_ORDER, 1, 0),
}


def mask_path(root: Path, index: int, name: str) -> Path:
    return root / "CelebAMask-HQ-mask-anno" / str(index // 2000) / f"{index:05d}_{name}.png"


def reference_label(root: Path, index: int, convention: str) -> np.ndarray:
    order, first_id, background = CONVENTIONS[convention]
    label = np.full((512, 512), background, dtype=np.uint8)
    for offset, name in enumerate(order):
        path = mask_path(root, index, name)
        if path.exists():
            first_channel = np.array(Image.open(path).convert("RGB"))[:, :, 0]
            label = np.where(first_channel > 0, np.uint8(first_id + offset), label)
    return label


def reference_image(root: Path, index: int, size: int = 512) -> np.ndarray:
    """Full decode and Lanczos: the quality the DCT-scaled fast path is measured against."""
    with Image.open(root / "CelebA-HQ-img" / f"{index}.jpg") as image:
        return np.array(image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
