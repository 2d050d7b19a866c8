"""Evaluation metrics: one small module per metric around a pure compute function.

The evaluator objects that training and `ganexp eval` call live in ``evaluators``; the
table below maps each metric's name to its pure function (for notebooks and tests).
"""
from ganexp.metrics.fid import fid_from_feats, fid_from_stats
from ganexp.metrics.inception_score import inception_score
from ganexp.metrics.kid import kid
from ganexp.metrics.modes import mode_coverage, stacked_mode_coverage
from ganexp.metrics.precision_recall import precision_recall

FUNCTIONS = {
    "fid": fid_from_feats,
    "kid": kid,
    "is": inception_score,
    "pr": precision_recall,
    "modes": mode_coverage,
    "stacked_modes": stacked_mode_coverage,
}
