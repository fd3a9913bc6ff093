"""The target-source registry and the generic Hugging Face adapter, on tiny random models built here from configs
(GPT-2, BERT, Llama with grouped key/value heads, ViT; saved with save_pretrained, nothing downloaded): the captured
heads reproduce each model's own attention probabilities, causality comes from the config, grouped key/value heads
expand to the query heads that read them, a wrong capture is caught, bad entries are InputErrors naming the
parameter, and claims C2 and C6 judge every head labelled real whatever its model is called."""
import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from astrostats.circuits.attention import attention_logits, softmax_attention
from astrostats.claims import AuditedCircuit
from astrostats.claims import c2_real_models as c2
from astrostats.claims import c6_required_m as c6
from astrostats.spec import load_spec
from astrostats.studies import get_study, real_heads
from astrostats.studies.base import RunContext
from astrostats.targets import language, sources
from astrostats.targets.corpora import english_text
from astrostats.targets.huggingface import HuggingFaceSource, default_name
from astrostats.targets.models import targets_of
from astrostats.targets.swap import CircuitSetting
from astrostats.validation import InputError
from planted_measured import planted_rows, planted_tables

transformers = pytest.importorskip("transformers")

ANALYSES = Path(__file__).resolve().parent.parent / "analyses"
VOCABULARY = 300  # above 256: byte-level ids (no tokenizer in the folders) are the bytes themselves
PEAKED = 0.5  # initialiser scale: attention far from uniform, so a wrong capture shows in the probabilities


def _configs() -> dict:
    common = dict(initializer_range=PEAKED)
    return {
        "gpt2": (transformers.GPT2LMHeadModel, transformers.GPT2Config(
            n_layer=2, n_head=2, n_embd=32, vocab_size=VOCABULARY, n_positions=64, bos_token_id=0, eos_token_id=0,
            **common)),
        "bert": (transformers.BertModel, transformers.BertConfig(
            num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64, vocab_size=VOCABULARY,
            max_position_embeddings=64, **common)),
        "bert_decoder": (transformers.BertLMHeadModel, transformers.BertConfig(
            num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64, vocab_size=VOCABULARY,
            max_position_embeddings=64, is_decoder=True, **common)),
        "llama": (transformers.LlamaForCausalLM, transformers.LlamaConfig(
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32, intermediate_size=64,
            vocab_size=VOCABULARY, max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
            **common)),
        "vit": (transformers.ViTForImageClassification, transformers.ViTConfig(
            num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64, image_size=32,
            patch_size=8, num_channels=3, num_labels=10, **common)),
    }


CAUSAL = {"gpt2": True, "bert": False, "bert_decoder": True, "llama": True, "vit": False}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    found = {}
    for family, (model_class, config) in _configs().items():
        torch.manual_seed(0)
        model_class(config).save_pretrained(root / family)
        found[family] = root / family
    return found


@pytest.fixture(scope="module")
def loaded(folders) -> dict:
    return {family: sources.resolve_source(str(folder)).load(n_sequences=2, n_tokens=16)
            for family, folder in folders.items()}


def _own_attention(loaded_model) -> tuple:
    """The model's own attention probabilities, eager, as output_attentions reports them."""
    handle = loaded_model.handle
    handle.model.set_attn_implementation("eager")
    with torch.no_grad():
        if handle.modality == "vision":
            output = handle.model(pixel_values=loaded_model.inputs, output_attentions=True)
        else:
            ids = loaded_model.inputs
            output = handle.model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
    return output.attentions


