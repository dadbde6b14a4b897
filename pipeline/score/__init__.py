"""Scoring attribution maps against the store's regions: :func:`score_maps` (public API).

Every metric of :data:`METRICS` for every region at once, one sort per map, ties in expectation.
"""

from celebamask.score.metrics import METRICS, MetricOptions, score_map
from celebamask.score.run import ScoreResult, score_maps

__all__ = ["METRICS", "MetricOptions", "ScoreResult", "score_map", "score_maps"]
