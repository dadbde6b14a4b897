"""Pictures of stored samples, to look at before trusting numbers.

A label map holds class ids 0 … 18, which any image viewer shows as black. A preview paints each
class in the colour of the store's class table, next to the image and an overlay of both, with a
legend naming every colour, so a wrong class order or an empty map is seen at a glance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from celebamask.config import LABEL_FILL
from celebamask.errors import CelebaMaskError
from celebamask.read.reader import CelebAMaskStore

PANELS = ("image", "label", "overlay")
UNPAINTED_PANELS = ("image", "own masks (unpainted)", "overlay")
MIXED_COLOR = (255, 255, 255)  # legend only: overlapping masks show the mean of their colours
OTHER_COLOR = (96, 96, 96)  # classes left out with ``classes=``
UNWRITTEN_COLOR = (255, 0, 255)  # label fill value: never written by the build
OVERLAY_ALPHA = 0.5
GAP = 6
TEXT_HEIGHT = 18
SWATCH = 12


def render_preview(
    store: CelebAMaskStore, rows: Sequence[int], classes: Sequence[str] | None = None, panel: int = 256,
    painted: bool = True,
) -> Image.Image:
    """One line per row: image | colour label | overlay, and a legend of the coloured classes.

    ``classes`` limits which classes are coloured (others are grey in the label panel and
    untouched in the overlay); by default every class is, and the overlay leaves out background.
    ``painted=False`` shows each class's own mask (from ``masks``) instead of the painted label:
    where masks overlap, the pixel takes the mean colour of the classes that are on, so what the
    paint order hid (the glasses' arms under the hair) is seen.
    """
    if not rows:
        raise ValueError("render_preview needs at least one row")
    coloured = _coloured_ids(store, classes)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:] = OTHER_COLOR
    palette[LABEL_FILL] = UNWRITTEN_COLOR
    for info in store.classes:
        if info.id in coloured:
            palette[info.id] = info.color
    overlaid = np.zeros(256, dtype=bool)
    overlaid[sorted(coloured - ({store.background} if classes is None else set()))] = True
    overlaid[LABEL_FILL] = True

    font = _font()
    legend = _legend_entries(store, coloured, classes is not None)
    samples = [store[row] for row in rows]
    if not painted:
        colour_bits = _mask_colours(store, coloured, palette)  # raises first if the store has no masks
        legend.append((MIXED_COLOR, "mixed: masks overlap"))
    if any((np.asarray(s["label"]) == LABEL_FILL).any() for s in samples):
        legend.append((UNWRITTEN_COLOR, f"{LABEL_FILL} not written"))
    line_height = TEXT_HEIGHT + panel + GAP
    grid_width = len(PANELS) * (panel + GAP)
    legend_width = 8 + SWATCH + max(int(font.getlength(text)) for _, text in legend) + GAP
    height = TEXT_HEIGHT + max(len(rows) * line_height, len(legend) * TEXT_HEIGHT + GAP)
    canvas = Image.new("RGB", (GAP + grid_width + legend_width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, title in enumerate(PANELS if painted else UNPAINTED_PANELS):
        draw.text((GAP + k * (panel + GAP), 2), title, fill=(0, 0, 0), font=font)

    for line, (row, sample) in enumerate(zip(rows, samples)):
        top = TEXT_HEIGHT + line * line_height
        image = np.asarray(Image.fromarray(np.asarray(sample["image"])).resize((panel, panel), Image.Resampling.LANCZOS))
        label = np.asarray(Image.fromarray(np.asarray(sample["label"])).resize((panel, panel), Image.Resampling.NEAREST))
        colours, shown = palette[label], overlaid[label]
        if not painted:
            bits = _resized_bits(store.mask_bits_of(row), panel)
            colours, on = colour_bits(bits)
            written = label != LABEL_FILL  # an unwritten row's masks are all 0: say so, as for the label
            colours = np.where(written[:, :, None], colours, np.uint8(UNWRITTEN_COLOR))
            shown = ~written | on | ((bits == 0) & overlaid[store.background])  # background: if asked for
        blend = np.where(
            shown[:, :, None],
            (image * (1 - OVERLAY_ALPHA) + colours * OVERLAY_ALPHA).round().astype(np.uint8),
            image,
        )
        draw.text((GAP, top + 2), f"sample {sample['sample_id']} (row {row})", fill=(0, 0, 0), font=font)
        for k, pixels in enumerate((image, colours, blend)):
            canvas.paste(Image.fromarray(pixels), (GAP + k * (panel + GAP), top + TEXT_HEIGHT))

    left = GAP + grid_width
    for k, (colour, text) in enumerate(legend):
        y = TEXT_HEIGHT + GAP + k * TEXT_HEIGHT
        draw.rectangle([left, y + 2, left + SWATCH, y + 2 + SWATCH], fill=tuple(colour), outline=(0, 0, 0))
        draw.text((left + SWATCH + 6, y), text, fill=(0, 0, 0), font=font)
    return canvas


def _resized_bits(bits: np.ndarray, panel: int) -> np.ndarray:
    """Mask bits nearest-resized as the label is (PIL mode I holds the 18 bits exactly)."""
    resized = Image.fromarray(bits.astype(np.int32), mode="I").resize((panel, panel), Image.Resampling.NEAREST)
    return np.asarray(resized).astype(np.uint32)


def _mask_colours(store: CelebAMaskStore, coloured: set[int], palette: np.ndarray) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """bits → (RGB, where a coloured class is on): the mean colour of the coloured classes that
    are on; where none is, the background's colour (no mask on) or grey (only other classes on)."""
    names = store.mask_bits  # raises the one line if the store was built with --no-masks
    by_name = {info.name: info for info in store.classes}
    wanted = [(k, np.asarray(by_name[name].color, dtype=np.float64)) for k, name in enumerate(names)
              if name in by_name and by_name[name].id in coloured]
    empty = palette[store.background].astype(np.float64)

    def colour(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = np.zeros((*bits.shape, 3))
        count = np.zeros(bits.shape)
        for k, rgb in wanted:
            on = (bits >> np.uint32(k)) & np.uint32(1) == 1
            total[on] += rgb
            count[on] += 1
        others = np.where((bits == 0)[:, :, None], empty, np.asarray(OTHER_COLOR, dtype=np.float64))
        mean = np.where((count > 0)[:, :, None], total / np.maximum(count, 1)[:, :, None], others)
        return mean.round().astype(np.uint8), count > 0

    return colour


def rows_of_sample_ids(store: CelebAMaskStore, sample_ids: Sequence[int]) -> list[int]:
    """Rows holding the given dataset indices (the N of N.jpg); an index not in the store is an error."""
    stored = store._sample_id_values()
    rows = []
    for sample_id in sample_ids:
        row = int(np.searchsorted(stored, sample_id))  # rows ascend by sample id
        if row >= len(stored) or stored[row] != sample_id:
            span = f"{stored[0]} … {stored[-1]}" if len(stored) else "none"
            raise CelebaMaskError(store.location, f"no sample {sample_id} in the store (its sample ids: {span})")
        rows.append(row)
    return rows


def random_rows(store: CelebAMaskStore, count: int, seed: int | None = None) -> list[int]:
    rng = np.random.default_rng(seed)
    return sorted(int(r) for r in rng.choice(len(store), size=min(count, len(store)), replace=False))


def _coloured_ids(store: CelebAMaskStore, classes: Sequence[str] | None) -> set[int]:
    if classes is None:
        return {info.id for info in store.classes}
    try:
        return {store.class_id(name) for name in classes}
    except KeyError as exc:
        raise CelebaMaskError(store.location, str(exc.args[0])) from None


def _legend_entries(store: CelebAMaskStore, coloured: set[int], limited: bool) -> list[tuple[tuple[int, ...], str]]:
    entries: list[tuple[tuple[int, ...], str]] = [(info.color, f"{info.id:>2} {info.name}") for info in sorted(store.classes, key=lambda c: c.id)
               if info.id in coloured]
    if limited:
        entries.append((OTHER_COLOR, "other classes"))
    return entries


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=13)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()
