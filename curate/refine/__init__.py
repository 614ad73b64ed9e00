"""ProX-style refinement: a language model writes a small program per document; curate executes it safely."""
