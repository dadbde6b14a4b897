"""The common-practice peer: what a careful hand-written conversion script does.

Per image: Pillow opens each of the 18 possible mask files that exists, converts it to L and
paints it with numpy in paint order; Pillow decodes the full 1024² JPEG and Lanczos-resizes it
to 512; the label is saved as PNG and the image as JPEG q95. A multiprocessing pool runs over
images on the same number of cores as the build.
"""

from __future__ import annotations

import os
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

# The project's default convention, written out the way such scripts hard-code it.
PAINT_ORDER = ["skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
               "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"]
BACKGROUND = 18


def convert_one(root: str, out: str, index: int) -> int:
    label = np.full((512, 512), BACKGROUND, dtype=np.uint8)
    for class_id, name in enumerate(PAINT_ORDER):
        path = os.path.join(root, "CelebAMask-HQ-mask-anno", str(index // 2000), f"{index:05d}_{name}.png")
        if os.path.exists(path):
            mask = np.array(Image.open(path).convert("L"))
            label[mask > 0] = class_id
    image = Image.open(os.path.join(root, "CelebA-HQ-img", f"{index}.jpg")).convert("RGB")
    image = image.resize((512, 512), Image.Resampling.LANCZOS)
    Image.fromarray(label).save(os.path.join(out, "labels", f"{index}.png"))
    image.save(os.path.join(out, "images", f"{index}.jpg"), quality=95)
    return index


def _convert(args: tuple[str, str, int]) -> int:
    return convert_one(*args)


def run_peer(root: Path, out: Path, count: int, jobs: int) -> None:
    for folder in ("labels", "images"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    tasks = [(str(root), str(out), index) for index in range(count)]
    with Pool(jobs) as pool:
        for _ in pool.imap_unordered(_convert, tasks, chunksize=8):
            pass


def read_peer_sample(out: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One sample from the peer's folder, decoded to arrays (what a data loader does)."""
    image = np.asarray(Image.open(out / "images" / f"{index}.jpg").convert("RGB"))
    label = np.asarray(Image.open(out / "labels" / f"{index}.png"))
    return image, label
