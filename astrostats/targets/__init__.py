"""Where q, k, v come from: synthetic generators and real Transformers, as :class:`TargetBatch`."""
from astrostats.targets.base import TargetBatch

__all__ = ["TargetBatch"]