@pytest.mark.parametrize("family", list(CAUSAL))
def test_captured_heads_reproduce_the_models_own_attention(loaded, family, rounding_bound):
    model = loaded[family]
    layers = language.language_attention(model.handle, model.inputs)
    own = _own_attention(model)
    assert len(layers) == len(own) == 2
    for layer, probabilities in zip(layers, own):
        assert layer.causal == CAUSAL[family]
        recomputed = torch.softmax(attention_logits(layer.q, layer.k, layer.causal), dim=-1)
        assert recomputed.shape == probabilities.shape
        assert (recomputed - probabilities).abs().max() <= language.capture_bound(layer.q, layer.k)
        assert (softmax_attention(layer.q, layer.k, layer.v, causal=layer.causal) - layer.output).abs().max() \
            <= rounding_bound(layer.q, layer.k, layer.v)
    # attention far from uniform: a capture off by a visible amount could not pass the bound above
    assert (own[0].amax(-1) - own[0].amin(-1)).max() > 0.1


@pytest.mark.parametrize("family", list(CAUSAL))
def test_causality_modality_and_metric_come_from_the_config(folders, loaded, family):
    source = sources.resolve_source(str(folders[family]))
    assert source.causal is CAUSAL[family] and loaded[family].causal is CAUSAL[family]
    assert source.modality == ("vision" if family == "vit" else "language")
    assert source.end_to_end_metric == ("embedding_cosine" if family == "bert" else "top1_agreement")
    batches = targets_of(loaded[family], [0], [0])
    labels = batches[0].labels
    assert labels["target"] == default_name(folders[family]) == family
    assert labels["target_kind"] == "real" and labels["modality"] == source.modality
    assert batches[0].causal is CAUSAL[family]


def test_inputs_are_real_text_bytes_or_resized_test_images(loaded):
    ids = loaded["gpt2"].inputs
    assert ids.shape == (2, 16) and int(ids.max()) < VOCABULARY
    assert ids[0].tolist() == list(english_text("pydoc").encode("utf-8")[:16])  # the text's own bytes
    assert not torch.equal(ids[0], ids[1])
    assert torch.equal(loaded["bert"].inputs, ids)  # no tokenizer, no [CLS]: the same byte windows
    pixels = loaded["vit"].inputs
    assert pixels.shape == (2, 3, 32, 32) and -1 <= float(pixels.min()) and float(pixels.max()) <= 1
    assert torch.equal(pixels[:, 0], pixels[:, 2])  # grey images repeated over the channels
    assert targets_of(loaded["vit"], [0], [0])[0].q.shape == (2, 17, 16)  # 16 patches + CLS


def test_grouped_key_value_heads_expand_to_the_query_heads_that_read_them(loaded):
    model = loaded["llama"]
    assert (model.handle.n_heads, model.handle.n_kv_heads) == (4, 2)
    layer = language.language_attention(model.handle, model.inputs, layers=[0])[0]
    assert layer.q.shape == (2, 4, 16, 8) and layer.k.shape == layer.v.shape == (2, 4, 16, 8)
    assert torch.equal(layer.k[:, 0], layer.k[:, 1]) and torch.equal(layer.k[:, 2], layer.k[:, 3])
    assert not torch.equal(layer.k[:, 1], layer.k[:, 2]) and torch.equal(layer.v[:, 2], layer.v[:, 3])
    batches = targets_of(model, [0], ())
    assert [b.labels["kv_head"] for b in batches] == [0, 0, 1, 1]
    assert all(b.labels["n_kv_heads"] == 2 for b in batches)
    assert not torch.equal(batches[0].alternative_qk[1], batches[0].k)  # the null reads the other group's keys


def test_a_wrong_capture_is_detected(loaded, monkeypatch):
    """The check can fail: key/value heads shared out in the wrong order, or the wrong causality."""
    model = loaded["llama"]

    def tiled(query, key, value, scaling):  # kv heads 0, 1, 0, 1 instead of 0, 0, 1, 1
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat(1, groups, 1, 1), value.repeat(1, groups, 1, 1)
        factor = query.shape[-1] ** -0.25
        return query * factor, key * factor, value

    monkeypatch.setattr(language, "_scaled_heads", tiled)
    with pytest.raises(language.CaptureMismatch, match=r"^model: .*'llama'.*layer 0"):
        language.language_attention(model.handle, model.inputs)
    monkeypatch.undo()
    language.language_attention(model.handle, model.inputs)  # and passes again
    for family in ("gpt2", "bert"):
        flipped = dataclasses.replace(loaded[family].handle, causal=not CAUSAL[family])
        with pytest.raises(language.CaptureMismatch, match="own attention probabilities"):
            language.language_attention(flipped, loaded[family].inputs)
    assert loaded["gpt2"].handle.model.config._attn_implementation == "eager"


