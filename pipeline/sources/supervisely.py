"""Supervisely projects (Dataset Ninja's ``celebamask-hq.tar``): ``meta.json``, ``ds*/img/{i}.jpg``,
``ds*/ann/{i}.jpg.json`` with one ``bitmap`` object per mask and the 40 attributes as image tags.

Dataset Ninja's converter scaled each 512² mask 2× (nearest) onto the 1024² image and stored it
cropped to its bounding box, as base64 of a zlib-compressed PNG placed at ``origin`` [x, y].
Pasting the bitmaps on a 1024² canvas and keeping every second pixel gives the 512² mask back
exactly, so the build's workers need no second path: :class:`SuperviselyFiles` answers their
per-class mask reads (``ds/ann/12.jpg.json#hair``) with the PNG of that 512² mask, and the
attribute file read with CelebA's attribute list made from the tags.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import zlib
from typing import Any

import numpy as np
from PIL import Image

from celebamask.config import MASK_SIZE
from celebamask.dataset import ATTRIBUTE_FILE, MASK_CLASS_NAMES
from celebamask.errors import CelebaMaskError
from celebamask.sources.index import Problems, Sample, SourceFiles, SourceIndex, SourceRef
from celebamask.sources.png import PngFile, inflate_png, read_png, without_animation

CANVAS = 2 * MASK_SIZE  # the size Dataset Ninja's masks were scaled to
IMAGE_NAME = re.compile(r"^(?:.*/)?(ds[^/]*)/img/(\d+)\.jpg$", re.IGNORECASE)
ANNOTATION_NAME = re.compile(r"^(?:.*/)?(ds[^/]*)/ann/(\d+)\.jpg\.json$", re.IGNORECASE)
OBJECT_SEPARATOR = "#"  # ``ds/ann/12.jpg.json#hair``: class hair's mask of that annotation
# CelebA's 40 attributes in CelebA's order: the store's attribute columns follow it.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
# Longer spellings a converter may use for the mask file suffixes.
CLASS_ALIASES = {
    "left_brow": "l_brow", "right_brow": "r_brow", "left_eyebrow": "l_brow", "right_eyebrow": "r_brow",
    "left_eye": "l_eye", "right_eye": "r_eye", "eyeglasses": "eye_g", "glasses": "eye_g",
    "left_ear": "l_ear", "right_ear": "r_ear", "earring": "ear_r", "earrings": "ear_r",
    "upper_lip": "u_lip", "lower_lip": "l_lip", "necklace": "neck_l", "clothes": "cloth", "cloths": "cloth",
}


def _key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip()).lower()


def mask_class(title: str) -> str | None:
    """The CelebAMask-HQ class of a Supervisely class title, or None."""
    key = _key(title)
    key = CLASS_ALIASES.get(key, key)
    return key if key in MASK_CLASS_NAMES else None


_ATTRIBUTE_BY_KEY = {_key(name): name for name in CELEBA_ATTRIBUTES}


def index_supervisely(ref: SourceRef, skip_bad: bool = False) -> SourceIndex:
    """Pair each ``ds*/img/{i}.jpg`` with its ``ds*/ann/{i}.jpg.json`` and list the classes its bitmap
    objects name; refuse unknown class titles and images without annotations (or, with
    ``skip_bad``, mark their samples)."""
    from celebamask.sources.archives import list_all

    problems = Problems(skip_bad)
    report = problems.report
    with ref.open_files() as files:
        names = sorted(list_all(files))
        images: dict[int, str] = {}
        annotations: dict[int, str] = {}
        ignored: list[str] = []
        for rel in names:
            for pattern, found in ((IMAGE_NAME, images), (ANNOTATION_NAME, annotations)):
                match = pattern.match(rel)
                if match:
                    index = int(match.group(2))
                    if index in found:
                        report(CelebaMaskError(files.display(rel), f"second file for sample {index} (also {found[index]})"))
                    else:
                        found[index] = rel
                    break
            else:
                if rel != "meta.json":
                    ignored.append(rel)
        if not images:
            raise CelebaMaskError(files.display(""), "no images: looked for ds*/img/<index>.jpg")
        tags_seen = False
        masks: dict[int, dict[str, str]] = {}
        for index, rel in sorted(annotations.items()):
            if index not in images:
                report(CelebaMaskError(files.display(rel), f"annotation with no image ({index}.jpg)"))
                continue
            try:
                document = _load(files, rel)
                masks[index] = {name: f"{rel}{OBJECT_SEPARATOR}{name}" for name in _classes_of(document, files.display(rel))}
                tags_seen = tags_seen or bool(document.get("tags"))
            except CelebaMaskError as error:
                report(error, index)
                masks[index] = {}
        for index in sorted(images):
            if index not in annotations:
                report(CelebaMaskError(files.display(images[index]), "image with no annotation in ann/"), index)
            elif not masks.get(index) and index not in problems.of_sample:
                report(CelebaMaskError(files.display(annotations[index]), "annotation with no bitmap objects"), index)
    samples = [Sample(i, images[i], masks.get(i, {}), problems.of_sample.get(i)) for i in sorted(images)]
    present = {ATTRIBUTE_FILE: ATTRIBUTE_FILE} if tags_seen else {}
    return SourceIndex(ref, samples, present, ignored, problems.listed)


def _load(files: SourceFiles, rel: str) -> dict[str, Any]:
    try:
        document = json.loads(files.read(rel))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CelebaMaskError(files.display(rel), f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("objects", []), list):
        raise CelebaMaskError(files.display(rel), "not a Supervisely annotation (no 'objects' list)")
    return document


def _objects(document: dict[str, Any], where: str) -> list[tuple[int, str, dict[str, Any]]]:
    """(position, class, object) of every bitmap object; an unknown title is an error naming it."""
    found = []
    for position, obj in enumerate(document.get("objects", [])):
        title = str(obj.get("classTitle", ""))
        if obj.get("geometryType", "bitmap") != "bitmap" or "bitmap" not in obj:
            raise CelebaMaskError(where, f"object {position} ({title!r}): not a bitmap object")
        name = mask_class(title)
        if name is None:
            if title.lower() == "background":
                continue
            raise CelebaMaskError(where, f"object {position}: unknown class title {title!r}; "
                                         f"known: {', '.join(MASK_CLASS_NAMES)}")
        found.append((position, name, obj))
    return found


def _classes_of(document: dict[str, Any], where: str) -> list[str]:
    return sorted({name for _, name, _ in _objects(document, where)})


def decode_bitmap(data: str, where: str) -> np.ndarray:
    """A bitmap's ``data``: base64 of a zlib-compressed PNG (or of a plain PNG) → bool array.

    "On" where the pixel is opaque (an alpha channel), a non-zero palette index (Supervisely's
    1-bit palette with index 0 transparent), or a non-zero grey value."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise CelebaMaskError(where, f"bitmap data is not base64: {exc}") from exc
    try:
        png = zlib.decompress(raw)
    except zlib.error:
        png = raw  # plain base64 PNG
    checked = _check_bitmap_png(png, where)
    try:
        with Image.open(io.BytesIO(without_animation(png, checked))) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info
                                                      and image.info["transparency"] != 0):
                return np.asarray(image.convert("RGBA"))[:, :, 3] != 0
            if image.mode == "P":
                return np.asarray(image) != 0
            return np.asarray(image.convert("L")) != 0
    except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, it is this bitmap's problem
        raise CelebaMaskError(where, f"bitmap does not decode as a PNG: {exc}") from exc


