"""Score one attribution map against every region at once, exactly, in one sort per map.

A map is scored through *atoms*: disjoint pixel sets (the label values of a label map, or the
distinct bit codes of overlapping masks) of which every region is a union. Every metric here is
a sum over pixels, or a count at a rank threshold, so it is computed once per atom and added up
per region: one sort and a few ``np.bincount`` calls per map, whatever the region count.

The sort: a float32 map is sorted as one uint64 key per pixel, the value's bits made to order as
the floats do (high bits) and the pixel's atom (low bits): a plain sort of integers, a third
faster than ``argsort`` and its two gathers, with every value kept exactly. Other dtypes take
``argsort``. Every rank threshold (top-k, each region's own top-n, the maximum) is then a
position in that order, and each atom's pixels above every threshold come from one ``bincount``
per stretch between consecutive thresholds: at most one pass over the sorted atoms in all.

Ties are taken in expectation (the mean over every order of equal values, exactly): a pixel
strictly above a rank threshold counts fully, a pixel equal to it by the fraction of the tie
group the threshold takes; AUC gives tied pairs one half (as ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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
_MASSES = ("relevance_mass", "energy_pointing_game", "attribution_localisation")


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
    a = np.ascontiguousarray(attribution).reshape(-1)
    atom = atoms.reshape(-1).astype(np.intp, copy=False)
    count_atoms = membership.shape[1]
    pixels = a.size
    member = membership.astype(np.float64)
    size = member @ np.bincount(atom, minlength=count_atoms)
    wanted = set(options.metrics)
    ranked = wanted & {"top_k_intersection", "relevance_rank_accuracy", "auc"} or \
        ("pointing_game" in wanted and options.tolerance <= 0)
    order = _Order(a, atom, count_atoms) if ranked else None
    masses = _masses(a, atom, count_atoms, wanted, member)
    top_k = min(options.k, pixels)
    own = np.minimum(size, pixels).astype(np.int64)  # each region's own top-n (0 for an empty region)
    tops: dict[str, np.ndarray] = {}
    if order is not None:  # every rank threshold, counted in one pass
        wanted_tops = {"top_k_intersection": np.array([top_k])} if "top_k_intersection" in wanted else {}
        if "relevance_rank_accuracy" in wanted:
            wanted_tops["relevance_rank_accuracy"] = np.maximum(own, 1)
        tops = order.expected_in_tops(wanted_tops)
    out = np.full((membership.shape[0], len(options.metrics)), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for column, name in enumerate(options.metrics):
            if name == "pointing_game":
                hit = order.at_maximum() if options.tolerance <= 0 and order is not None else np.bincount(
                    atom[near_maximum(attribution, options.tolerance).reshape(-1)], minlength=count_atoms)
                value = (member @ hit > 0) * 1.0
            elif name in _MASSES:
                value = masses[name]
            elif name == "top_k_intersection":
                value = (member @ tops[name][0]) / top_k
            elif name == "relevance_rank_accuracy":
                value = (member * tops[name]).sum(axis=1) / size
            else:  # auc: Mann-Whitney U from rank sums, tied pairs counted one half
                rank_sum = member @ order.rank_sums()  # type: ignore[union-attr]
                value = (rank_sum - size * (size + 1) / 2) / (size * (pixels - size))
                value[size == pixels] = np.nan
            value = np.asarray(value, dtype=np.float64)
            value[size == 0] = np.nan
            out[:, column] = value
    return out, size


def _masses(a: np.ndarray, atom: np.ndarray, count_atoms: int, wanted: set[str], member: np.ndarray) -> dict[str, np.ndarray]:
    """Per region Σa[s]/Σa, Σa⁺[s]/Σa⁺, Σ|a|[s]/Σ|a| (NaN where the whole is 0), from at most two
    weighted bincounts: Σa and Σa⁺ (a map with no negative value needs only one)."""
    if not wanted & set(_MASSES):
        return {}
    a64 = a.astype(np.float64)
    total = np.bincount(atom, weights=a64, minlength=count_atoms)
    positive = np.bincount(atom, weights=np.maximum(a64, 0), minlength=count_atoms) if a64.min() < 0 else total
    parts = {"relevance_mass": total, "energy_pointing_game": positive,
             "attribution_localisation": positive if positive is total else 2 * positive - total}
    out = {}
    for name in _MASSES:
        whole = parts[name].sum()
        out[name] = member @ parts[name] / whole if whole != 0 else np.full(member.shape[0], np.nan)
    return out


@lru_cache(maxsize=4)
def _ascending_ranks(pixels: int) -> np.ndarray:
    return np.arange(1, pixels + 1, dtype=np.float64)


class _Order:
    """The map's pixels in ascending order of value: ``value`` (anything that compares as the map
    does) and ``atom`` per sorted position, and the runs of equal values (``start``, ``length``)."""

    def __init__(self, a: np.ndarray, atom: np.ndarray, count_atoms: int) -> None:
        self.pixels, self.count_atoms = a.size, count_atoms
        if a.dtype == np.float32:
            bits = max(1, (count_atoms - 1).bit_length())
            key = _ordered_bits(a).astype(np.uint64)
            key <<= np.uint64(bits)
            key |= atom.astype(np.int64, copy=False).view(np.uint64)
            key.sort()
            self.value = key >> np.uint64(bits)
            key &= np.uint64((1 << bits) - 1)
            self.atom = key.view(np.int64)
        else:
            order = np.argsort(a)
            self.value, self.atom = a[order], atom[order]
        change = np.empty(self.pixels, dtype=bool)
        change[0] = True
        np.not_equal(self.value[1:], self.value[:-1], out=change[1:])
        self.tie_free = bool(change.all())
        if not self.tie_free:  # runs of equal values (a tie-free map's runs are its pixels)
            self.start = np.flatnonzero(change)
            self.length = np.diff(self.start, append=self.pixels)

    def _group(self, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and one-past-last sorted position of the run of equal values holding each ``position``."""
        if self.tie_free:
            return position, position + 1
        g = np.searchsorted(self.start, position, side="right") - 1
        return self.start[g], self.start[g] + self.length[g]

    def _counts_from(self, positions: np.ndarray) -> np.ndarray:
        """(len(positions), atoms): each atom's pixels at sorted positions ≥ each position, by one
        bincount per stretch between consecutive distinct positions, summed from the top."""
        edges, inverse = np.unique(positions, return_inverse=True)
        bounds = np.append(edges, self.pixels)
        stretches = np.stack([np.bincount(self.atom[lo:hi], minlength=self.count_atoms)
                              for lo, hi in zip(bounds[:-1], bounds[1:])])
        return np.cumsum(stretches[::-1], axis=0)[::-1][inverse.reshape(-1)]

    def expected_in_tops(self, tops: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """For each name's top sizes k (1 ≤ k ≤ pixels): per atom, E|top-k ∩ atom| with ties in
        expectation, as (len(k), atoms). All sizes are counted together in one pass."""
        if not tops:
            return {}
        sizes = np.concatenate(list(tops.values())).astype(np.int64)
        first = self.pixels - sizes  # the top-k are the sorted positions first … pixels - 1
        low, high = self._group(first)
        counts = self._counts_from(np.concatenate([low, high]))
        above, from_low = counts[len(sizes):], counts[:len(sizes)]
        expected = above + (from_low - above) * ((high - first) / (high - low))[:, None]
        out, at = {}, 0
        for name, k in tops.items():
            out[name], at = expected[at:at + len(k)], at + len(k)
        return out

    def at_maximum(self) -> np.ndarray:
        """Per atom, its pixels equal to the map's maximum."""
        first = self.pixels - 1 if self.tie_free else self.start[-1]
        return np.bincount(self.atom[first:], minlength=self.count_atoms)

    def rank_sums(self) -> np.ndarray:
        """Per atom, the sum of its pixels' ascending ranks (1 = smallest), tied values averaged."""
        if self.tie_free:
            ranks = _ascending_ranks(self.pixels)
        else:
            ranks = np.repeat(self.start + (self.length + 1) / 2, self.length)
        return np.bincount(self.atom, weights=ranks, minlength=self.count_atoms)


def _ordered_bits(a: np.ndarray) -> np.ndarray:
    """float32 → uint32 ordered as the floats are (equal floats, equal bits; -0.0 taken as +0.0):
    negatives have every bit flipped, the others just the sign bit."""
    bits = (a + np.float32(0)).view(np.uint32)
    flip = (bits.view(np.int32) >> 31).view(np.uint32) | np.uint32(0x80000000)
    return bits ^ flip
