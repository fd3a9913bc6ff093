"""One way in for randomness: every seed in astrostats is a tuple of integers turned into numpy's SeedSequence,
so a result depends on what it is (its task's keys), never on the order in which tasks, maps or comparisons are
listed or run.

Names enter seeds through fixed codes (FEATURE_CODES, or a CRC-32 of the name), never through their position
in a tuple: reordering a spec's feature maps cannot change a result.
"""
from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from astrostats.validation import check_choice, check_int

if TYPE_CHECKING:
    import torch

# fixed for good: the code of each feature map in every seed (new maps get new codes; none is ever reused)
FEATURE_CODES = {"positive": 0, "orthogonal": 1, "trigonometric": 2, "hyperbolic": 3}


def feature_code(feature: str) -> int:
    return FEATURE_CODES[check_choice("feature", feature, list(FEATURE_CODES))]


def name_code(*names: str) -> int:
    """A stable code for names (CRC-32 of the names joined by a unit separator; Python's hash is salted)."""
    return zlib.crc32("\x1f".join(names).encode())


def seed_sequence(*keys: int) -> np.random.SeedSequence:
    """The SeedSequence of a task, from its integer keys (base seed first)."""
    return np.random.SeedSequence([int(key) for key in keys])


def derived_seed(*keys: int) -> int:
    """One 32-bit integer seed from integer keys (for code that takes an int seed)."""
    return int(seed_sequence(*keys).generate_state(1)[0])


def numpy_rng(seed: Any) -> np.random.Generator:
    """A numpy Generator from a non-negative int, a SeedSequence or a Generator (returned as it is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    return np.random.default_rng(check_int("seed", seed, minimum=0))


def torch_generator(seed: int | np.random.SeedSequence) -> "torch.Generator":
    """A torch Generator from an int or a SeedSequence: one per task, so results do not depend on batching or
    workers. torch is imported here, not at the top: the report and audit use this module and never need torch
    (its import is 3-4 s of a rebuild)."""
    import torch

    if isinstance(seed, np.random.SeedSequence):
        seed = int(seed.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return torch.Generator().manual_seed(int(seed))


__all__ = ["FEATURE_CODES", "feature_code", "name_code", "seed_sequence", "derived_seed", "numpy_rng",
           "torch_generator"]
