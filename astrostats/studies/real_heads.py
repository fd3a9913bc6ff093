"""Figure 3 done properly: every layer and head of real Transformers on real inputs, many feature seeds,
and the whole network with its attention replaced by the neuron–astrocyte circuit.

Models (``models``): registered target sources (``minilm`` and ``smollm2``, language, astrostats.targets.language;
``vit``, the ViT trained here, astrostats.targets.vision), or local transformers model folders, as a path or a
table ``{path = "...", family = "auto", name = "..."}`` (astrostats.targets.sources). Every real head's rows
carry ``target_kind`` "real" and its ``modality``, whatever the model is called. Analyses, each a table
prefixed by the spec's name:

* ``response``   the paper's panel: per token, the astrocyte response a_t against the exact normaliser
                 sum_tau exp(q_t·k_tau) at each ``response_m``, summarised over ``n_seeds`` feature seeds
                 (median and 5 %-95 % band of log a_t), for the chosen layers and heads;
* ``sweep``      error against m per layer and head (the runner's tidy table, ``_sweep``), the delta-method
                 constant per sequence (``_theory``) and scaling-law fits per head (``_fits``, stats layer);
* ``head_stats`` where real heads sit: per head and sequence, query/key norms, logit spread, attention
                 entropy, the theory's error constant C and the m it implies for 10 % and 1 % error;
* ``end_to_end`` every attention layer replaced by the circuit at m: final outputs compared with the model's
                 own (encoders such as MiniLM: sentence-embedding cosine; causal LMs such as SmolLM2:
                 next-token KL and top-1 agreement; the ViT: top-1 agreement, logit relative error and
                 test-set correctness);
* ``measured``   the error measured directly at ``measured_m`` (to one rodent's 1e5 and one human's 2e6
                 synapses) on ``measured_layers`` x ``measured_heads`` (every layer for the models in
                 ``measured_all_layers``), ``measured_seeds`` feature draws on ``n_sequences`` inputs, by nested
                 blocks of bounded memory (astrostats.studies.measured): ``_measured``, ``_measured_summary``,
                 ``_measured_shares`` and ``_required_m`` (the bracket on m for 10 % per head, with the sweep's
                 fits where the head was swept).

A model whose package (or data) is missing raises InputError naming the package and its install command,
so the analysis is reported as not run.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from astrostats.circuits.registry import DEFAULT_CIRCUIT, checked_result, get_circuit
from astrostats.circuits.attention import attention_logits, log_normaliser
from astrostats.circuits.theory import predicted_error_constant
from astrostats.constants import EPSILONS
from astrostats.runner import Sweep, circuit_seed, draw_projections, items_per_chunk, run_sweep
from astrostats.spec import Spec
from astrostats.studies import measured
from astrostats.studies.base import RunContext
from astrostats.studies.scaling import fit_error_laws, theory_table
from astrostats.targets.base import TargetBatch, labelled
from astrostats.targets import language, vision
from astrostats.targets.swap import CircuitSetting, circuit_heads
from astrostats.targets.models import LoadedModel, label_real_tables, load, model_shape, targets_of
from astrostats.targets.sources import check_known, check_sources, source_name, source_names
from astrostats.targets.corpora import IMAGE_SOURCES, TEXT_SOURCES
from astrostats.validation import check_choice, check_int, check_int_list, fail

LOG = logging.getLogger(__name__)

ANALYSES = ("response", "sweep", "head_stats", "end_to_end", "measured")
RESPONSE_QUANTILES = (0.05, 0.5, 0.95)
MIN_BOOTSTRAP = 100
MIN_MEASURED = (3, 2)  # sequences, seeds: the least from which the crossed bootstrap has spread in both
INDEX_LISTS = {"layers": "heads", "response_layers": "response_heads", "sweep_layers": "sweep_heads",
               "measured_layers": "measured_heads"}


@dataclass(frozen=True)
class Parameters:
    models: tuple[str | dict, ...] = ("minilm", "smollm2")  # registered names, model folders or {path, family, name}
    analyses: tuple[str, ...] = ANALYSES
    text_source: str = "pydoc"
    image_source: str = "mnist"
    n_sequences: int = 8  # text windows or test images per head (head statistics and sweep)
    n_tokens: int = 197  # language models; the ViT always has 49 patches + CLS = 50 tokens
    layers: tuple[int, ...] = ()  # head statistics: () = every layer and head
    heads: tuple[int, ...] = ()
    response_m: tuple[int, ...] = (1000, 100000)
    response_sequences: int = 1
    response_layers: tuple[int, ...] = ()
    response_heads: tuple[int, ...] = ()
    m: tuple[int, ...] = (64, 256, 1024, 4096, 16384, 65536)
    n_seeds: int = 16
    sweep_layers: tuple[int, ...] = ()
    sweep_heads: tuple[int, ...] = ()
    circuits: tuple[str, ...] = ()  # nulls and other circuits beside the one under audit (sweep)
    audited_circuit: str = DEFAULT_CIRCUIT
    end_to_end_m: tuple[int, ...] = (256, 1024, 4096, 16384, 65536)
    end_to_end_seeds: int = 4
    end_to_end_sequences: int = 8
    end_to_end_images: int = 1000
    measured_m: tuple[int, ...] = (1000, 10000, 100000)  # measured directly (studies.measured), nested blocks
    measured_seeds: int = 4
    measured_sequences: int = 8  # the first windows or images of n_sequences
    measured_layers: tuple[int, ...] = ()  # () = every layer and head
    measured_heads: tuple[int, ...] = ()
    measured_all_layers: tuple[str, ...] = ()  # models measured on every layer whatever measured_layers says,
    measured_all_layers_heads: tuple[int, ...] = ()  # at these heads of each layer (() = measured_heads)
    measured_large_m: tuple[int, ...] = ()  # also measured, on at most measured_large_max_heads heads per model
    measured_large_max_heads: int | dict = 0  # per model (a number, or a table model -> number); chosen by
    # studies.measured.heads_to_extend (heads undetermined against one human astrocyte, nearest first)
    n_resamples: int = 1000
    memory_mb: int = 1024

    def __post_init__(self):
        for name in ("models", "analyses", "circuits", "response_m", "m", "end_to_end_m", "measured_m", "measured_large_m",
                     "measured_all_layers", "measured_all_layers_heads",
                     *INDEX_LISTS, *INDEX_LISTS.values()):
            if not isinstance(getattr(self, name), (tuple, list)):
                raise fail(name, "a list", getattr(self, name))
        for name in (*INDEX_LISTS, *INDEX_LISTS.values()):
            for index in getattr(self, name):
                check_int(name, index)
        if not self.models:
            raise fail("models", f"a non-empty list of target sources (among {source_names()}, or model folders)",
                       self.models)
        names = (*check_sources("models", self.models), *source_names())
        for analysis in self.analyses:
            check_choice("analyses", analysis, ANALYSES)
        check_choice("text_source", self.text_source, TEXT_SOURCES)
        check_choice("image_source", self.image_source, IMAGE_SOURCES)
        for name in ("n_sequences", "n_tokens", "response_sequences", "n_seeds", "end_to_end_seeds",
                     "end_to_end_sequences", "end_to_end_images", "memory_mb", "measured_seeds",
                     "measured_sequences"):
            check_int(name, getattr(self, name), minimum=1)
        if self.response_sequences > self.n_sequences:
            raise fail("response_sequences", f"at most n_sequences = {self.n_sequences}", self.response_sequences)
        for model in self.measured_all_layers:
            check_known("measured_all_layers", model, names)
        for index in self.measured_all_layers_heads:
            check_int("measured_all_layers_heads", index)
        if "measured" in self.analyses and (self.measured_sequences < MIN_MEASURED[0]
                                            or self.measured_seeds < MIN_MEASURED[1]):
            raise fail("measured_sequences, measured_seeds", f"at least {MIN_MEASURED[0]} sequences and {MIN_MEASURED[1]} "
                                                      "seeds for 'measured' (a crossed-bootstrap CI needs spread in both)",
                       (self.measured_sequences, self.measured_seeds))
        budget = self.measured_large_max_heads
        for model, count in (budget.items() if isinstance(budget, dict) else [("any", budget)]):
            if model != "any":
                check_known("measured_large_max_heads", model, names)
            check_int("measured_large_max_heads", count, minimum=0)
        if "measured" in self.analyses and self.measured_sequences > self.n_sequences:
            raise fail("measured_sequences", f"at most n_sequences = {self.n_sequences}", self.measured_sequences)
        if self.measured_large_m and max(self.measured_large_m) <= max(self.measured_m):
            raise fail("measured_large_m", f"values above max(measured_m) = {max(self.measured_m)}", self.measured_large_m)
        for name in ("response_m", "m", "end_to_end_m", "measured_m", "measured_large_m"):
            if name == "measured_large_m" and not self.measured_large_m:
                continue  # optional: nothing beyond measured_m
            values = check_int_list(name, getattr(self, name))
            if len(set(values)) < len(values):
                raise fail(name, "distinct values (a repeated m would be measured and fitted twice)", values)
        Sweep(m=self.m, n_seeds=self.n_seeds, circuits=self.circuits, audited_circuit=self.audited_circuit)
        if "sweep" in self.analyses and len(set(self.m)) < 3:
            raise fail("m", "at least 3 distinct values (a scaling fit needs them)", self.m)
        check_int("n_resamples", self.n_resamples, minimum=MIN_BOOTSTRAP)
        if "sweep" in self.analyses and "shuffled_kv" in self.circuits and self.n_sequences < 2:
            raise fail("n_sequences", "at least 2 with circuit 'shuffled_kv' (it reads another sequence's keys "
                                      "and values; with one sequence it would be the circuit itself)",
                       self.n_sequences)

    def check_shape(self, model: str, shape: language.ModelShape) -> None:
        """Layer and head indices within the model, and a head of another key/value group for the
        mismatched-target null; InputError naming the parameter otherwise."""
        checks = [(name, total) for layers, heads in INDEX_LISTS.items()
                  for name, total in ((layers, shape.n_layers), (heads, shape.n_heads))]
        if model in self.measured_all_layers:  # heads of every layer: checked against the models they apply to
            checks.append(("measured_all_layers_heads", shape.n_heads))
        for name, total in checks:
            values = getattr(self, name)
            if any(not -total <= value < total for value in values):
                raise fail(name, f"indices in [{-total}, {total - 1}] for {model} ({shape.n_layers} layers, "
                                 f"{shape.n_heads} heads)", list(values))
        if "sweep" in self.analyses and "mismatched_target" in self.circuits and shape.n_kv_heads < 2:
            raise fail("circuits", f"'mismatched_target' only for a model with a head of another key/value group "
                                   f"({model} has {shape.n_kv_heads})", "mismatched_target")


HEAD_KEYS = ["target", "layer", "head", "circuit", "feature_map", "logit_scale"]  # one scaling fit per head


# ------------------------------------------------------------------------------------------------ analyses
def response_table(batches: list[TargetBatch], parameters: Parameters, base_seed: int) -> pd.DataFrame:
    """Per token: exact log normaliser and the audited circuit's normaliser (the astrocyte's response): median and
    5-95 % band over seeds. Empty where the circuit has no normaliser.

    Projections are the runner's (same seeds as the sweep); work is chunked over seeds to ``memory_mb``.
    """
    sweep = Sweep(m=parameters.response_m, n_seeds=parameters.n_seeds, base_seed=base_seed,
                  memory_mb=parameters.memory_mb, audited_circuit=parameters.audited_circuit)
    circuit = get_circuit(parameters.audited_circuit)
    frames = []
    for batch in batches:
        count = parameters.response_sequences
        q, k, v = batch.q[:count], batch.k[:count], batch.v[:count]
        n_tokens, d = q.shape[-2:]
        log_z = log_normaliser(q.double(), k.double(), batch.causal).numpy()
        for m in parameters.response_m:
            per_seed = 6.0 * count * n_tokens * m * q.element_size()
            chunk = items_per_chunk(parameters.n_seeds, per_seed, parameters.memory_mb * 2**20)
            log_responses = []
            for start in range(0, parameters.n_seeds, chunk):
                seeds = range(start, min(parameters.n_seeds, start + chunk))
                if circuit.with_projection is None:
                    results = [circuit(q, k, v, m=m, seed=circuit_seed(sweep, circuit.primary_feature_map, m, s),
                                       causal=batch.causal) for s in seeds]
                    log_responses += [r.log_normaliser.unsqueeze(0) for r in results if r.log_normaliser is not None]
                    continue
                projections = draw_projections(sweep, "positive", m, seeds, d).to(q.dtype).unsqueeze(1)
                result = checked_result(circuit.name, circuit.with_projection(q, k, v, projections, "positive",
                                                                              batch.causal), q, v)
                if result.log_normaliser is not None:
                    log_responses.append(result.log_normaliser)
            if not log_responses:
                continue  # a circuit without a normaliser: nothing to set against the exact one
            log_a = torch.cat(log_responses).numpy()  # (seeds, sequences, tokens)
            low, median, high = np.quantile(log_a, RESPONSE_QUANTILES, axis=0)
            relative = np.median(np.abs(np.expm1(log_a - log_z[None])), axis=0)
            frame = pd.DataFrame({
                "sequence_id": np.repeat(np.asarray(batch.sequence_ids[:count]), n_tokens),
                "token": np.tile(np.arange(n_tokens), count), "m": m, "n_seeds": parameters.n_seeds,
                "log_normaliser": log_z.ravel(), "log_response_median": median.ravel(),
                "log_response_low": low.ravel(), "log_response_high": high.ravel(),
                "relative_error_median": relative.ravel()})
            frames.append(labelled(frame, batch.labels))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def head_statistics(batches: list[TargetBatch]) -> pd.DataFrame:
    """Per (head, sequence): what sets the circuit's difficulty, long format (metric, value).

    q_norm, k_norm: mean |q_t|, |k_t| (scaled, so q·k is the logit); q_plus_k_norm_max: max over attended
    pairs of |q_t + k_tau| (the Performer variance grows like exp(|q + k|^2)); logit_std, logit_max over
    attended pairs; attention_entropy: mean over queries, in nats; predicted_constant C and the m it implies,
    (C / epsilon)^2, for 10 % and 1 % relative error.
    """
    frames = []
    for batch in batches:
        q, k = batch.q.double(), batch.k.double()
        logits = attention_logits(q, k, batch.causal)
        attended = torch.isfinite(logits)
        finite_logits = logits.masked_fill(~attended, float("nan"))
        weights = torch.softmax(logits, -1)
        entropy = -(weights * torch.log(weights.clamp_min(1e-300))).sum(-1).mean(-1)
        sums = (q.unsqueeze(-2) + k.unsqueeze(-3)).norm(dim=-1).masked_fill(~attended, float("nan"))
        constant = predicted_error_constant(batch.q, batch.k, batch.v, batch.causal)
        metrics = {
            "q_norm": q.norm(dim=-1).mean(-1), "k_norm": k.norm(dim=-1).mean(-1),
            "q_plus_k_norm_max": sums.flatten(1).nan_to_num(-1.0).amax(-1),
            "logit_std": torch.from_numpy(np.nanstd(finite_logits.flatten(1).numpy(), axis=1)),
            "logit_max": finite_logits.flatten(1).nan_to_num(-math.inf).amax(-1),
            "attention_entropy": entropy, "predicted_constant": constant.double(),
            **{f"m_required_theory_{round(eps * 100)}pct": (constant.double() / eps) ** 2 for eps in EPSILONS},
        }
        frame = pd.DataFrame({"sequence_id": list(batch.sequence_ids) * len(metrics),
                              "metric": np.repeat(list(metrics), len(batch.sequence_ids)),
                              "value": torch.cat([values.double() for values in metrics.values()]).numpy()})
        frames.append(labelled(frame, batch.labels))
    return pd.concat(frames, ignore_index=True)


def end_to_end_table(loaded: LoadedModel, parameters: Parameters, base_seed: int) -> pd.DataFrame:
    """Final outputs with every attention layer replaced by the circuit at each m and feature seed."""
    rows = []
    if loaded.is_vision:
        images, labels = vision.test_images(parameters.image_source, parameters.end_to_end_images)
        with torch.no_grad():
            exact = loaded.handle(images)
        rows.append(_vision_rows(exact, exact, labels, "exact", pd.NA, pd.NA))
        for m in parameters.end_to_end_m:
            for seed in range(parameters.end_to_end_seeds):
                setting = CircuitSetting(m=m, seed=seed, causal=False, base_seed=base_seed,
                                         memory_mb=parameters.memory_mb, circuit=parameters.audited_circuit)
                with torch.no_grad():
                    approximate = loaded.handle(images, attention=lambda layer, q, k, v, s=setting:
                                                circuit_heads(layer, q, k, v, s))
                rows.append(_vision_rows(approximate, exact, labels, parameters.audited_circuit, m, seed))
        target = f"vit_{parameters.image_source}"
    else:
        model = loaded.handle
        ids = loaded.inputs[:parameters.end_to_end_sequences]
        exact = language.final_outputs(model, ids)
        for m in parameters.end_to_end_m:
            for seed in range(parameters.end_to_end_seeds):
                setting = CircuitSetting(m=m, seed=seed, causal=model.causal, base_seed=base_seed,
                                         memory_mb=parameters.memory_mb, circuit=parameters.audited_circuit)
                approximate = language.final_outputs(model, ids, setting)
                rows.append(_language_rows(model, approximate, exact, m, seed, setting.circuit))
        target = model.name
    table = pd.concat(rows, ignore_index=True)
    table.insert(0, "target", target)
    table["m"] = table["m"].astype("Int64")
    table["seed"] = table["seed"].astype("Int64")
    return table


def _language_rows(model: language.LanguageModel, approximate: torch.Tensor, exact: torch.Tensor, m: int, seed: int,
                   circuit: str) -> pd.DataFrame:
    """Per sequence, the metrics of the model's kind of output (language.end_to_end_metrics): an encoder's
    embedding cosine, a causal LM's next-token KL and top-1 agreement, a vision classifier's top-1 agreement."""
    ids = np.arange(len(exact))
    metrics = language.end_to_end_metrics(model, approximate, exact)
    return pd.concat([pd.DataFrame({"circuit": circuit, "m": m, "seed": seed, "sequence_id": ids,
                                    "metric": metric, "value": values.double().numpy()})
                      for metric, values in metrics.items()], ignore_index=True)


def _vision_rows(approximate, exact, labels, circuit, m, seed) -> pd.DataFrame:
    metrics = {"top1_agreement": (approximate.argmax(-1) == exact.argmax(-1)).double(),
               "correct": (approximate.argmax(-1) == labels).double(),
               "logit_relative_error": (approximate - exact).norm(dim=-1) / exact.norm(dim=-1)}
    ids = np.arange(len(labels))
    return pd.concat([pd.DataFrame({"circuit": circuit, "m": m, "seed": seed, "sequence_id": ids,
                                    "metric": metric, "value": values.double().numpy()})
                      for metric, values in metrics.items()], ignore_index=True)


def first_sequences(batch: TargetBatch, count: int) -> TargetBatch:
    """The head on its first ``count`` sequences (the measured analysis uses fewer than the sweep may)."""
    return dataclasses.replace(batch, q=batch.q[:count], k=batch.k[:count], v=batch.v[:count],
                               sequence_ids=tuple(batch.sequence_ids[:count]), alternative_qk=None)


def measured_rows(batches: list[TargetBatch], parameters: Parameters, seed: int, context: RunContext,
                  fits: list[pd.DataFrame] | None) -> pd.DataFrame:
    """Every chosen head at ``measured_m``; then, within budget, the heads still undetermined against one human
    astrocyte also at ``measured_large_m`` (nested blocks: their rows at ``measured_m`` are the same numbers)."""
    def run_on(heads, m_values):
        return measured.measured_table(heads, m_values, parameters.measured_seeds, seed, memory_mb=parameters.memory_mb,
                                       executor=context.executor, progress=context.progress,
                                       circuit=parameters.audited_circuit)
    rows = run_on(batches, parameters.measured_m)
    budget = parameters.measured_large_max_heads
    target = batches[0].labels["target"]  # a source's name; the ViT's heads are vit_<image source>
    model = target if isinstance(budget, dict) and target in budget else target.split("_")[0]
    max_heads = budget.get(model, 0) if isinstance(budget, dict) else budget
    if not parameters.measured_large_m or not max_heads:
        return rows
    summary, _ = measured.summarise(rows, n_resamples=parameters.n_resamples, seed=seed)
    required = measured.required_m_table(summary, measured.theory_constants(batches),
                                         pd.concat(fits, ignore_index=True) if fits else None,
                                         circuit=parameters.audited_circuit)
    chosen = set(measured.heads_to_extend(required, max_heads, parameters.measured_large_m))
    subset = [b for b in batches if tuple(b.labels[key] for key in measured.HEAD_LABELS) in chosen]
    if not subset:
        return rows
    LOG.info("measuring %d heads at m = %s", len(subset), list(parameters.measured_large_m))
    extra = run_on(subset, sorted(set(parameters.measured_m) | set(parameters.measured_large_m)))
    return pd.concat([rows, extra[extra["m"].isin(parameters.measured_large_m)]], ignore_index=True)


# ----------------------------------------------------------------------------------------------------- run
def run(spec: Spec, context: RunContext) -> dict[str, pd.DataFrame]:
    parameters = spec.bind(Parameters)
    collected: dict[str, list[pd.DataFrame]] = {}
    timings = []

    def keep(key: str, frame: pd.DataFrame):
        collected.setdefault(key, []).append(frame)

    real_labels = {}  # target -> target_kind and modality, for the tables built without the head labels
    for entry in parameters.models:  # every index checked against every model before the first is loaded
        parameters.check_shape(source_name(entry), model_shape(entry, parameters.image_source))
    for entry in parameters.models:
        name = source_name(entry)
        loaded = load(entry, n_sequences=parameters.n_sequences, n_tokens=parameters.n_tokens,
                      text_source=parameters.text_source, image_source=parameters.image_source)
        real_labels[loaded.target] = loaded.labels
        timings.append({"target": name, "step": "load", "seconds": loaded.load_seconds})
        for analysis in parameters.analyses:
            start = time.perf_counter()
            if analysis == "response":
                batches = targets_of(loaded, parameters.response_layers, parameters.response_heads)
                keep("response", response_table(batches, parameters, spec.seed))
            elif analysis == "head_stats":
                keep("head_stats", head_statistics(targets_of(loaded, parameters.layers, parameters.heads)))
            elif analysis == "sweep":
                batches = targets_of(loaded, parameters.sweep_layers, parameters.sweep_heads,
                                     require_alternative="mismatched_target" in parameters.circuits)
                sweep = Sweep(m=parameters.m, n_seeds=parameters.n_seeds, circuits=parameters.circuits,
                              base_seed=spec.seed, memory_mb=parameters.memory_mb,
                              audited_circuit=parameters.audited_circuit)
                measurements = run_sweep(batches, sweep, progress=context.progress, executor=context.executor)
                theory = theory_table(batches)
                keep("sweep", measurements)
                keep("theory", theory)
                keep("fits", fit_error_laws(measurements, theory, HEAD_KEYS, n_resamples=parameters.n_resamples,
                                             seed=spec.seed, epsilons=EPSILONS, audited=parameters.audited_circuit))
            elif analysis == "measured":
                layers, heads = (((), parameters.measured_all_layers_heads or parameters.measured_heads)
                                 if name in parameters.measured_all_layers
                                 else (parameters.measured_layers, parameters.measured_heads))
                batches = [first_sequences(b, parameters.measured_sequences) for b in targets_of(loaded, layers, heads)]
                keep("measured", measured_rows(batches, parameters, spec.seed, context, collected.get("fits")))
                keep("measured_theory", measured.theory_constants(batches))
            else:
                keep("end_to_end", end_to_end_table(loaded, parameters, spec.seed))
            timings.append({"target": name, "step": analysis, "seconds": time.perf_counter() - start})
            LOG.info("%s %s: %.1f s", name, analysis, timings[-1]["seconds"])
    tables = {f"{spec.name}_{key}": pd.concat(frames, ignore_index=True) for key, frames in collected.items()}
    if f"{spec.name}_measured" in tables:
        summary, shares = measured.summarise(tables[f"{spec.name}_measured"], n_resamples=parameters.n_resamples,
                                             seed=spec.seed)
        theory = tables.pop(f"{spec.name}_measured_theory")
        tables[f"{spec.name}_measured_summary"] = summary
        tables[f"{spec.name}_measured_shares"] = shares
        tables[f"{spec.name}_required_m"] = measured.required_m_table(summary, theory, tables.get(f"{spec.name}_fits"),
                                                                      circuit=parameters.audited_circuit)
    label_real_tables(tables, real_labels)
    for table in tables.values():
        table.insert(0, "analysis", spec.name)
    tables[f"{spec.name}_timings"] = pd.DataFrame(timings).assign(analysis=spec.name)
    return tables
