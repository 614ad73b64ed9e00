"""MATES (Yu et al. 2024): model-aware data selection with a data-influence model, staged inside ``curate train``.

* ``probe``: oracle probing: from the trainer's state, one optimizer step per probe document, the
  reference loss after it, the state restored in memory.
* ``influence``: a small encoder regressing z-scored oracle scores, best epoch by Spearman on held-out probes.
* ``select``: Gumbel-top-k.
* ``staged``: the loop (train N steps -> probe -> fit -> score the pool -> select -> next stage).
"""
