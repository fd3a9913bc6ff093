"""The one shape every target takes on its way to the runner."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


def labelled(frame, labels: dict):
    """The frame with a target's labels as its leading columns (every table row says which head it is)."""
    for key, value in reversed(labels.items()):
        frame.insert(0, key, value)
    return frame


@dataclass(frozen=True)
class TargetBatch:
    """q, k (S, N, d) already scaled so q·k is the logit, v (S, N, d_v), for S sequences of one head.

    ``labels`` are the columns this head contributes to every row (target, layer, head, logit_scale, ...);
    ``alternative_qk`` is another head's (q, k) on the same inputs, for the mismatched-target null.
    """

    labels: dict
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    causal: bool = False
    sequence_ids: tuple = ()
    alternative_qk: tuple | None = field(default=None, repr=False)

    @property
    def n_sequences(self) -> int:
        return self.q.shape[0]
