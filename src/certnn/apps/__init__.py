"""Applications built on the certification procedures: sensitive words of a text classifier
(:mod:`certnn.apps.words`) and the comparison of several models (defences) on the same samples
(:mod:`certnn.apps.compare`)."""
from __future__ import annotations

from .compare import ModelSummary, summarize_model
from .words import WordSensitivity, ranking_agreement, word_sensitivity

__all__ = ["WordSensitivity", "word_sensitivity", "ranking_agreement", "ModelSummary", "summarize_model"]
