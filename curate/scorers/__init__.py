"""Model scorers (fastText quality/toxicity classifiers) and their training. Each module registers its stages."""
