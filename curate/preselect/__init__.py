"""PreSelect (Shum et al. 2025): data selection by predictive strength.

A family of causal LMs with known abilities scores a document sample: each model's bits per
character on each document (:mod:`curate.preselect.family`); a document's predictive strength
S(d) is the share of model pairs whose loss order agrees with their ability order
(:mod:`curate.preselect.strength`); the documents with the highest S are positives, the lowest
negatives, and a fastText classifier trained on them (``curate train-scorer preselect``) scores
any corpus (the ``preselect`` stage) for top-fraction selection (``quality_select``).

``curate preselect label CONFIG --output DIR`` runs the labeling job (:mod:`curate.preselect.label`),
configured by a YAML file (:mod:`curate.preselect.config`).
"""
