"""Artifact names of a training repeated over seeds (checkpoint folders, metrics files).

Seed 0 keeps the plain name so a default run reads naturally; other seeds get ``_seed<k>``.
No arrays here (strings and ints only: unitless).
"""
from __future__ import annotations

SEED_SUFFIX = "_seed"


def seeded_name(name: str, seed: int) -> str:
    """Artifact name of a training repeated over seeds: `name` for seed 0 (the default run),
    ``<name>_seed<k>`` otherwise, e.g. ``stage3_2d_depth_seed2``."""
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return name if seed == 0 else f"{name}{SEED_SUFFIX}{seed}"


def split_seeded_name(name: str) -> tuple[str, int]:
    """Inverse of :func:`seeded_name`: ``"stage3_2d_seed2"`` -> ("stage3_2d", 2)."""
    base, sep, tail = name.rpartition(SEED_SUFFIX)
    if sep and base and tail.isdigit() and int(tail) > 0 and str(int(tail)) == tail:
        return base, int(tail)
    return name, 0
