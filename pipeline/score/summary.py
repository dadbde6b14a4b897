"""Summaries of scores that can go in a paper: per region and metric (and per split, and per
attribute present / absent), the mean over the scored samples, how many were scored, empty or
undefined, a seeded percentile-bootstrap interval and the chance baseline.

- **Empty** (the region has no pixel in that sample) and **undefined** (e.g. Σ a = 0, or AUC of a
  region covering the whole image) scores are NaN: left out of the mean, never counted as 0 or 1.
- **Bootstrap**: ``resamples`` draws, with replacement, of the scored values of a (region, subset);
  the percentile interval of their means. The draws come from ``numpy.random.default_rng`` seeded
  by ``(seed, crc32 of which rows were scored)``, so an interval depends on the seed and its own
  scores only, not on which other regions or metrics were summarised.
- **Chance**: the expected score of a map whose pixels are exchangeable (i.i.d. noise, or a map
  of equal values with ties in expectation). Exactly, per sample, the region's area fraction
  ``f = n / pixels`` for ``relevance_mass``, ``energy_pointing_game``, ``attribution_localisation``,
  ``top_k_intersection``, ``relevance_rank_accuracy`` and ``pointing_game`` (tolerance 0: the
  maximum is anywhere with equal chance); 0.5 for ``auc``. The baseline of a mean is the mean of
  ``f`` over the same scored samples. A pointing game with a tolerance has no closed form (it
  depends on the region's shape): NaN.
"""

from __future__ import annotations

import csv
import json
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from celebamask.errors import CelebaMaskError

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95
AREA_FRACTION_METRICS = ("relevance_mass", "energy_pointing_game", "attribution_localisation",
                         "top_k_intersection", "relevance_rank_accuracy")
SCORE_COLUMNS = ("sample_id", "region", "metric", "value")
_BATCH = 256  # bootstrap resamples drawn at once (memory: _BATCH × scored samples)


@dataclass(frozen=True)
class SummaryRow:
    """One line of a summary: the scores of ``region`` × ``metric`` over one subset of samples."""

    region: str
    metric: str
    split: str  # "all", or the split's name
    attribute: str  # "" (every sample), or the attribute this subset is split by
    present: str  # "" / "present" / "absent"
    samples: int  # samples in the subset
    scored: int  # finite scores: the mean's n
    empty: int | None  # the region has no pixel (None: areas unknown)
    undefined: int | None  # NaN although the region is not empty (Σ a = 0, AUC of the whole image)
    mean: float
    ci_low: float
    ci_high: float
    chance: float
    confidence: float
    resamples: int
    seed: int


SUMMARY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SummaryRow))


@dataclass(frozen=True)
class Subset:
    """Samples (bool per sample) and the regions (bool per region) a block of the summary covers."""

    split: str
    attribute: str
    present: str
    samples: np.ndarray
    regions: np.ndarray


@dataclass
class Summary:
    rows: list[SummaryRow]
    notes: dict[str, Any]

    def format(self) -> str:
        """The table as text, one line per region × metric × subset."""
        show_split = any(r.split != "all" for r in self.rows)
        show_attribute = any(r.attribute for r in self.rows)
        width = max([len("region"), *(len(r.region) for r in self.rows)])
        level = f"{self.rows[0].confidence:.0%} CI" if self.rows else "CI"
        head = f"{'region':<{width}}" + ("  split" if show_split else "") + \
            (f"  {'attribute':<26}" if show_attribute else "") + \
            f"  {'metric':<24}  {'mean':>7}  {level:>17}  {'scored':>6}  {'empty':>5}  {'undef':>5}  {'chance':>6}"
        lines = [head]
        for r in self.rows:
            subset = f"{r.attribute} {r.present}" if r.attribute else "(all)"
            lines.append(f"{r.region:<{width}}" + (f"  {r.split:<5}" if show_split else "")
                         + (f"  {subset:<26}" if show_attribute else "")
                         + f"  {r.metric:<24}  {_num(r.mean, 7)}  [{_num(r.ci_low, 7)}, {_num(r.ci_high, 7)}]"
                         + f"  {r.scored:>6}  {_count(r.empty):>5}  {_count(r.undefined):>5}  {_num(r.chance, 6)}")
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        """``.csv`` (the columns of :data:`SUMMARY_COLUMNS`; NaN as ``nan``) or ``.json`` (rows and notes)."""
        target = os.fspath(path)
        if target.endswith(".csv"):
            with open(target, "w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(SUMMARY_COLUMNS)
                for row in self.rows:
                    writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v
                                     for v in asdict(row).values()])
        elif target.endswith(".json"):
            rows = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(r).items()}
                    for r in self.rows]
            Path(target).write_text(json.dumps({"notes": self.notes, "summary": rows}, indent=1))
        else:
            raise CelebaMaskError(target, "summary output must end in .csv or .json")


