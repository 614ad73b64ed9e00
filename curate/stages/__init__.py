"""Built-in stages, one concept per module. They register on import; curate.core.registry.MODULES
maps each stage name to its module so that a run imports only the stages its recipe uses."""
