"""Model scorers (fastText quality/toxicity classifiers) and their training. Each module registers its stages
when imported (curate.core.registry.MODULES imports them on first use).

* ``fasttext_classifier``: ``quality_classifier``, ``toxicity_classifier``, ``quality_select``.
* ``train``: training the classifiers (``curate train-scorer``); imported only when used.
* ``toxic_words``: ``toxic_words`` (word and phrase lists).
* ``pii``: ``pii_redact`` (e-mail and IP addresses).
"""