def test_a_non_standard_attention_scale_is_carried_into_q_and_k(tmp_path):
    """GPT-2 scaled by the inverse layer index: layer 1's logits carry 1 / (2 sqrt(d)), so q·k must too."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCABULARY, n_positions=64,
                                     bos_token_id=0, eos_token_id=0, initializer_range=PEAKED,
                                     scale_attn_by_inverse_layer_idx=True)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "scaled")
    model = sources.resolve_source(str(tmp_path / "scaled")).load(n_sequences=2, n_tokens=16)
    layers = language.language_attention(model.handle, model.inputs)  # the capture check passes
    own = _own_attention(model)
    for layer, probabilities in zip(layers, own):
        recomputed = torch.softmax(attention_logits(layer.q, layer.k, True), dim=-1)
        assert (recomputed - probabilities).abs().max() <= language.capture_bound(layer.q, layer.k)
    module = model.handle.attention_modules[1]
    assert module.scaling == pytest.approx(16 ** -0.5 / 2)


@pytest.mark.slow
def test_builtin_minilm_goes_through_the_registry_with_the_same_heads():
    minilm = language.load_minilm()
    assert minilm.attention_modules == [layer.attention.self for layer in minilm.model.encoder.layer]
    source = sources.resolve_source("minilm")
    assert (source.family, source.causal, source.modality, source.end_to_end_metric) == \
        ("bert", False, "language", "embedding_cosine")
    assert source.shape() == language.ModelShape(6, 12, 12)
    via_registry = source.heads(n_sequences=2, n_tokens=32, layers=[0, -1], heads=[0, 11])
    direct = language.language_heads("minilm", n_sequences=2, n_tokens=32, layers=[0, -1], heads=[0, 11],
                                     language_model=minilm)
    assert [b.labels for b in via_registry] == [b.labels for b in direct]
    for a, b in zip(via_registry, direct):
        assert torch.equal(a.q, b.q) and torch.equal(a.k, b.k) and torch.equal(a.v, b.v)


def test_end_to_end_outputs_and_metrics_follow_the_kind_of_model(loaded):
    expected = {"gpt2": {"next_token_kl", "top1_agreement"}, "bert": {"embedding_cosine"},
                "vit": {"top1_agreement", "logit_relative_error"}}
    for family, metrics in expected.items():
        model = loaded[family]
        exact = language.final_outputs(model.handle, model.inputs)
        setting = CircuitSetting(m=256, seed=0, causal=model.causal)
        approximate = language.final_outputs(model.handle, model.inputs, setting)
        assert approximate.shape == exact.shape and not torch.equal(approximate, exact)
        values = language.end_to_end_metrics(model.handle, approximate, exact)
        assert set(values) == metrics and all(v.shape == (2,) for v in values.values())
        assert sources.resolve_source(str(model.handle.model.name_or_path)).end_to_end_metric in values


def test_registry_names_and_errors(folders, tmp_path):
    assert set(sources.source_names()) >= {"minilm", "smollm2", "vit"}
    assert sources.resolve_source("vit").name == "vit" and sources.resolve_source("minilm").family == "bert"
    with pytest.raises(InputError, match=r"^models: .*\['minilm', 'smollm2', 'vit'\].*did you mean 'minilm'.*'minilmm'"):
        sources.resolve_source("minilmm")
    with pytest.raises(InputError, match=r"^real_models: .*got 'gpt5'"):
        sources.check_sources("real_models", ["vit", "gpt5"])
    with pytest.raises(InputError, match=r"^models\.path: .*existing model folder.*nowhere"):
        sources.resolve_source(str(tmp_path / "nowhere"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    with pytest.raises(InputError, match=r"^models\.path: .*config\.json"):
        sources.resolve_source({"path": str(tmp_path / "notes")})
    with pytest.raises(InputError, match=r"^models\.family: .*did you mean 'gpt2'.*'gtp2'"):
        sources.resolve_source({"path": str(folders["gpt2"]), "family": "gtp2"})
    with pytest.raises(InputError, match=r"^models\.family: expected 'auto' or 'gpt2'.*got 'bert'"):
        sources.resolve_source({"path": str(folders["gpt2"]), "family": "bert"}).shape()
    with pytest.raises(InputError, match=r"^models: .*keys \['path', 'family', 'name'\]"):
        sources.resolve_source({"folder": str(folders["gpt2"])})
    with pytest.raises(InputError, match=r"^models\.name: "):
        sources.resolve_source({"path": str(folders["gpt2"]), "name": "bad name"})
    with pytest.raises(InputError, match=r"^models: expected entries with distinct names"):
        sources.check_sources("models", [str(folders["vit"]), "vit"])
    # config only (no weights read): the shape, with key/value groups
    assert sources.resolve_source({"path": str(folders["llama"]), "family": "llama", "name": "tiny"}).shape() == \
        language.ModelShape(2, 4, 2)


def test_a_registered_source_is_found_by_name(folders):
    sources.register_source("tiny_gpt2_registered", lambda: HuggingFaceSource(folders["gpt2"], name="tiny_registered"))
    try:
        assert "tiny_gpt2_registered" in sources.source_names()
        assert sources.resolve_source("tiny_gpt2_registered").name == "tiny_registered"
        with pytest.raises(InputError, match="registered already"):
            sources.register_source("tiny_gpt2_registered", lambda: None)
    finally:
        sources._REGISTRY.pop("tiny_gpt2_registered")


def test_studies_accept_a_model_folder_as_a_table_entry(folders, tmp_path):
    spec_file = tmp_path / "mine.toml"
    spec_file.write_text(f'name = "mine"\nkind = "real_heads"\n[parameters]\n'
                         f'models = [{{path = "{folders["gpt2"]}", family = "auto", name = "tiny_gpt2"}}, '
                         f'"{folders["bert"]}"]\n')
    parameters = load_spec(spec_file, "quick").bind(real_heads.Parameters)
    assert sources.check_sources("models", parameters.models) == ("tiny_gpt2", "bert")
    spec_file.write_text(f'name = "mine"\nkind = "real_heads"\n[parameters]\nmodels = [{{path = "{tmp_path}"}}]\n')
    with pytest.raises(InputError, match=r"^models\.path: "):
        load_spec(spec_file, "quick").bind(real_heads.Parameters)


def test_real_heads_study_runs_an_unknown_model_and_labels_every_table(folders, tmp_path):
    spec = load_spec(ANALYSES / "fig3_language.toml", "smoke")
    entry = {"path": str(folders["gpt2"]), "name": "tiny_gpt2"}
    spec = dataclasses.replace(spec, parameters={**spec.parameters, "models": [entry], "n_tokens": 16,
                                                 "analyses": ["head_stats", "end_to_end", "measured"]})
    tables = get_study(spec.kind).run(spec, RunContext(tmp_path, progress=False))
    for name, table in tables.items():
        if "target" in table and not name.endswith("_timings"):
            assert set(table["target"]) == {"tiny_gpt2"}, name
            assert set(table["target_kind"]) == {"real"} and set(table["modality"]) == {"language"}, name
    assert set(tables["fig3_language_end_to_end"]["metric"]) == {"next_token_kl", "top1_agreement"}
    assert set(tables["fig3_language_required_m"]["target"]) == {"tiny_gpt2"}
    assert len(c6.judge(tables).evidence) == len(tables["fig3_language_required_m"])
    # and its heads are the rows C2 judges (the per-token normaliser error at the measured m), whatever its name
    rows = dict(c2._tables(tables, "_measured_summary", AuditedCircuit()))["fig3_language_measured_summary"]
    assert set(rows["target"]) == {"tiny_gpt2"} and (rows["metric"] == c2.METRIC).any()


# ------------------------------------------------------------------------------------ claims read the label
TARGETS = {"my_gpt2": ("language", 0.93), "my_vit": ("vision", 0.99)}


def _labelled_tables(normaliser: float = 0.03, values=None) -> dict:
    """Planted C2 tables for models of unknown names, labelled real, beside a synthetic target that would fail."""
    means = {(target, metric): (lambda m, n=normaliser: n * (1e5 / m) ** 0.5) if metric == c2.METRIC
             else (lambda m: 0.2) for target in (*TARGETS, "synthetic") for metric in (c2.METRIC, "relative_error")}
    means[("synthetic", c2.METRIC)] = lambda m: 0.9
    tables = planted_tables(planted_rows(means))
    kinds = {target: ("real", modality) for target, (modality, _) in TARGETS.items()}
    kinds["synthetic"] = ("synthetic", None)
    values = values or {target: value for target, (_, value) in TARGETS.items()}
    end_to_end = pd.DataFrame([{"target": target, "circuit": "astrocyte", "m": 16384, "seed": seed,
                                "sequence_id": sequence, "metric": "top1_agreement", "value": values[target]}
                               for target in TARGETS for seed in range(2) for sequence in range(4)])
    tables["fig3_end_to_end"] = end_to_end
    for table in tables.values():
        table["target_kind"] = table["target"].map(lambda t: kinds[t][0])
        table["modality"] = table["target"].map(lambda t: kinds[t][1])
    return tables


def test_claim_c2_judges_every_head_labelled_real_whatever_its_name():
    verdict = c2.judge(_labelled_tables())
    assert verdict.verdict == "SUPPORTED", verdict.reason
    cited = {e.note.split(" ")[0].rstrip(",") for e in verdict.evidence}
    assert cited == {"my_gpt2", "my_vit"}  # the synthetic target's failing rows decide nothing
    assert verdict.headline.startswith("per-token normaliser error at m = 100,000: median 0.030 over 4 heads, "
                                       "4 shown below 10%")


def test_claim_c2_thresholds_are_keyed_by_metric_and_modality():
    """Top-1 agreement 0.93 passes a language model's 0.90 and fails a vision model's 0.95."""
    verdict = c2.judge(_labelled_tables(values={"my_gpt2": 0.93, "my_vit": 0.93}))
    assert verdict.verdict == "NOT_SUPPORTED"
    assert [item.split(" ")[0] for item in verdict.details["end_to_end_failing"]] == ["my_vit"]
    # without a vision model the claim has too little data, whatever the names
    tables = {name: table[table["modality"] != "vision"] for name, table in _labelled_tables().items()}
    assert c2.judge(tables).verdict == "INSUFFICIENT_DATA"


def test_claim_c6_judges_only_rows_labelled_real():
    tables = planted_tables(planted_rows({("my_gpt2", "relative_error"): lambda m: 0.5 * (1000 / m) ** 0.5,
                                          ("synthetic", "relative_error"): lambda m: 0.9}))
    required = tables["fig3_required_m"]
    required["target_kind"] = required["target"].map({"my_gpt2": "real", "synthetic": "synthetic"})
    verdict = c6.judge(tables)
    assert verdict.verdict == "SUPPORTED", verdict.reason
    assert set(verdict.details["per_model"]) == {"my_gpt2"}
    required["target_kind"] = "real"  # labelled real, the far-off head decides
    assert c6.judge(tables).verdict == "NOT_SUPPORTED"
