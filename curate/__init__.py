"""curate: streaming data curation for LLM pretraining corpora on Apache Beam and Arrow."""

__version__ = "0.1.0"
