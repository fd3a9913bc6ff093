"""What the astrocyte buys (claim C7): the astrocyte circuit beside other biological circuits for attention.

Spec -> heads (synthetic at every context length N of ``n_tokens`` and every named logit scale, and layer x head of
the real models, loaded as the figure-3 analyses load them, at the shortest N; a head's name ends in /N<length>) -> every circuit of astrostats.circuits.alternatives, the astrocyte circuit and
the baselines, on the same sequences and (for the random-feature circuits) the same W per m and seed as the
runner draws -> tables, each prefixed by the spec's name:

* ``<name>``              relative error per head, circuit, interneuron input limit, m, seed and sequence;
* ``_accounting``         the resources of every circuit at every m and limit (astrostats.circuits.resources);
* ``_required``           per head and circuit, the bounds on m and on each resource needed for 10 % error, and
                          ``censored`` ("below" / "above" the swept m, or "none");
* ``_tests``              resource ratios to the astrocyte circuit at equal error, per head and N: the pre-registered
                          family ("primary", plastic synapses), amendment v2's co-primary families
                          ("coprimary_total_cells", "coprimary_plastic_writes_per_token") and secondary families
                          (hidden neurons), each Holm-corrected on its own, with both hashes; a censored ratio is a
                          bound (``censored``: none / upper / lower / unbounded, ``ratio_bound``, ``censored_why``).

The interneuron tree and the dense associative memory have errors and plastic synapses that do not depend
on the interneuron input limit (only their cell counts do, listed per limit in ``_accounting``): they run
once, at the strictest limit. The sampled pool runs at every limit. The memory's widths are the swept m
below the sequence length N, and N itself (one unit per token: exact).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from astrostats.circuits.registry import DEFAULT_CIRCUIT, Circuit, audited_first, checked_result, get_circuit
from astrostats.circuits.resources import RESOURCES, resources
from astrostats.constants import TOLERANCE
from astrostats.runner import Sweep, circuit_seed, draw_projections, references
from astrostats.spec import Spec
from astrostats.stats.equal_error import equal_error_tests, required_resource
from astrostats.studies.base import RunContext
from astrostats.studies.preregistration import latest_amendment, preregistration_hash
from astrostats.targets.base import TargetBatch
from astrostats.targets.models import load, model_shape, targets_of
from astrostats.targets.sources import check_sources, source_name
from astrostats.targets.corpora import IMAGE_SOURCES, TEXT_SOURCES
from astrostats.targets.synthetic import LOGIT_SCALES, synthetic_head
from astrostats.validation import check_choice, check_float, check_int, check_int_list, fail

LOG = logging.getLogger(__name__)
PREREGISTRATION_KEYS = ("claim", "endpoint", "resource", "epsilon", "reference", "comparators", "effect", "margin",
                        "alpha", "test", "correction", "family", "min_sequences", "min_m_values", "decision_rule")
#: amendment v2 (2026-12-06): co-primary resources beside plastic synapses, and the rule that combines them
AMENDMENT_KEYS = ("version", "date", "rationale", "amends_sha256", "coprimary_resources", "decision_rule",
                  "original_result")
COPRIMARY_PREFIX = "coprimary_"


@dataclass(frozen=True)
class Parameters:
    m: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    n_seeds: int = 4
    n_sequences: int = 6
    logit_scales: tuple[str, ...] = ("typical", "peaked")
    n_tokens: tuple[int, ...] = (197,)  # context lengths N (an integer or a list): one synthetic head per N and scale
    d_head: int = 64
    interneuron_fan_in: tuple[int, ...] = (2186,)
    circuits: tuple[str, ...] = ()  # the comparators beside the circuit under audit
    audited_circuit: str = DEFAULT_CIRCUIT
    secondary_resources: tuple[str, ...] = ("total_cells", "hidden_neurons")
    real_models: tuple[str | dict, ...] = ()  # registered names, model folders or {path, family, name}
    real_layers: tuple[int, ...] = (0,)
    real_heads: tuple[int, ...] = (0,)
    text_source: str = "pydoc"
    image_source: str = "mnist"
    n_resamples: int = 999

    def __post_init__(self):
        values = check_int_list("m", self.m)
        if len(set(values)) < len(values):
            raise fail("m", "distinct values", values)
        for name in ("n_seeds", "n_sequences", "d_head"):
            check_int(name, getattr(self, name), minimum=1)
        lengths = check_int_list("n_tokens", [self.n_tokens] if isinstance(self.n_tokens, int) else self.n_tokens)
        if len(set(lengths)) < len(lengths):
            raise fail("n_tokens", "distinct context lengths", lengths)
        object.__setattr__(self, "n_tokens", tuple(sorted(lengths)))
        for scale in self.logit_scales:
            check_choice("logit_scales", scale, LOGIT_SCALES)
        check_int_list("interneuron_fan_in", self.interneuron_fan_in, minimum=2)
        for circuit in self.circuits:  # the comparators; the audited circuit may declare none (C7 then says so)
            if circuit != self.audited_circuit and get_circuit(circuit).resources is None:
                raise fail("circuits", "comparators that declare their resources (the comparison is at equal "
                                       "resources)", circuit)
        for resource in self.secondary_resources:
            check_choice("secondary_resources", resource, RESOURCES)
        check_sources("real_models", self.real_models)
        for name in ("real_layers", "real_heads"):
            for index in getattr(self, name):
                check_int(name, index)
        check_choice("text_source", self.text_source, TEXT_SOURCES)
        check_choice("image_source", self.image_source, IMAGE_SOURCES)
        check_int("n_resamples", self.n_resamples, minimum=99)
        if not self.logit_scales and not self.real_models:
            raise fail("logit_scales, real_models", "at least one head", (self.logit_scales, self.real_models))

    @property
    def run_circuits(self) -> tuple[str, ...]:
        """The circuit under audit (the reference of every comparison) first, unless listed, then the others."""
        return audited_first(self.audited_circuit, self.circuits)


# -------------------------------------------------------------------------------------- pre-registration
def check_preregistration(spec: Spec, parameters: Parameters) -> dict:
    """The [preregistration] table, complete and consistent with the parameters, or an InputError naming why."""
    registered = spec.preregistration
    absent = [key for key in PREREGISTRATION_KEYS if key not in registered]
    if absent:
        raise fail(f"{spec.name}.preregistration", f"keys {list(PREREGISTRATION_KEYS)}", f"missing {absent}")
    check_float("preregistration.epsilon", registered["epsilon"], minimum=0.0, strict=True)
    check_float("preregistration.margin", registered["margin"], minimum=0.0)
    check_float("preregistration.alpha", registered["alpha"], minimum=0.0, strict=True, maximum=1.0)
    check_choice("preregistration.correction", registered["correction"], ("holm", "bonferroni"))
    check_choice("preregistration.resource", registered["resource"], RESOURCES)
    check_choice("preregistration.reference", registered["reference"], (DEFAULT_CIRCUIT,))
    for comparator in registered["comparators"]:
        check_choice("preregistration.comparators", comparator,
                     sorted(set(parameters.run_circuits) - {parameters.audited_circuit}))
    check_int("preregistration.min_sequences", registered["min_sequences"], minimum=2)
    check_int("preregistration.min_m_values", registered["min_m_values"], minimum=2)
    return registered


def check_amendment(spec: Spec, registered: dict) -> dict | None:
    """The latest [[amendments]] entry, complete, dated and pinned to the original's hash (an edited original is
    caught), its co-primary resources valid and led by the registered one; None when the spec has none."""
    amendment = latest_amendment(spec, registered, AMENDMENT_KEYS)
    if amendment is None:
        return None
    resources_ = list(amendment["coprimary_resources"])
    for resource in resources_:
        check_choice("amendments.coprimary_resources", resource, RESOURCES)
    if not resources_ or resources_[0] != registered["resource"] or len(set(resources_)) < len(resources_):
        raise fail("amendments.coprimary_resources", f"distinct resources led by the registered "
                                                     f"{registered['resource']!r} (its verdict stays reported)", resources_)
    return amendment


def coprimary_family(resource: str) -> str:
    """The family name of a co-primary resource of the amendment (the registered one stays "primary")."""
    return f"{COPRIMARY_PREFIX}{resource}"


# ----------------------------------------------------------------------------------------------- targets
def head_name(batch: TargetBatch) -> str:
    labels = batch.labels
    n_tokens = batch.k.shape[-2]
    if labels["target"] == "synthetic":
        return f"synthetic/{labels['logit_scale']}/N{n_tokens}"
    return f"{labels['target']}/layer{labels['layer']}/head{labels['head']}/N{n_tokens}"


def targets(spec: Spec, parameters: Parameters) -> list[TargetBatch]:
    """Synthetic heads (one per context length N and logit scale), then the chosen layers and heads of every
    real model, loaded at the shortest N (a model's loading and heads dominate the time; its own length may differ)."""
    batches = [synthetic_head(n_sequences=parameters.n_sequences, n_tokens=n_tokens,
                              d_head=parameters.d_head, logit_scale=scale, seed=spec.seed)
               for n_tokens in parameters.n_tokens for scale in parameters.logit_scales]
    for entry in parameters.real_models:  # every index checked against every model before the first is loaded
        name, shape = source_name(entry, "real_models"), model_shape(entry, parameters.image_source)
        for key, total in (("real_layers", shape.n_layers), ("real_heads", shape.n_heads)):
            if not all(-total <= index < total for index in getattr(parameters, key)):
                raise fail(key, f"indices in [{-total}, {total - 1}] ({name} has {total})", getattr(parameters, key))
    for entry in parameters.real_models:
        name = source_name(entry, "real_models")
        loaded = load(entry, n_sequences=parameters.n_sequences, n_tokens=min(parameters.n_tokens),
                      text_source=parameters.text_source, image_source=parameters.image_source)
        batches += targets_of(loaded, parameters.real_layers, parameters.real_heads)
        LOG.info("circuits: %s heads loaded in %.1f s", name, loaded.load_seconds)
    return batches


# ---------------------------------------------------------------------------------------------- measuring
def memory_widths(m_values, n_tokens: int) -> list[int]:
    """The memory's widths: the swept m below N, and N (one unit per token)."""
    return sorted({m for m in m_values if m < n_tokens} | {n_tokens})


def fan_in_limits(circuit: Circuit, limits: tuple[int, ...]) -> tuple:
    """The input limits a circuit runs at: every one where the limit changes its output, else the strictest."""
    return tuple(limits) if circuit.fan_in_changes == "output" else (min(limits),) if circuit.fan_in_changes else (None,)


def _random_feature_outputs(batch: TargetBatch, circuits: list[Circuit], projection, limits, m: int, seed: int) -> dict:
    """(circuit, limit) -> output, every circuit with a ``with_projection`` form on the same W (paired across
    circuits); one that draws its own hidden units gets the same integer seed for every limit."""
    q, k, v, causal = batch.q, batch.k, batch.v, batch.causal
    projection = projection.to(q.dtype)
    outputs = {}
    for circuit in circuits:
        for limit in fan_in_limits(circuit, limits):
            options = {} if limit is None else {"fan_in": limit}
            if circuit.with_projection is None:
                result = circuit(q, k, v, m=m, seed=seed, causal=causal, **options)
            else:
                result = checked_result(circuit.name, circuit.with_projection(
                    q, k, v, projection, circuit.primary_feature_map, causal, **options), q, v)
            outputs[circuit.name, limit] = result.output
    return outputs


def _errors(output: torch.Tensor, exact: torch.Tensor) -> np.ndarray:
    output = output.double()
    return ((output - exact).norm(dim=(-2, -1)) / exact.norm(dim=(-2, -1))).numpy()


def measure(batch: TargetBatch, parameters: Parameters, base_seed: int) -> pd.DataFrame:
    """Relative error per sequence of every circuit at every m (and seed, and input limit) on one head."""
    exact, _ = references(batch)
    sweep = Sweep(m=parameters.m, n_seeds=parameters.n_seeds, base_seed=base_seed)
    d, n_tokens = batch.q.shape[-1], batch.k.shape[-2]
    limits = tuple(parameters.interneuron_fan_in)
    circuits = [get_circuit(name) for name in parameters.run_circuits]
    records = []

    def keep(circuit, limit, m, seed, output):
        records.append((circuit, limit, m, seed, _errors(output, exact)))

    random_circuits = [c for c in circuits if c.random_features]
    with torch.no_grad():
        for m in parameters.m:
            for seed in range(parameters.n_seeds):
                projection = draw_projections(sweep, "positive", m, range(seed, seed + 1), d)[0]
                own_seed = circuit_seed(sweep, "positive", m, seed)
                for (circuit, limit), output in _random_feature_outputs(batch, random_circuits, projection,
                                                                        limits, m, own_seed).items():
                    keep(circuit, limit, m, seed, output)
        for circuit in (c for c in circuits if c.one_unit_per_token):
            for width in memory_widths(parameters.m, n_tokens):
                for limit in fan_in_limits(circuit, limits):
                    output = circuit(batch.q, batch.k, batch.v, m=width, causal=batch.causal, fan_in=limit).output
                    keep(circuit.name, limit, width, None, output)
        for circuit in (c for c in circuits if not c.random_features and not c.one_unit_per_token):
            keep(circuit.name, None, None, None, circuit(batch.q, batch.k, batch.v, causal=batch.causal).output)
    frames = [pd.DataFrame({"circuit": circuit, "fan_in_limit": limit, "m": m, "seed": seed,
                            "sequence_id": list(batch.sequence_ids), "metric": "relative_error", "value": errors})
              for circuit, limit, m, seed, errors in records]
    table = pd.concat(frames, ignore_index=True)
    for column in ("fan_in_limit", "m", "seed"):
        table[column] = table[column].astype("Int64")
    return _labelled(table, batch)


def _labelled(table: pd.DataFrame, batch: TargetBatch) -> pd.DataFrame:
    labels = {key: batch.labels.get(key) for key in ("target", "layer", "head", "logit_scale")}
    labels.update(analysed_head=head_name(batch), n_tokens=batch.k.shape[-2], d_head=batch.q.shape[-1],
                  causal=batch.causal)
    for key, value in reversed(labels.items()):
        table.insert(0, key, value)
    return table


def accounting(batch: TargetBatch, parameters: Parameters) -> pd.DataFrame:
    """Resources of every circuit at every width it runs at, per interneuron input limit where it has a pool."""
    d, d_v, n_tokens = batch.q.shape[-1], batch.v.shape[-1], batch.k.shape[-2]
    rows = []
    for circuit in map(get_circuit, parameters.run_circuits):
        if circuit.resources is None:
            continue  # only the audited circuit may declare none: it is then measured, not priced
        widths = (memory_widths(parameters.m, n_tokens) if circuit.one_unit_per_token
                  else parameters.m if circuit.random_features else [None])
        limits = parameters.interneuron_fan_in if circuit.fan_in_changes else (None,)
        rows += [resources(circuit, m=m, d=d, d_v=d_v, n_tokens=n_tokens, fan_in=limit)
                 for limit in limits for m in widths]
    table = pd.DataFrame(rows)
    for column in ("fan_in_limit", "m"):
        table[column] = table[column].astype("Int64")
    return _labelled(table, batch)


# ------------------------------------------------------------------------------------------------- tests
def with_resources(measurements: pd.DataFrame, accounting_table: pd.DataFrame) -> pd.DataFrame:
    """Measurements of the swept circuits with their resource columns and a ``curve`` name (circuit, limit)."""
    keys = ["analysed_head", "circuit", "fan_in_limit", "m"]
    swept = measurements[measurements["m"].notna()]
    merged = swept.merge(accounting_table[keys + list(RESOURCES)], on=keys, how="left", validate="many_to_one")
    limit = merged["fan_in_limit"].astype("string")
    merged["curve"] = merged["circuit"].where(merged["fan_in_limit"].isna(), merged["circuit"] + "@" + limit)
    return merged


def tests_table(measurements: pd.DataFrame, accounting_table: pd.DataFrame, registered: dict, *,
                secondary_resources=(), n_resamples: int = 999, seed: int = 0,
                reference: str = DEFAULT_CIRCUIT, amendment: dict | None = None) -> pd.DataFrame:
    """The registered comparisons (family "primary"), those on the amendment's co-primary resources
    ("coprimary_<resource>") and the same on other resources ("secondary_<resource>"), each family Holm-corrected
    on its own; every row with its context length N and how its ratio is censored (:func:`censoring`).

    The pre-registration names the paper's circuit as the reference; ``reference`` is the circuit under audit,
    which takes its place (the registered comparators, margins and tests are unchanged)."""
    merged = with_resources(measurements, accounting_table)
    kept = merged[merged["circuit"].isin([reference, *registered["comparators"]])]
    coprimary = list(amendment["coprimary_resources"][1:]) if amendment else []
    families = [("primary", registered["resource"])] + [(coprimary_family(r), r) for r in coprimary] + [
        (f"secondary_{r}", r) for r in secondary_resources if r not in coprimary and r != registered["resource"]]
    frames = []
    for index, (family, resource) in enumerate(families):
        tests = equal_error_tests(kept, by=["analysed_head"], reference=reference, resource_col=resource,
                                  epsilon=float(registered["epsilon"]), margin=float(registered["margin"]),
                                  alpha=float(registered["alpha"]), correction=registered["correction"],
                                  n_resamples=n_resamples, seed=seed + index,
                                  min_units=int(registered["min_sequences"]), min_levels=int(registered["min_m_values"]))
        tests.insert(1, "family", family)
        frames.append(tests)
    tests = pd.concat(frames, ignore_index=True)
    if "n_tokens" in measurements:  # the context length N of every head (tables of an older run may lack it)
        lengths = measurements.groupby("analysed_head")["n_tokens"].first()
        tests.insert(tests.columns.get_loc("analysed_head") + 1, "n_tokens",
                     tests["analysed_head"].map(lengths).astype("Int64"))
    described = [censoring(row) for _, row in tests.iterrows()]
    tests["censored"] = [kind for kind, _, _ in described]
    tests["ratio_bound"] = [bound for _, bound, _ in described]
    tests["censored_why"] = [why for _, _, why in described]
    tests["preregistration_sha256"] = preregistration_hash(registered)
    tests["amendment_sha256"] = preregistration_hash(amendment) if amendment else None
    return tests


def _need(low, high) -> str:
    """Where one circuit's need is censored: '' (interpolated), 'below' (at its smallest m), 'above' (never)."""
    low, high = float(low), float(high)
    return "" if low == high else "below" if low == 0.0 else "above" if math.isinf(high) else "interval"


def censoring(row) -> tuple[str, str, str]:
    """How a comparison's ratio is known: ``(kind, bound, why)``.

    kind: "none" (both needs interpolated: a point ratio with a CI), "upper" (only ``ratio <= x``), "lower" (only
    ``ratio >= x``), "unbounded" (neither end), "" (not computed). bound: the statement to print, from the
    bootstrap CI's censored-side quantile ("<= ci_high", ">= ci_low"), or "= point [ci_low, ci_high]". why: which
    circuit's need lies outside the swept m, and on which side."""
    if row.get("status") != "ok" or pd.isna(row.get("ratio_low")):
        return "", "", ""
    low, high = float(row["ratio_low"]), float(row["ratio_high"])
    ci_low, ci_high = float(row["ci_low"]), float(row["ci_high"])
    if low == high:
        return "none", f"= {low:.3g} [{ci_low:.3g}, {ci_high:.3g}]", ""
    why = []
    for who, name in (("comparator", row["comparator"]), ("reference", row["reference"])):
        side = _need(row[f"{who}_required_low"], row[f"{who}_required_high"])
        if side == "below":
            why.append(f"{name} is below the error already at its smallest m "
                       f"(needs <= {float(row[f'{who}_required_high']):.3g})")
        elif side == "above":
            why.append(f"{name} never reaches the error in the swept m "
                       f"(needs > {float(row[f'{who}_required_low']):.3g})")
    why = "; ".join(why)
    if low > 0.0 and math.isinf(high):
        return "lower", f">= {ci_low:.3g}", why
    if low == 0.0 and math.isfinite(high):
        return "upper", f"<= {ci_high:.3g}", why
    return "unbounded", "undetermined (0 to inf)", why


def required_table(measurements: pd.DataFrame, accounting_table: pd.DataFrame, epsilon: float = TOLERANCE) -> pd.DataFrame:
    """Per head and curve, bounds on m and on every resource needed for mean error <= epsilon (point values where
    interpolated); ``censored`` says where the need lies outside the swept m: "none", "below" (the error is under
    epsilon already at the smallest m: only an upper bound) or "above" (never reached: only a lower bound)."""
    rows = []
    merged = with_resources(measurements, accounting_table)
    for (head, curve), part in merged.groupby(["analysed_head", "curve"], sort=True):
        means = part.groupby("m")["value"].mean().sort_index()
        per_m = part.groupby("m")[list(RESOURCES)].first().reindex(means.index)
        row = {"analysed_head": head, "n_tokens": part["n_tokens"].iloc[0] if "n_tokens" in part else None, "curve": curve,
               "circuit": part["circuit"].iloc[0], "epsilon": epsilon, "error_at_largest_m": float(means.iloc[-1])}
        for name, values in {"m": means.index.to_numpy(dtype=float), **per_m.to_dict("series")}.items():
            values = np.asarray(values, dtype=float)
            if (values > 0).all():
                low, high = required_resource(means.to_numpy()[None], values, epsilon)
                row[f"{name}_low"], row[f"{name}_high"] = float(low[0]), float(high[0])
        row["censored"] = _need(row["m_low"], row["m_high"]) or "none"
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------- run
def run(spec: Spec, context: RunContext) -> dict[str, pd.DataFrame]:
    parameters = spec.bind(Parameters)
    registered = check_preregistration(spec, parameters)
    amendment = check_amendment(spec, registered)
    measurements, accountings = [], []
    for batch in targets(spec, parameters):
        started = time.perf_counter()
        measurements.append(measure(batch, parameters, spec.seed))
        accountings.append(accounting(batch, parameters))
        LOG.info("circuits: %s measured in %.1f s", head_name(batch), time.perf_counter() - started)
    table = pd.concat(measurements, ignore_index=True)
    table.insert(0, "analysis", spec.name)
    accounting_table = pd.concat(accountings, ignore_index=True)
    required = required_table(table, accounting_table, float(registered["epsilon"]))
    if get_circuit(parameters.audited_circuit).resources is None:
        LOG.warning("circuits: %s declares no resources: measured, not compared at equal resources (claim C7 "
                    "says so)", parameters.audited_circuit)
        return {spec.name: table, f"{spec.name}_accounting": accounting_table, f"{spec.name}_required": required}
    tests = tests_table(table, accounting_table, registered, secondary_resources=parameters.secondary_resources,
                        n_resamples=parameters.n_resamples, seed=spec.seed, reference=parameters.audited_circuit,
                        amendment=amendment)
    tests.insert(0, "analysis", spec.name)
    tests["spec_sha256"] = spec.sha256
    return {spec.name: table, f"{spec.name}_accounting": accounting_table,
            f"{spec.name}_required": required,
            f"{spec.name}_tests": tests}


__all__ = ["Parameters", "run", "check_preregistration", "check_amendment", "coprimary_family", "censoring",
           "preregistration_hash", "targets", "measure",
           "accounting", "tests_table", "required_table", "with_resources", "memory_widths", "head_name"]
