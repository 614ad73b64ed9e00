"""The ``preselect`` stage: a PreSelect fastText classifier (``curate train-scorer preselect``).

Adds ``preselect`` = P(the document is predictive of downstream ability), from a model trained on
the labels of ``curate preselect label``. As a filter it keeps ``preselect >= min_score``; for
PreSelect's selection of the top share of characters, run it with ``mode: annotate`` (or use
``curate score``) and then ``quality_select: {score_column: preselect, top_char_fraction: 0.1}``
(or give ``quality_select`` the model directly: ``model: models/preselect.bin, score_column: preselect``).
"""
from __future__ import annotations

from dataclasses import dataclass

from curate.core.registry import register
from curate.scorers.fasttext_classifier import QualityClassifier


@register
@dataclass(kw_only=True)
class PreselectClassifier(QualityClassifier):
    """PreSelect fastText classifier: adds ``preselect`` = P(predictive); keeps preselect >= min_score."""

    stage = "preselect"
    reason = "low_preselect"
    column = "preselect"
