"""``curate ablate``: does a selector beat random? Equal-token arms, proxy models, paired statistics."""
