"""The synthetic source as Dataset Ninja publishes CelebAMask-HQ: a Supervisely project (folder or .tar).

Made the way its converter made it from the official files: each image copied to ``ds/img/{i}.jpg``;
each 512² mask scaled 2× (nearest) onto the 1024² image, cropped to its bounding box and stored
as a ``bitmap`` object (base64 of a zlib-compressed 1-bit palette PNG, index 0 transparent,
as Supervisely's SDK writes it); the attributes that are 1 as image tags; no mapping or pose file.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from celebamask.dataset import ATTRIBUTE_FILE, MASK_CLASS_NAMES
from celebamask.synth.generate import generate_source

DATASET = "ds"


def encode_bitmap(mask: np.ndarray) -> dict[str, Any]:
    """A bool mask (on the 1024² image) → Supervisely's ``bitmap``: the bounding box's PNG and its origin."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, left = int(rows[0]), int(cols[0])
    crop = mask[top : rows[-1] + 1, left : cols[-1] + 1]
    image = Image.fromarray(crop.astype(np.uint8), mode="L").convert("P")
    image.putpalette([0, 0, 0, 255, 255, 255])
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=0, optimize=False, bits=1)
    return {"origin": [left, top], "data": base64.b64encode(zlib.compress(out.getvalue())).decode("ascii")}


def convert_to_supervisely(official_root: Path, out: Path) -> Path:
    """Write the Supervisely project of an official-layout root (as Dataset Ninja's converter does)."""
    names, attributes = _read_attributes(official_root / ATTRIBUTE_FILE)
    (out / DATASET / "img").mkdir(parents=True)
    (out / DATASET / "ann").mkdir()
    meta = {
        "classes": [{"id": 1000 + k, "title": name, "shape": "bitmap", "color": f"#{(k * 977) % 0xFFFFFF:06X}"}
                    for k, name in enumerate(MASK_CLASS_NAMES)],
        "tags": [{"id": 2000 + k, "name": name, "value_type": "none", "color": "#8A0F7B"} for k, name in enumerate(names)],
        "projectType": "images",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    masks_by_sample: dict[int, list[Path]] = {}
    for path in sorted((official_root / "CelebAMask-HQ-mask-anno").rglob("*.png")):
        masks_by_sample.setdefault(int(path.name.split("_", 1)[0]), []).append(path)
    for image in sorted((official_root / "CelebA-HQ-img").glob("*.jpg"), key=lambda p: int(p.stem)):
        index = int(image.stem)
        shutil.copyfile(image, out / DATASET / "img" / image.name)
        objects = []
        for position, mask_path in enumerate(masks_by_sample.get(index, [])):
            name = mask_path.stem.split("_", 1)[1]
            with Image.open(mask_path) as mask_image:
                mask = np.asarray(mask_image.convert("RGB"))[:, :, 0] != 0
            if not mask.any():
                continue
            scaled = mask.repeat(2, axis=0).repeat(2, axis=1)
            objects.append({"id": 50_000 * index + position, "classId": 1000 + MASK_CLASS_NAMES.index(name),
                            "description": "", "geometryType": "bitmap", "labelerLogin": "synth", "tags": [],
                            "classTitle": name, "bitmap": encode_bitmap(scaled)})
        tags = [{"id": 90_000 * index + k, "tagId": 2000 + k, "name": name, "value": None, "labelerLogin": "synth"}
                for k, name in enumerate(names) if attributes.get(index, [0] * len(names))[k] == 1]
        annotation = {"description": "", "size": {"height": 1024, "width": 1024}, "tags": tags, "objects": objects}
        (out / DATASET / "ann" / f"{image.name}.json").write_text(json.dumps(annotation))
    return out


def _read_attributes(path: Path) -> tuple[list[str], dict[int, list[int]]]:
    lines = path.read_text().splitlines()
    names = lines[1].split()
    rows = {}
    for line in lines[2:]:
        fields = line.split()
        if fields:
            rows[int(fields[0].split(".")[0])] = [1 if v == "1" else 0 for v in fields[1:]]
    return names, rows


def generate_supervisely(out: Path | str, count: int, seed: int = 0, jobs: int | None = None,
                         progress: bool = False, as_tar: bool = False) -> Path:
    """The synthetic source of (count, seed) as a Supervisely project folder at ``out``, or with
    ``as_tar`` as the uncompressed ``.tar`` Dataset Ninja serves (project folder inside)."""
    target = Path(out)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        official = generate_source(Path(scratch) / "official", count, seed=seed, jobs=jobs, progress=progress)
        if not as_tar:
            return convert_to_supervisely(official, target)
        project = convert_to_supervisely(official, Path(scratch) / "celebamask-hq")
        with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
            for path in sorted(project.rglob("*")):
                archive.add(path, path.relative_to(project.parent).as_posix(), recursive=False)
    return target
