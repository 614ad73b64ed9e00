"""Model scorers (fastText quality/toxicity classifiers) and their training. Each module registers its stages.

* ``fasttext_classifier``: ``quality_classifier``, ``toxicity_classifier``, ``quality_select``.
* ``train``: training the classifiers (``curate train-scorer``); imported only when used.
* ``toxic_words``: ``toxic_words`` (word and phrase lists).
* ``pii``: ``pii_redact`` (e-mail and IP addresses).
"""
from curate.scorers import fasttext_classifier, pii, toxic_words  # noqa: F401