def _num(value: float, width: int) -> str:
    return f"{'nan':>{width}}" if math.isnan(value) else f"{value:{width}.4f}"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def chance_of(metric: str, fraction: np.ndarray, tolerance: float = 0.0) -> float:
    """The exact chance mean of ``metric`` over samples whose region covers ``fraction`` of the image."""
    if len(fraction) == 0:
        return math.nan
    if metric == "auc":
        return 0.5
    if metric in AREA_FRACTION_METRICS or (metric == "pointing_game" and tolerance == 0):
        return float(np.mean(fraction))
    return math.nan


def bootstrap_interval(values: np.ndarray, rng: np.random.Generator, resamples: int = DEFAULT_RESAMPLES,
                       confidence: float = DEFAULT_CONFIDENCE) -> np.ndarray:
    """Percentile intervals of the mean of each column of ``values`` (n × K, all finite): one set
    of ``resamples`` draws of n rows with replacement, shared by the columns. (2, K); NaN if n < 2."""
    n, columns = values.shape
    if n < 2:
        return np.full((2, columns), np.nan)
    means = np.empty((resamples, columns))
    for start in range(0, resamples, _BATCH):
        b = min(_BATCH, resamples - start)
        draws = rng.integers(0, n, size=(b, n))
        counts = np.bincount((draws + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        means[start:start + b] = counts @ values / n
    tail = (1 - confidence) / 2
    return np.quantile(means, [tail, 1 - tail], axis=0)


def summarize_arrays(
    values: np.ndarray,
    area: np.ndarray | None,
    regions: Sequence[str],
    metrics: Sequence[str],
    subsets: Sequence[Subset],
    *,
    pixels: int | None,
    tolerance: float = 0.0,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[SummaryRow]:
    """The summary rows of ``values[sample, region, metric]`` (NaN = not scored) over each subset.
    ``area[sample, region]`` (pixels) gives the empty counts and the chance; without it they are unknown."""
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError("confidence must be in (0, 1) and resamples >= 1")
    out: list[SummaryRow] = []
    for split in dict.fromkeys(s.split for s in subsets):  # split, then region, then subset: a readable table
        for r in range(len(regions)):
            for subset in (s for s in subsets if s.split == split and s.regions[r]):
                chosen = np.flatnonzero(subset.samples)
                out.extend(_region_rows(values[chosen, r, :], None if area is None else area[chosen, r], regions[r],
                                        metrics, subset, pixels, tolerance, resamples, seed, confidence))
    return out


def _region_rows(values: np.ndarray, area: np.ndarray | None, region: str, metrics: Sequence[str], subset: Subset,
                 pixels: int | None, tolerance: float, resamples: int, seed: int,
                 confidence: float) -> list[SummaryRow]:
    """Rows of one region: metrics sharing their scored samples share one set of bootstrap draws."""
    finite = ~np.isnan(values)
    empty = None if area is None else area == 0
    intervals = np.full((2, len(metrics)), np.nan)
    patterns: dict[bytes, list[int]] = {}
    for m in range(len(metrics)):
        patterns.setdefault(np.packbits(finite[:, m]).tobytes() + bytes([len(finite) % 8]), []).append(m)
    for pattern, columns in patterns.items():
        rows = finite[:, columns[0]]
        rng = np.random.default_rng([seed, zlib.crc32(pattern)])
        intervals[:, columns] = bootstrap_interval(values[rows][:, columns], rng, resamples, confidence)
    result = []
    for m, metric in enumerate(metrics):
        scored = finite[:, m]
        n = int(scored.sum())
        fraction = None if area is None or not pixels else area[scored] / pixels
        result.append(SummaryRow(
            region=region, metric=metric, split=subset.split, attribute=subset.attribute, present=subset.present,
            samples=len(values), scored=n,
            empty=None if empty is None else int(empty.sum()),
            undefined=None if empty is None else int((~scored & ~empty).sum()),
            mean=float(values[scored, m].mean()) if n else math.nan,
            ci_low=float(intervals[0, m]), ci_high=float(intervals[1, m]),
            chance=(0.5 if n and metric == "auc" else math.nan) if fraction is None
            else chance_of(metric, fraction, tolerance),
            confidence=confidence, resamples=resamples, seed=seed))
    return result


def summarize(
    scores: Any,
    store: Any = None,
    *,
    splits: Sequence[str] | None = None,
    by_attributes: Sequence[str] = (),
    exclude_flagged: bool = False,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    tolerance: float | None = None,
) -> Summary:
    """Summarise a :class:`~celebamask.score.run.ScoreResult` (or :func:`read_scores`' table).

    ``store`` (open or a path) is needed for ``splits`` (one block per named split), the
    attribute blocks (a region scoring an attribute, e.g. ``Eyeglasses``, is also summarised over
    the samples with and without it; ``by_attributes`` splits every region so), ``exclude_flagged``
    (drop the samples configs/known_issues.toml flags) and, for a table read from CSV, the areas.
    ``tolerance``: the pointing game's (default: the scores' provenance, else 0); > 0 has no chance value.
    """
    from celebamask.read.regions import ATTRIBUTE_REGIONS_PATH, load_attribute_regions

    opened = _open(store)
    values, area, rows = scores.values, scores.area, _store_rows(scores, opened)
    keep = np.ones(len(values), dtype=bool)
    notes: dict[str, Any] = {"samples": len(values), "seed": seed, "resamples": resamples, "confidence": confidence,
                             "bootstrap": "percentile, scored values resampled with replacement",
                             "chance": "exchangeable map: region area fraction (pointing game at tolerance 0, "
                                       "mass, energy, localisation, top-k, rank accuracy), 0.5 for auc"}
    if exclude_flagged:
        from celebamask.read.flags import unflagged_rows

        _need(opened, "exclude flagged samples")
        keep &= unflagged_rows(opened.group, len(opened))[rows]
        notes["excluded_flagged"] = int((~keep).sum())
    source = getattr(scores.regions, "source", None) or getattr(scores, "region_source", "label")
    if area is None and opened is not None and source == "label":
        area = region_areas(opened, scores.regions, rows)
    attributes = list(getattr(scores.regions, "attributes", None) or ())
    if not attributes:
        known = load_attribute_regions(ATTRIBUTE_REGIONS_PATH).regions
        attributes = [name if name in known else None for name in _names(scores.regions)]
    names = _names(scores.regions)
    everywhere = np.ones(len(names), dtype=bool)
    blocks: list[tuple[str, np.ndarray]] = [("all", keep)]
    if splits:
        _need(opened, "split by --split")
        codes = opened.annotation("split")[rows]
        split_names = opened.annotation_names("split")
        blocks = []
        for split in splits:
            if split not in split_names:
                raise CelebaMaskError(opened.location, f"unknown split {split!r}; it has: {', '.join(split_names)}")
            blocks.append((split, keep & (codes == split_names.index(split))))
    subsets: list[Subset] = []
    have_attributes = opened is not None and "attributes" in opened.group
    wanted = list(dict.fromkeys([*(a for a in attributes if a and have_attributes), *by_attributes]))
    for split, samples in blocks:
        subsets.append(Subset(split, "", "", samples, everywhere))
        for attribute in wanted:
            _need(opened, f"split by attribute {attribute}")
            present = opened.attribute(attribute)[rows]
            applies = everywhere if attribute in by_attributes else np.array([a == attribute for a in attributes])
            subsets.append(Subset(split, attribute, "present", samples & present, applies))
            subsets.append(Subset(split, attribute, "absent", samples & ~present, applies))
    provenance = getattr(scores, "provenance", {}) or {}
    pixels = _pixels(provenance, opened)
    summary_rows = summarize_arrays(values, area, names, list(scores.metrics), subsets, pixels=pixels,
                                    tolerance=float(provenance.get("tolerance", 0.0) or 0.0) if tolerance is None
                                    else tolerance,
                                    resamples=resamples, seed=seed, confidence=confidence)
    notes.update({"splits": list(splits) if splits else ["all"], "by_attributes": list(by_attributes),
                  "region_source": provenance.get("region_source", source), "pixels": pixels})
    return Summary(summary_rows, notes)


def _open(store: Any) -> Any:
    if store is None or hasattr(store, "labels"):
        return store
    from celebamask.read.reader import open_store

    return open_store(store)


def _need(store: Any, what: str) -> None:
    if store is None:
        raise ValueError(f"to {what}, pass the store the scores came from")


def _names(regions: Any) -> list[str]:
    return list(getattr(regions, "names", regions))


def _store_rows(scores: Any, store: Any) -> np.ndarray:
    """Each scored sample's store row (a table read from CSV names samples by id only)."""
    rows = getattr(scores, "rows", None)
    if rows is not None or store is None:
        return rows
    ids = np.asarray(store.sample_ids[:])
    where = {int(s): r for r, s in enumerate(ids.tolist())}
    missing = [int(s) for s in scores.sample_ids if int(s) not in where]
    if missing:
        raise CelebaMaskError(store.location, f"sample id {missing[0]} of the scores is not in the store")
    return np.array([where[int(s)] for s in scores.sample_ids], dtype=np.int64)


def _pixels(provenance: dict[str, Any], store: Any) -> int | None:
    grid = provenance.get("grid")
    if grid:
        return int(grid[0]) * int(grid[1])
    if store is not None:
        return int(store.labels.shape[1]) * int(store.labels.shape[2])
    return None


def region_areas(store: Any, regions: Any, rows: np.ndarray) -> np.ndarray | None:
    """Pixels of each painted (label-source) region per row from the store's ``class_area``: a
    region is a union of classes of a partition, so its area is their sum. None where the store
    cannot say. (Unions of overlapping masks have no such sum: a masks-source table has no areas.)"""
    if "class_area" not in store.group:
        return None
    from celebamask.read.regions import ATTRIBUTE_REGIONS_PATH, load_attribute_regions

    known = load_attribute_regions(ATTRIBUTE_REGIONS_PATH).regions
    class_area = store.annotation("class_area")[rows]
    columns = store.annotation_names("class_area")
    parts_of = getattr(regions, "classes", None) or [known.get(n, tuple(n.split("+"))) for n in _names(regions)]
    out = np.zeros((len(rows), len(parts_of)), dtype=np.int64)
    for r, parts in enumerate(parts_of):
        for part in parts:
            if part not in columns:
                return None
            out[:, r] += class_area[:, columns.index(part)]
    return out


@dataclass
class ScoreTable:
    """Scores read back from a long CSV: ``values[sample, region, metric]`` with no areas."""

    values: np.ndarray
    sample_ids: np.ndarray
    regions: tuple[str, ...]
    metrics: tuple[str, ...]
    region_source: str = "label"
    area: np.ndarray | None = None
    rows: np.ndarray | None = None
    provenance: dict[str, Any] | None = None


def read_scores(path: str | Path, region_source: str = "label") -> ScoreTable:
    """A scores CSV with the header ``sample_id,region,metric,value`` (``celebamask score --out``):
    one row per sample × region × metric, any order; an empty value or ``nan`` is NaN.
    ``region_source``: what the scores were made against (``masks``: no areas from the store)."""
    location = os.fspath(path)
    try:
        with open(location, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != SCORE_COLUMNS:
                raise CelebaMaskError(location, f"header must be {','.join(SCORE_COLUMNS)}, "
                                                f"not {','.join(header or [])}")
            records = list(reader)
    except OSError as exc:
        raise CelebaMaskError(location, f"cannot read scores: {exc.strerror or exc}") from exc
    samples: dict[int, int] = {}
    regions: dict[str, int] = {}
    metrics: dict[str, int] = {}
    cells = []
    for line, record in enumerate(records, start=2):
        if len(record) != 4:
            raise CelebaMaskError(location, f"line {line}: {len(record)} fields, not 4")
        try:
            sample, value = int(record[0]), float(record[3]) if record[3].strip() else math.nan
        except ValueError:
            raise CelebaMaskError(location, f"line {line}: sample_id must be an integer and value a number") from None
        cells.append((samples.setdefault(sample, len(samples)), regions.setdefault(record[1], len(regions)),
                      metrics.setdefault(record[2], len(metrics)), value))
    values = np.full((len(samples), len(regions), len(metrics)), np.nan)
    seen = np.zeros(values.shape, dtype=bool)
    for s, r, m, v in cells:
        if seen[s, r, m]:
            raise CelebaMaskError(location, f"sample {list(samples)[s]}, {list(regions)[r]}, {list(metrics)[m]} "
                                            "appears twice")
        seen[s, r, m], values[s, r, m] = True, v
    if not seen.all():
        s, r, m = (int(i[0]) for i in np.nonzero(~seen))
        raise CelebaMaskError(location, f"no score for sample {list(samples)[s]}, {list(regions)[r]}, "
                                        f"{list(metrics)[m]}")
    return ScoreTable(values, np.array(list(samples), dtype=np.int64), tuple(regions), tuple(metrics), region_source)
