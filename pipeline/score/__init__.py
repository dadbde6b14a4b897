"""Scoring attribution maps against the store's regions: :func:`score_maps` (public API).

Every metric of :data:`METRICS` for every region at once, one sort per map, ties in expectation;
:func:`summarize` turns the scores into means, bootstrap intervals, counts and chance baselines.
"""

from celebamask.score.metrics import METRICS, MetricOptions, score_map
from celebamask.score.run import ScoreResult, score_maps
from celebamask.score.summary import Summary, read_scores, summarize

__all__ = ["METRICS", "MetricOptions", "ScoreResult", "Summary", "read_scores", "score_map", "score_maps",
           "summarize"]
