"""Class conventions (ids, names, colours, paint order) loaded from the TOML files in ``configs/``.

The paint order decides the label wherever masks overlap, so it is data the user can read and
choose, never something implied by code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from celebamask.dataset import MASK_CLASS_NAMES
from celebamask.errors import CelebaMaskError


def _config_dir() -> Path:
    """``configs/`` ships inside the package in a wheel (``celebamask/configs``); a source checkout
    (the editable install of ``make venv``) keeps it beside the package."""
    package = Path(__file__).resolve().parent
    return package / "configs" if (package / "configs").is_dir() else package.parent / "configs"


CONFIG_DIR = _config_dir()
PRESETS: dict[str, str] = {
    "default": "celebamask_hq.toml",
    "face-parsing": "face_parsing.toml",
    "official": "official.toml",
}
LABEL_FILL = 255  # the store's fill value for labels; never a class id
MASK_SIZE = 512  # CelebAMask-HQ masks are drawn at 512x512


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    color: tuple[int, int, int]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "color": list(self.color)}


@dataclass(frozen=True)
class ClassConfig:
    """A validated class convention; ``source_text`` is kept so the store can record it verbatim."""

    name: str
    path: str
    size: int
    background: int
    classes: tuple[ClassInfo, ...]
    paint_order: tuple[str, ...]
    source_text: str

    def class_id(self, name: str) -> int:
        for info in self.classes:
            if info.name == name:
                return info.id
        raise KeyError(f"unknown class {name!r}; known: {', '.join(c.name for c in self.classes)}")

    @cached_property  # read for every sample a worker builds
    def paint_ids(self) -> tuple[int, ...]:
        return tuple(self.class_id(name) for name in self.paint_order)

    @property
    def max_id(self) -> int:
        return max(info.id for info in self.classes)


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A preset name (``default``, ``face-parsing``, ``official``) or a path to a TOML file."""
    key = str(name_or_path)
    if key in PRESETS:
        return CONFIG_DIR / PRESETS[key]
    path = Path(key)
    if path.is_file():
        return path
    raise CelebaMaskError(
        key, f"no such config: give a preset ({', '.join(PRESETS)}) or a path to a .toml file"
    )


def load_config(name_or_path: str | Path = "default") -> ClassConfig:
    path = resolve_config_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CelebaMaskError(path, f"cannot read config: {exc}") from exc
    return parse_config(data, text, str(path))


def parse_config(data: dict[str, Any], text: str, where: str) -> ClassConfig:
    def fail(message: str) -> CelebaMaskError:
        return CelebaMaskError(where, f"invalid config: {message}")

    try:
        raw_classes = data["classes"]
        paint_order = tuple(data["paint_order"])
        background = int(data["background"])
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"needs 'classes', 'paint_order' and 'background' ({exc})") from exc
    size = int(data.get("size", MASK_SIZE))
    if size < 1:
        raise fail(f"size must be positive, got {size}")
    classes = []
    for entry in raw_classes:
        try:
            color = tuple(int(c) for c in entry["color"])
            info = ClassInfo(int(entry["id"]), str(entry["name"]), color)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise fail(f"each [[classes]] needs id, name, color ({exc})") from exc
        if len(info.color) != 3 or not all(0 <= c <= 255 for c in info.color):
            raise fail(f"class {info.name!r}: color must be three values 0..255")
        if not 0 <= info.id < LABEL_FILL:
            raise fail(f"class {info.name!r}: id {info.id} outside 0..{LABEL_FILL - 1}")
        classes.append(info)
    ids = [c.id for c in classes]
    names = [c.name for c in classes]
    if len(set(ids)) != len(ids):
        raise fail("class ids are not unique")
    if len(set(names)) != len(names):
        raise fail("class names are not unique")
    if background not in ids:
        raise fail(f"background id {background} is not one of the classes")
    if len(set(paint_order)) != len(paint_order):
        raise fail("paint_order names a class twice")
    background_name = names[ids.index(background)]
    for name in paint_order:
        if name not in names:
            raise fail(f"paint_order names {name!r}, which is not in [[classes]]")
        if name not in MASK_CLASS_NAMES:
            raise fail(f"paint_order names {name!r}, which is not a CelebAMask-HQ mask class")
    missing = [n for n in MASK_CLASS_NAMES if n not in paint_order]
    if missing:
        raise fail(f"paint_order leaves out {', '.join(missing)}: every mask class must be painted")
    unpainted = [n for n in names if n not in paint_order and n != background_name]
    if unpainted:
        raise fail(f"classes {', '.join(unpainted)} are neither painted nor the background")
    return ClassConfig(
        name=str(data.get("name", Path(where).stem)),
        path=where,
        size=size,
        background=background,
        classes=tuple(sorted(classes, key=lambda c: c.id)),
        paint_order=paint_order,
        source_text=text,
    )