def _check_bitmap_png(png: bytes, where: str) -> PngFile:
    """The build's strict PNG checks (chunk CRCs and order, an intact zlib stream holding exactly
    the rows) before Pillow, which stops reading once it has its rows; a bitmap larger than the
    image is refused before its rows are inflated (a decompression bomb)."""
    try:
        checked = read_png(png, where)
        if checked.width > CANVAS or checked.height > CANVAS:
            raise CelebaMaskError(where, f"bitmap is {checked.width}x{checked.height}, larger than the "
                                         f"{CANVAS}x{CANVAS} image")
        inflate_png(checked, where)
    except CelebaMaskError as exc:
        raise CelebaMaskError(where, f"bitmap does not decode as a PNG: {exc.problem}") from exc
    return checked


def class_masks(document: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    """Each class's 512² bool mask from the annotation's bitmap objects (several of one class are
    united); a bitmap that does not decode or lies outside the image is an error naming it."""
    size = document.get("size") or {}
    height, width = int(size.get("height", CANVAS)), int(size.get("width", CANVAS))
    if (height, width) != (CANVAS, CANVAS):
        raise CelebaMaskError(where, f"image size {width}x{height}: expected {CANVAS}x{CANVAS} (Dataset Ninja's scale)")
    canvases: dict[str, np.ndarray] = {}
    for position, name, obj in _objects(document, where):
        what = f"object {position} ({obj.get('classTitle')!r})"
        bitmap = obj["bitmap"]
        try:
            x, y = (int(v) for v in bitmap["origin"])
            data = bitmap["data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CelebaMaskError(where, f"{what}: bitmap needs 'origin' [x, y] and 'data'") from exc
        pixels = decode_bitmap(data, f"{where}: {what}")
        rows, cols = pixels.shape
        if x < 0 or y < 0 or x + cols > width or y + rows > height:
            raise CelebaMaskError(where, f"{what}: bitmap {cols}x{rows} at [{x}, {y}] lies outside the "
                                         f"{width}x{height} image")
        canvas = canvases.setdefault(name, np.zeros((height, width), dtype=bool))
        canvas[y : y + rows, x : x + cols] |= pixels
    return {name: canvas[::2, ::2] for name, canvas in canvases.items()}


def attribute_file(documents: dict[int, dict[str, Any]]) -> bytes:
    """CelebA's attribute list (count, names, ``{i}.jpg ±1 …``) from the images' tags; tags that are
    not CelebA attributes are left out."""
    lines = [str(len(documents)), " ".join(CELEBA_ATTRIBUTES)]
    for index, document in sorted(documents.items()):
        tagged = {_ATTRIBUTE_BY_KEY.get(_key(str(tag.get("name", "")))) for tag in document.get("tags", [])}
        lines.append(f"{index}.jpg " + " ".join(" 1" if name in tagged else "-1" for name in CELEBA_ATTRIBUTES))
    return ("\n".join(lines) + "\n").encode()


def _mask_png(mask: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(out, format="PNG", compress_level=1)
    return out.getvalue()


class SuperviselyFiles(SourceFiles):
    """The files of a Supervisely project as the build reads an official one: ``read`` of
    ``ann/{i}.jpg.json#class`` gives that class's 512² mask as a PNG, of the attribute file the
    list made from the tags; everything else is the stored file."""

    def __init__(self, files: SourceFiles) -> None:
        super().__init__(files.ref)
        self.files = files
        self._cached: tuple[str, dict[str, np.ndarray]] | None = None  # the last annotation's masks

    def display(self, rel: str) -> str:
        return self.files.display(rel.split(OBJECT_SEPARATOR, 1)[0])

    def read(self, rel: str) -> bytes:
        if rel == ATTRIBUTE_FILE:
            return self._attribute_file()
        if OBJECT_SEPARATOR not in rel:
            return self.files.read(rel)
        json_rel, name = rel.split(OBJECT_SEPARATOR, 1)
        if self._cached is None or self._cached[0] != json_rel:
            where = self.files.display(json_rel)
            self._cached = (json_rel, class_masks(_load(self.files, json_rel), where))
        masks = self._cached[1]
        if name not in masks:
            raise CelebaMaskError(self.display(rel), f"no {name} object")
        return _mask_png(masks[name])

    def _attribute_file(self) -> bytes:
        from celebamask.sources.archives import list_all

        documents = {}
        for rel in list_all(self.files):
            match = ANNOTATION_NAME.match(rel)
            if match:
                documents[int(match.group(2))] = _load(self.files, rel)
        return attribute_file(documents)

    def exists(self, rel: str) -> bool:
        return self.files.exists(rel.split(OBJECT_SEPARATOR, 1)[0])

    def list_images(self) -> list[str]:
        from celebamask.sources.archives import list_all

        return [rel for rel in list_all(self.files) if IMAGE_NAME.match(rel)]

    def list_masks(self) -> list[str]:
        return []

    def close(self) -> None:
        self.files.close()
