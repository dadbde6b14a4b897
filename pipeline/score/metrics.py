"""Score one attribution map against every region at once, exactly, in one sort per map.

A map is scored through *atoms*: disjoint pixel sets (the label values of a label map, or the
distinct bit codes of overlapping masks) of which every region is a union. Every metric here is
a sum over pixels, or a count at a rank threshold, so it is computed once per atom and added up
per region: one ``argsort`` and a few ``np.bincount`` calls per map, whatever the region count.

Ties are taken in expectation (the mean over every order of equal values, exactly): a pixel
strictly above a rank threshold counts fully, a pixel equal to it by the fraction of the tie
group the threshold takes; AUC gives tied pairs one half (as ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS: tuple[str, ...] = (
    "pointing_game",
    "relevance_mass",
    "energy_pointing_game",
    "attribution_localisation",
    "top_k_intersection",
    "relevance_rank_accuracy",
    "auc",
)
DEFAULT_K = 1000
DEFAULT_TOLERANCE = 0.0


@dataclass(frozen=True)
class MetricOptions:
    """``tolerance``: pointing-game radius in pixels (Euclidean); ``k``: top-k size (capped at the pixel count)."""

    metrics: tuple[str, ...] = METRICS
    tolerance: float = DEFAULT_TOLERANCE
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
        if self.tolerance < 0 or self.k < 1:
            raise ValueError("tolerance must be >= 0 and k >= 1")


def near_maximum(attribution: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels within ``tolerance`` px (Euclidean) of a maximum of the 2-D map, as a bool mask."""
    at_max = attribution == attribution.max()
    if tolerance <= 0:
        return at_max
    try:
        from scipy.ndimage import distance_transform_edt
    except ModuleNotFoundError as missing:
        raise ModuleNotFoundError("a pointing-game tolerance needs scipy: pip install 'celebamask[score]'",
                                  name=missing.name) from None
    return distance_transform_edt(~at_max) <= tolerance


def score_map(
    attribution: np.ndarray, atoms: np.ndarray, membership: np.ndarray, options: MetricOptions = MetricOptions()
) -> np.ndarray:
    """Scores of one 2-D map: (regions, metrics) float64, NaN where a metric is undefined.

    ``atoms`` (same shape, small non-negative ints) names each pixel's atom; ``membership``
    (regions × atoms, bool) says which atoms make up each region.
    """
    return score_map_and_area(attribution, atoms, membership, options)[0]


def score_map_and_area(
    attribution: np.ndarray, atoms: np.ndarray, membership: np.ndarray, options: MetricOptions = MetricOptions()
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_map` and each region's pixel count (for the summaries' empty counts and chance)."""
    a = attribution.reshape(-1)
    atom = atoms.reshape(-1).astype(np.intp, copy=False)
    count_atoms = membership.shape[1]
    pixels = a.size
    member = membership.astype(np.float64)

    def per_region(weights: np.ndarray | None = None, where: np.ndarray | slice = slice(None)) -> np.ndarray:
        counts = np.bincount(atom[where], weights=None if weights is None else weights[where], minlength=count_atoms)
        return member @ counts.astype(np.float64)

    size = per_region()
    empty = size == 0
    out = np.full((membership.shape[0], len(options.metrics)), np.nan)
    a64 = a.astype(np.float64)
    needs_order = {"top_k_intersection", "relevance_rank_accuracy", "auc"} & set(options.metrics)
    ranks = _RankGroups(a, atom, count_atoms) if needs_order else None
    with np.errstate(divide="ignore", invalid="ignore"):
        for column, name in enumerate(options.metrics):
            if name == "pointing_game":
                value = (per_region(where=near_maximum(attribution, options.tolerance).reshape(-1)) > 0) * 1.0
            elif name in ("relevance_mass", "energy_pointing_game", "attribution_localisation"):
                weights = a64 if name == "relevance_mass" else np.maximum(a64, 0) if name == "energy_pointing_game" \
                    else np.abs(a64)
                total = weights.sum()
                value = per_region(weights) / total if total != 0 else np.full(len(size), np.nan)
            elif name == "top_k_intersection":
                k = min(options.k, pixels)
                value = (member @ ranks.expected_in_top(k)) / k  # type: ignore[union-attr]
            elif name == "relevance_rank_accuracy":
                value = ranks.expected_in_own_top(membership, size) / size  # type: ignore[union-attr]
            else:  # auc: Mann-Whitney U from rank sums, tied pairs counted one half
                rank_sum = member @ ranks.rank_sums()  # type: ignore[union-attr]
                value = (rank_sum - size * (size + 1) / 2) / (size * (pixels - size))
                value[size == pixels] = np.nan
            value = np.asarray(value, dtype=np.float64)
            value[empty] = np.nan
            out[:, column] = value
    return out, size


class _RankGroups:
    """One descending sort of a map, grouped into runs of equal values, with each pixel's atom."""

    def __init__(self, a: np.ndarray, atom: np.ndarray, count_atoms: int) -> None:
        order = np.argsort(a)[::-1]
        values = a[order]
        new_group = np.empty(values.size, dtype=bool)
        new_group[0] = True
        np.not_equal(values[1:], values[:-1], out=new_group[1:])
        self.group = np.cumsum(new_group) - 1  # group id per sorted position, 0 = the largest value
        self.start = np.flatnonzero(new_group)  # first sorted position of each group
        self.length = np.diff(np.append(self.start, values.size))
        self.atom = atom[order]
        self.count_atoms = count_atoms
        self.pixels = values.size
        self._by_atom: np.ndarray | None = None

    def expected_in_top(self, k: int) -> np.ndarray:
        """Per atom, E|top-k ∩ atom| with ties in expectation."""
        g = self.group[k - 1]
        start, length = self.start[g], self.length[g]
        above = np.bincount(self.atom[:start], minlength=self.count_atoms)
        tied = np.bincount(self.atom[start:start + length], minlength=self.count_atoms)
        return above + tied * ((k - start) / length)

    def rank_sums(self) -> np.ndarray:
        """Per atom, the sum of its pixels' ascending ranks (1 = smallest), tied values averaged."""
        mean_rank = self.pixels - (self.start + (self.length - 1) / 2)
        return np.bincount(self.atom, weights=mean_rank[self.group], minlength=self.count_atoms)

    def expected_in_own_top(self, membership: np.ndarray, size: np.ndarray) -> np.ndarray:
        """Per region of n pixels, E|top-n ∩ region|: counts of the region's pixels above and at
        the n-th value, looked up by one sorted (atom, group) key array for all regions."""
        if self._by_atom is None:
            self._by_atom = np.sort(self.atom.astype(np.int64) * len(self.start) + self.group)
        keys = self._by_atom
        groups = len(self.start)
        regions, atoms = np.nonzero(membership)
        n = size[regions].astype(np.int64)
        ok = n > 0
        g = np.zeros_like(n)
        g[ok] = self.group[n[ok] - 1]
        low = np.searchsorted(keys, atoms * groups)
        at = np.searchsorted(keys, atoms * groups + g)
        after = np.searchsorted(keys, atoms * groups + g, side="right")
        expected = (at - low) + (after - at) * ((n - self.start[g]) / self.length[g])
        expected[~ok] = 0
        return np.bincount(regions, weights=expected, minlength=membership.shape[0])
