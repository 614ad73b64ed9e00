"""Predictive strength S(d) and balanced labels (pure numpy, no models)."""
from __future__ import annotations

import hashlib

import numpy as np


def ability_pairs(abilities) -> list[tuple[int, int]]:
    """Model index pairs (i, j) with ability_i > ability_j (pairs of equal ability are left out)."""
    a = np.asarray(abilities, dtype=np.float64)
    return [(i, j) for i in range(len(a)) for j in range(len(a)) if a[i] > a[j]]


def predictive_strength(losses, abilities) -> np.ndarray:
    """S(d) for each row of ``losses`` (documents x models, bits per character).

    The share of model pairs (i, j) with ability_i > ability_j whose losses agree with that order,
    loss_i < loss_j (the better model compresses the document better). A tie in loss counts as half
    an agreement. S = 1: the document ranks the models exactly as their abilities do; S = 0: in
    reverse. NaN where a document has no loss of one of the models of a pair (such pairs are left
    out; NaN only when no pair is left).
    """
    L = np.asarray(losses, dtype=np.float64)
    if L.ndim != 2:
        raise ValueError(f"losses must be documents x models, got shape {L.shape}")
    pairs = ability_pairs(abilities)
    if L.shape[1] != len(np.asarray(abilities)):
        raise ValueError(f"{L.shape[1]} loss columns but {len(np.asarray(abilities))} abilities")
    if not pairs:
        raise ValueError("predictive strength needs models of different abilities")
    agree = np.zeros(len(L))
    count = np.zeros(len(L))
    for i, j in pairs:
        li, lj = L[:, i], L[:, j]
        ok = np.isfinite(li) & np.isfinite(lj)
        agree += np.where(ok, (li < lj) + 0.5 * (li == lj), 0.0)
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, agree / np.maximum(count, 1), np.nan)


def stable_hash(key: str, seed: int = 0) -> int:
    """A seeded 64-bit hash of a document id (for sampling, held-out split and tie-breaking)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest(), "little")


def unit_hash(key: str, seed: int = 0) -> float:
    return stable_hash(key, seed) / 2.0**64


def balanced_labels(strength, keys, fraction: float, seed: int = 0) -> np.ndarray:
    """Labels for documents with predictive strengths ``strength``: 1 positive, 0 negative, -1 unlabeled.

    ``k = floor(fraction * n)`` positives are the documents of highest S (so all of them have S = 1
    when at least k documents do), the same number of negatives those of lowest S; ties at a boundary
    are broken by a seeded hash of the key. A positive always has a strictly higher S than every
    negative: k shrinks until it does (so documents of one S value are never split between the classes).
    NaN strengths are never labeled.
    """
    s = np.asarray(strength, dtype=np.float64)
    n = len(s)
    out = np.full(n, -1, dtype=np.int8)
    valid = np.flatnonzero(np.isfinite(s))
    if not len(valid):
        return out
    k = min(int(np.floor(fraction * len(valid))), len(valid) // 2)
    tie = np.array([stable_hash(str(keys[i]), seed) for i in valid], dtype=np.uint64)
    desc = valid[np.lexsort((tie, -s[valid]))]  # highest S first, ties by hash
    asc = valid[np.lexsort((tie, s[valid]))]  # lowest S first
    while k > 0 and s[desc[k - 1]] <= s[asc[k - 1]]:
        k -= 1
    out[desc[:k]] = 1
    out[asc[:k]] = 0
    return out
