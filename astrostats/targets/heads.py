"""Head selection: which layers and heads of a Transformer become targets, and the head whose q and k make the
mismatched-target null. Shared by the language models and the ViT."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from astrostats.targets.base import TargetBatch
from astrostats.validation import check_int, fail


#: the label every real model's heads carry (column ``target_kind``), beside ``modality``: what claims C2 and C6
#: select by, whatever the model is called
REAL_TARGET = "real"
MODALITIES = ("language", "vision")


def real_labels(modality: str) -> dict:
    """The labels that mark a head as a real Transformer's: ``target_kind`` "real" and its ``modality``."""
    if modality not in MODALITIES:
        raise fail("modality", f"one of {list(MODALITIES)}", modality)
    return {"target_kind": REAL_TARGET, "modality": modality}


@dataclass(frozen=True)
class LayerAttention:
    """One attention layer on S sequences: q, k scaled (q·k = logit), all (S, H, N, d); ``output`` is the
    model's own attention output (S, H, N, d_v), before the heads are merged and projected."""

    layer: int
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    output: torch.Tensor
    causal: bool


def select(name: str, chosen, total: int) -> list[int]:
    """Indices into range(total); empty means all; negative indices count from the end."""
    if not chosen:
        return list(range(total))
    indices = []
    for value in chosen:
        value = check_int(name, value)
        if not -total <= value < total:
            raise fail(name, f"indices in [{-total}, {total - 1}]", list(chosen))
        indices.append(value % total)
    return sorted(set(indices))


def alternative_head(head: int, n_heads: int, kv_groups: int = 1) -> int | None:
    """The head whose q, k make the mismatched-target null: the first head of the next key/value group
    (head + kv_groups, wrapping), so it neither is the head nor shares its keys (query heads of one group read
    the same k). None when the layer has a single key/value group: no such head exists."""
    kv_groups = check_int("kv_groups", kv_groups, minimum=1)
    if n_heads % kv_groups:
        raise fail("kv_groups", f"a divisor of the layer's {n_heads} heads", kv_groups)
    if n_heads // kv_groups < 2:
        return None
    return (head + kv_groups) % n_heads


def head_targets(target: str, layers: list[LayerAttention], heads=(), *, extra: dict | None = None,
                 kv_groups: int = 1, require_alternative: bool = False) -> list[TargetBatch]:
    """One TargetBatch per (layer, head); a head of another key/value group of the same layer
    (:func:`alternative_head`) gives the mismatched-target q, k (``alternative_qk``; None when the layer has
    one key/value group, an InputError naming ``circuits`` if ``require_alternative``).

    Labels line up with the synthetic ones: target, layer, head, logit_scale ("model": the model's own),
    qk_norm (mean over tokens of (|q| + |k|) / 2), n_tokens, d_head, kv_head (the key/value head it reads,
    head // kv_groups), plus ``extra``.
    """
    batches = []
    for attention in layers:
        n_sequences, n_heads, n_tokens, d_head = attention.q.shape
        for head in select("heads", heads, n_heads):
            q, k, v = attention.q[:, head], attention.k[:, head], attention.v[:, head]
            other = alternative_head(head, n_heads, kv_groups)
            if other is None and require_alternative:
                raise fail("circuits", f"'mismatched_target' only where a layer has a head of another key/value "
                                       f"group ({target} layer {attention.layer}: {n_heads} heads in "
                                       f"{n_heads // kv_groups} key/value group(s))", "mismatched_target")
            alternative = None if other is None else (attention.q[:, other].contiguous(),
                                                      attention.k[:, other].contiguous())
            qk_norm = 0.5 * (q.norm(dim=-1).mean() + k.norm(dim=-1).mean())
            labels = {"target": target, "layer": attention.layer, "head": head, "logit_scale": "model",
                      "qk_norm": float(qk_norm), "n_tokens": n_tokens, "d_head": d_head,
                      "kv_head": head // kv_groups, **(extra or {})}
            batches.append(TargetBatch(labels, q.contiguous(), k.contiguous(), v.contiguous(), attention.causal,
                                       tuple(range(n_sequences)), alternative))
    return batches
