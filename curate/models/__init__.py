"""Model format helpers: local checkpoints in the one format the trainer writes (transformers folders)."""
