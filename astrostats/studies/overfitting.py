"""The critique itself: does the circuit's agreement exceed what fitted capacity gives?

Spec -> splits of one head (train / validation / test by whole sequence, plus out-of-distribution sets) ->
the runner's circuits and nulls on every split, and the fitted controls (astrostats.controls) trained on the
training split -> paired comparisons with the circuit at matched m, corrected by family as the spec's
[preregistration] table says.

A target is only a source of q, k, v and exact outputs, so every head takes the same path:

* ``synthetic``: Gaussian heads; out of distribution: ood_length (ood_n_tokens tokens), ood_scale (query/key
  norm ood_logit_scale), ood_head (another head's q and k on the same inputs, the same values);
* ``minilm``, ``smollm2`` (astrostats.targets.language), ``vit`` (astrostats.targets.vision), or any target
  source of the registry (astrostats.targets.sources: a model folder's path, or a table
  ``{path = "...", family = "auto", name = "..."}``, split as the built-in of its modality): head
  ``head`` of layer ``layer`` on real inputs, split by whole text window (language) or whole test image
  (ViT, images it never saw in training); out of distribution: ood_length (language only: longer windows,
  from text after every window of the other splits), ood_layer (the next layer's head of the same index,
  test inputs) and ood_head (the next head of the same layer, its own q, k, v, test inputs).

``target`` is the head of the pre-registered analysis (families ``primary``, ``nulls_other_m``,
``baselines``, ``efficiency``); each of ``secondary_targets`` is analysed the same way and reported as
secondary families (``secondary_nulls``, ``secondary_nulls_other_m``, ``secondary_baselines``,
``secondary_efficiency``), Holm-corrected per head and family, never deciding claim C3.

Tables (prefixed by the spec name), each row labelled with ``role`` (primary / secondary) and
``analysed_head`` (e.g. "vit_mnist/layer0/head0"): ``<name>`` (every measurement: target labels, split,
circuit, m, seed, sequence_id, metric, value, scored_against, status), ``_accounting`` (fitted /
fixed-random / input-determined counts per head size), ``_training`` (one row per fit: status, epochs,
seconds), ``_history`` (per-epoch losses), ``_learning_curves`` (in-sample and held-out error against
fitted-parameter count), ``_refits`` (every attempt of every v2 fitted null: a fit that fails to learn is
refit, longer, from another initialisation, with another optimiser; astrostats.controls.refit) and ``_tests``
(the comparisons; family "primary" is the pre-registered test of C3).

Amendment v2 (the spec's ``[[amendments]]``, dated and hashed; the original [preregistration] and its result
are kept): family ``primary_v2`` compares the circuit with nulls whose training state cannot decide (the
closed-form ridge null, fitted nulls started independently of the circuit's W and early-stopped) and the
specificity nulls, over ``n_seeds`` feature draws with a crossed bootstrap, each null floored at the best
constant predictor. Rows of v2 families carry ``amendment_sha256``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, replace

import pandas as pd

from astrostats.controls.accounting import FITTED_CONTROLS, accounting_table
from astrostats.controls.comparisons import Family, comparisons_table
from astrostats.controls.experiment import ControlPlan, run_controls
from astrostats.controls.refit import RefitLadder
from astrostats.controls.training import TrainingBudget, split_by_sequence
from astrostats.circuits.registry import DEFAULT_CIRCUIT
from astrostats.cost import StudyCost
from astrostats.runner import Sweep, run_sweep
from astrostats.spec import Spec
from astrostats.targets.models import LoadedModel, load, targets_of
from astrostats.targets.sources import check_sources, resolve_source, source_name
from astrostats.studies.base import RunContext
from astrostats.studies.preregistration import latest_amendment, preregistration_hash
from astrostats.targets import language
from astrostats.targets.base import TargetBatch, labelled
from astrostats.targets.corpora import IMAGE_SOURCES, TEXT_SOURCES
from astrostats.targets.synthetic import synthetic_head
from astrostats.validation import check_choice, check_float, check_int, check_int_list, fail

LOG = logging.getLogger(__name__)
TARGETS = ("synthetic", "minilm", "smollm2", "vit")
EVALUATION_SPLITS = ("test", "ood_length", "ood_scale", "ood_layer", "ood_head")
TARGET_SPLITS = {"synthetic": ("test", "ood_length", "ood_scale", "ood_head"),
                 "minilm": ("test", "ood_length", "ood_layer", "ood_head"),
                 "smollm2": ("test", "ood_length", "ood_layer", "ood_head"),
                 "vit": ("test", "ood_layer", "ood_head")}
PREREGISTRATION_KEYS = ("endpoint", "margin", "alpha", "correction", "primary_controls", "primary_m",
                        "primary_splits", "decision_rule")
AMENDMENT_KEYS = ("version", "date", "rationale", "amends_sha256", *PREREGISTRATION_KEYS[1:], "min_feature_draws")
V2_SUFFIX = "_v2"
SECONDARY_PREFIX = "secondary_"


@dataclass(frozen=True)
class Parameters:
    m: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    n_seeds: int = 2
    n_train: int = 16
    n_validation: int = 4
    n_test: int = 16
    n_ood: int = 16
    n_tokens: int = 197  # synthetic and language windows; the ViT always has 49 patches + CLS = 50 tokens
    d_head: int = 64  # synthetic only; real heads have their model's head size
    logit_scale: str | float = "near_uniform_unit_norm"
    ood_n_tokens: int = 394
    ood_logit_scale: str | float = 1.5
    target: str | dict = "synthetic"  # or a target source: a registered name, a model folder, {path, family, name}
    secondary_targets: tuple[str | dict, ...] = ()
    layer: int = 0  # the head analysed on a real target (negative: from the end)
    head: int = 0
    text_source: str = "pydoc"
    image_source: str = "mnist"
    controls: tuple[str, ...] = FITTED_CONTROLS
    capacity_null: bool = True
    circuits: tuple[str, ...] = ()  # nulls and baselines beside the circuit under audit
    audited_circuit: str = DEFAULT_CIRCUIT
    max_epochs: int = 200
    batch_sequences: int = 8
    learning_rate: float = 0.05
    patience: int = 10
    min_improvement: float = 0.01
    budget_tolerance: float = 0.25
    n_resamples: int = 9999
    memory_mb: int = 512
    v2_nulls: bool = True  # amendment v2's capacity nulls (closed-form ridge, independent early-stopped fits)
    null_learning_rates: tuple[float, ...] = (0.01, 0.05)
    control_seeds: int | None = None  # seeds of the original (v1) fitted controls; None: n_seeds
    refit_attempts: int = 3  # refits of a v2 fitted null that failed to learn (0: none); see controls.refit
    refit_factor: int = 4  # a refit's epochs and patience: this many times the first fit's
    refit_max_epochs: int = 600  # at most this many epochs (L-BFGS steps) per refit

    def __post_init__(self):
        for name in ("n_train", "n_validation", "n_test", "n_ood"):
            check_int(name, getattr(self, name), minimum=2)
        check_int("n_tokens", self.n_tokens, minimum=3)
        check_int("ood_n_tokens", self.ood_n_tokens, minimum=self.n_tokens + 1)  # longer N
        if self.target != "synthetic":
            check_sources("target", [self.target])
        check_sources("secondary_targets", [target for target in self.secondary_targets if target != "synthetic"])
        if self.target in self.secondary_targets:
            raise fail("secondary_targets", f"targets other than the primary target {self.target!r}",
                       self.secondary_targets)
        check_int("layer", self.layer)
        check_int("head", self.head)
        check_choice("text_source", self.text_source, TEXT_SOURCES)
        check_choice("image_source", self.image_source, IMAGE_SOURCES)
        self.sweep(0)
        check_float("budget_tolerance", self.budget_tolerance, minimum=0.0)
        check_int_list("m", self.m, minimum=1)
        for name in ("n_seeds", "d_head", "max_epochs", "batch_sequences", "patience", "n_resamples", "memory_mb"):
            check_int(name, getattr(self, name), minimum=1)
        check_float("learning_rate", self.learning_rate, minimum=0.0, strict=True)
        check_float("min_improvement", self.min_improvement, minimum=0.0)
        self.refit

    @property
    def budget(self) -> TrainingBudget:
        return TrainingBudget(self.max_epochs, self.batch_sequences, self.learning_rate, self.patience,
                              self.min_improvement)

    @property
    def refit(self) -> RefitLadder:
        return RefitLadder(self.refit_attempts, self.refit_factor, self.refit_max_epochs)

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": self.n_train, "validation": self.n_validation, "test": self.n_test}

    def sweep(self, base_seed: int) -> Sweep:
        """The runner's circuits: the one under audit, then the listed nulls and baselines."""
        return Sweep(m=self.m, n_seeds=self.n_seeds, circuits=self.circuits, base_seed=base_seed,
                     memory_mb=self.memory_mb, audited_circuit=self.audited_circuit)


# --------------------------------------------------------------------------------------------------- splits
def synthetic_splits(parameters: Parameters, seed: int) -> dict[str, TargetBatch]:
    """Train / validation / test of one synthetic head, and the three out-of-distribution sets."""
    common = dict(d_head=parameters.d_head)
    main = synthetic_head(n_sequences=sum(parameters.sizes.values()), n_tokens=parameters.n_tokens,
                          logit_scale=parameters.logit_scale, seed=seed, **common)
    splits = split_by_sequence(main, parameters.sizes, seed)
    splits["ood_length"] = synthetic_head(n_sequences=parameters.n_ood, n_tokens=parameters.ood_n_tokens,
                                          logit_scale=parameters.logit_scale, seed=seed + 1, **common)
    splits["ood_scale"] = synthetic_head(n_sequences=parameters.n_ood, n_tokens=parameters.n_tokens,
                                         logit_scale=parameters.ood_logit_scale, seed=seed + 2, **common)
    splits["ood_head"] = other_head(splits["test"])
    return splits


def other_head(batch: TargetBatch) -> TargetBatch:
    """The same inputs seen by another head: its q and k, the same values (any target with alternative_qk)."""
    if batch.alternative_qk is None:
        raise fail("target", "a head with another head's q and k (alternative_qk) for the ood_head split",
                   batch.labels)
    q, k = batch.alternative_qk
    return replace(batch, q=q, k=k, alternative_qk=(batch.q, batch.k))


def _model_shape(loaded: LoadedModel) -> tuple[int, int, int | None]:
    """(layers, heads, longest input) of a loaded model; None: no limit that concerns us."""
    if loaded.is_vision:
        return loaded.handle.config.n_layers, loaded.handle.config.n_heads, None
    config = loaded.handle.model.config
    return loaded.handle.n_layers, loaded.handle.n_heads, getattr(config, "max_position_embeddings", None)


def _index(name: str, value: int, total: int) -> int:
    if not -total <= value < total:
        raise fail(name, f"an index in [{-total}, {total - 1}]", value)
    return value % total


def real_splits(target: str, parameters: Parameters, seed: int) -> dict[str, TargetBatch]:
    """Splits of head ``parameters.head`` of layer ``parameters.layer`` of a real Transformer (see the module
    docstring); InputError naming the package when the model is not installed."""
    source_name(target, "target")
    n_main = sum(parameters.sizes.values())
    started = time.perf_counter()
    loaded = load(target, n_sequences=n_main, n_tokens=parameters.n_tokens, text_source=parameters.text_source,
                  image_source=parameters.image_source)
    n_layers, n_heads, longest = _model_shape(loaded)
    layer, head = _index("layer", parameters.layer, n_layers), _index("head", parameters.head, n_heads)
    if n_layers < 2 or n_heads < 2:
        raise fail("target", "a model with at least 2 layers and 2 heads (ood_layer, ood_head)", target)
    next_layer, next_head = (layer + 1) % n_layers, (head + 1) % n_heads
    if longest is not None and parameters.ood_n_tokens > longest:
        raise fail("ood_n_tokens", f"at most {longest} (the longest input {target} takes)", parameters.ood_n_tokens)
    batches = {(b.labels["layer"], b.labels["head"]): b
               for b in targets_of(loaded, [layer, next_layer], [head, next_head])}
    splits = split_by_sequence(batches[layer, head], parameters.sizes, seed)
    # the same permutation (seed, count) picks the same test sequences for the other layer and head
    splits["ood_layer"] = split_by_sequence(batches[next_layer, head], parameters.sizes, seed)["test"]
    splits["ood_head"] = split_by_sequence(batches[layer, next_head], parameters.sizes, seed)["test"]
    if "ood_length" in splits_for(target):
        splits["ood_length"] = _longer_windows(loaded, parameters, layer, head)
    LOG.info("%s layer %d head %d: splits ready in %.1f s", target, layer, head, time.perf_counter() - started)
    return {name: splits[name] for name in ("train", "validation", *splits_for(target))}


def _longer_windows(loaded: LoadedModel, parameters: Parameters, layer: int, head: int) -> TargetBatch:
    longer = dataclasses.replace(loaded, inputs=longer_window_ids(loaded.handle, parameters))
    return targets_of(longer, [layer], [head])[0]


def longer_window_ids(language_model: language.LanguageModel, parameters: Parameters):
    """(n_ood, ood_n_tokens) token ids from text after every window of the train/validation/test splits.

    Window j of length L starts at body token j * (L - 2) or later (at most two special tokens per window), so
    skipping the first ceil(n_main * n_tokens / (L - 2)) windows skips every token the other splits used.
    """
    n_main = sum(parameters.sizes.values())
    skip = math.ceil(n_main * parameters.n_tokens / (parameters.ood_n_tokens - 2))
    ids = language.text_sequences(language_model, n_sequences=skip + parameters.n_ood,
                                  n_tokens=parameters.ood_n_tokens, text_source=parameters.text_source)
    return ids[skip:]


def splits_for(target) -> tuple[str, ...]:
    """The evaluation splits of a target: the built-ins' own; any other source's those of the built-in of its
    modality (language: with ood_length, longer windows; vision: without)."""
    if isinstance(target, str) and target in TARGET_SPLITS:
        return TARGET_SPLITS[target]
    return TARGET_SPLITS["vit" if resolve_source(target, "target").modality == "vision" else "minilm"]


def target_splits(target: str, parameters: Parameters, seed: int) -> dict[str, TargetBatch]:
    return synthetic_splits(parameters, seed) if target == "synthetic" else real_splits(target, parameters, seed)


def head_name(batch: TargetBatch) -> str:
    """How a head is named in the tables' ``analysed_head`` column."""
    labels = batch.labels
    return f"{labels['target']}/layer{labels['layer']}/head{labels['head']}"


# -------------------------------------------------------------------------------------- pre-registration
def check_preregistration(spec: Spec, parameters: Parameters) -> dict:
    """The [preregistration] table, complete and consistent with the parameters, or an InputError naming why."""
    registered = spec.preregistration
    absent = [key for key in PREREGISTRATION_KEYS if key not in registered]
    if absent:
        raise fail(f"{spec.name}.preregistration", f"keys {list(PREREGISTRATION_KEYS)}", f"missing {absent}")
    check_float("preregistration.margin", registered["margin"], minimum=0.0)
    check_float("preregistration.alpha", registered["alpha"], minimum=0.0, strict=True, maximum=1.0)
    check_choice("preregistration.correction", registered["correction"], ("holm", "bonferroni"))
    names = set(parameters.circuits) | set(parameters.controls)
    if parameters.capacity_null:
        names |= {f"{c}_shuffled" for c in parameters.controls}
    for control in registered["primary_controls"]:
        check_choice("preregistration.primary_controls", control, sorted(names - {parameters.audited_circuit}))
    for split in registered["primary_splits"]:  # the pre-registered splits must exist for the primary target
        check_choice(f"preregistration.primary_splits (target {parameters.target!r})", split,
                     splits_for(parameters.target))
    if registered["primary_m"] != "largest":
        raise fail("preregistration.primary_m", "'largest' (the largest m of the run)", registered["primary_m"])
    return registered


def check_amendment(spec: Spec, parameters: Parameters, registered: dict) -> dict | None:
    """The latest [[amendments]] entry of the pre-registration, complete, dated and pinned to the original's
    hash (so an edited original is caught), or None when the spec has no amendment."""
    amendment = latest_amendment(spec, registered, AMENDMENT_KEYS)
    if amendment is None:
        return None
    if not parameters.v2_nulls:
        raise fail("v2_nulls", "true (the amendment's nulls)", parameters.v2_nulls)
    check_float("amendments.margin", amendment["margin"], minimum=0.0)
    check_float("amendments.alpha", amendment["alpha"], minimum=0.0, strict=True, maximum=1.0)
    check_choice("amendments.correction", amendment["correction"], ("holm", "bonferroni"))
    check_int("amendments.min_feature_draws", amendment["min_feature_draws"], minimum=1)
    names = set(parameters.circuits) | {"ridge_shuffled", *(f"{c}_v2_shuffled" for c in parameters.controls)}
    for control in amendment["primary_controls"]:
        check_choice("amendments.primary_controls", control, sorted(names - {parameters.audited_circuit}))
    for split in amendment["primary_splits"]:
        check_choice(f"amendments.primary_splits (target {parameters.target!r})", split,
                     splits_for(parameters.target))
    if amendment["primary_m"] != "largest":
        raise fail("amendments.primary_m", "'largest' (the largest m of the run)", amendment["primary_m"])
    return amendment


def families_v2(parameters: Parameters, amendment: dict, splits: tuple[str, ...] | None = None,
                role: str = "primary") -> list[Family]:
    """Amendment v2's families: its primary comparisons at the largest m, and the same nulls at every other
    m, each with the crossed bootstrap and the constant floor."""
    splits = splits_for(parameters.target) if splits is None else tuple(splits)
    largest = max(parameters.m)
    others = tuple(m for m in parameters.m if m != largest)
    nulls, margin = tuple(amendment["primary_controls"]), float(amendment["margin"])
    common = dict(margin=margin, alternative="greater", design="crossed", constant_floor=True, test="mean")
    primary_splits = tuple(amendment["primary_splits"]) if role == "primary" else splits
    name = "primary" if role == "primary" else SECONDARY_PREFIX + "nulls"
    result = [Family(name + V2_SUFFIX, nulls, (largest,), primary_splits, **common)]
    if others:
        prefix = "" if role == "primary" else SECONDARY_PREFIX
        result.append(Family(f"{prefix}nulls_other_m{V2_SUFFIX}", nulls, others, splits, **common))
    return result


def families(parameters: Parameters, registered: dict, splits: tuple[str, ...] | None = None,
             role: str = "primary") -> list[Family]:
    """Primary (pre-registered, decides C3), the same nulls at every other m, baselines, and efficiency.

    ``splits``: the evaluation splits the head has (default: those of the primary target). A secondary head
    gets the same comparisons under ``secondary_`` names, its nulls on all of its splits.
    """
    check_choice("role", role, ("primary", "secondary"))
    splits = splits_for(parameters.target) if splits is None else tuple(splits)
    largest = max(parameters.m)
    others = tuple(m for m in parameters.m if m != largest)
    nulls = tuple(registered["primary_controls"])
    margin = float(registered["margin"])
    baselines = tuple(c for c in ("uniform", "elu_linear", "no_astrocyte") if c in parameters.circuits)
    if role == "primary":
        result = [Family("primary", nulls, (largest,), tuple(registered["primary_splits"]), margin, "greater")]
    else:
        result = [Family("nulls", nulls, (largest,), splits, margin, "greater")]
    if others:
        result.append(Family("nulls_other_m", nulls, others, splits, margin, "greater"))
    if baselines:
        result.append(Family("baselines", baselines, tuple(parameters.m), splits, 0.0, "greater"))
    result.append(Family("efficiency", tuple(parameters.controls), tuple(parameters.m), splits, 0.0, "two-sided"))
    if role == "secondary":
        result = [replace(family, name=SECONDARY_PREFIX + family.name) for family in result]
    return result


# ------------------------------------------------------------------------------------------------ analysis
def circuit_measurements(splits: dict[str, TargetBatch], parameters: Parameters, seed: int, context: RunContext
                         ) -> pd.DataFrame:
    """The runner's circuits and nulls on every split (the circuit is scored on training sequences too:
    it never saw them, so its in-sample and held-out errors agree by construction)."""
    sweep = parameters.sweep(seed)
    frames = []
    for name, batch in splits.items():
        table = run_sweep([batch], sweep, progress=False, executor=context.executor)
        table.insert(table.columns.get_loc("circuit"), "split", name)
        frames.append(table.assign(scored_against="true", status="ok"))
    return pd.concat(frames, ignore_index=True)


def learning_curves(measurements: pd.DataFrame, accounting: pd.DataFrame, audited: str = DEFAULT_CIRCUIT) -> pd.DataFrame:
    """Mean in-sample (train) and held-out (test) error against fitted-parameter count, circuit included,
    per head (target, layer, head)."""
    keys = [key for key in ("target", "layer", "head") if key in measurements and key in accounting]
    rows = measurements[(measurements["metric"] == "relative_error") & measurements["split"].isin(["train", "test"])
                        & measurements["m"].notna()]
    rows = rows[rows["circuit"].isin([audited, *accounting.loc[accounting["n_fitted"] > 0, "circuit"]])]
    curves = (rows.groupby([*keys, "circuit", "m", "split", "scored_against"], as_index=False)["value"]
              .agg(error="mean", error_sd="std", n="count"))
    counts = accounting[[*keys, "circuit", "m", "n_fitted", "n_fixed_random", "n_input_determined"]]
    curves = curves.merge(counts, on=[*keys, "circuit", "m"], how="left")
    index = [*keys, "circuit", "m", "scored_against"]
    wide = curves.pivot_table(index=index, columns="split", values="error")
    if {"train", "test"} <= set(wide.columns):
        gap = (wide["test"] - wide["train"]).rename("generalisation_gap").reset_index()
        curves = curves.merge(gap, on=index, how="left")
    return curves


@dataclass(frozen=True)
class HeadAnalysis:
    """One head's splits, its role and its parameter accounting (computed before any training)."""

    role: str
    splits: dict
    accounting: pd.DataFrame

    @property
    def name(self) -> str:
        return head_name(self.splits["train"])


def prepare(target: str, role: str, parameters: Parameters, plan: ControlPlan, seed: int) -> HeadAnalysis:
    """Splits and accounting of one head; fails early (before any training) when a budget cannot be matched."""
    splits = target_splits(target, parameters, seed)
    train = splits["train"]
    d, d_v = train.q.shape[-1], train.v.shape[-1]
    constant = ("constant",) if plan.v2_nulls else ()
    accounting = accounting_table(parameters.sweep(0).run_circuits + plan.names + constant, parameters.m, d, d_v,
                                  parameters.budget_tolerance, parameters.audited_circuit)
    labelled(accounting, {**{key: train.labels[key] for key in ("target", "layer", "head")}, "d_head": d})
    return HeadAnalysis(role, splits, accounting)


def analyse(head: HeadAnalysis, parameters: Parameters, plan: ControlPlan, registered: dict, seed: int,
            context: RunContext, amendment: dict | None = None) -> dict[str, pd.DataFrame]:
    """Circuits, fitted controls, learning curves and comparisons of one head, labelled by role and head."""
    circuits = circuit_measurements(head.splits, parameters, seed, context)
    controls, training, history, refits = run_controls(head.splits, plan, progress=context.progress)
    measurements = pd.concat([circuits, controls], ignore_index=True)
    measurements["m"] = measurements["m"].astype("Int64")
    measurements["seed"] = measurements["seed"].astype("Int64")
    evaluation = tuple(name for name in head.splits if name in EVALUATION_SPLITS)
    tests = comparisons_table(measurements, families(parameters, registered, evaluation, head.role),
                              alpha=float(registered["alpha"]), correction=registered["correction"],
                              n_resamples=parameters.n_resamples, seed=seed, audited=parameters.audited_circuit)
    if amendment is not None:
        amended = comparisons_table(measurements, families_v2(parameters, amendment, evaluation, head.role),
                                    alpha=float(amendment["alpha"]), correction=amendment["correction"],
                                    n_resamples=parameters.n_resamples, seed=seed, audited=parameters.audited_circuit)
        amended["amendment_sha256"] = preregistration_hash(amendment)
        amended["amendment_version"] = int(amendment["version"])
        amended["min_feature_draws"] = int(amendment["min_feature_draws"])
        tests = pd.concat([tests, amended], ignore_index=True)
    labelled(tests, {key: head.splits["train"].labels[key] for key in ("target", "layer", "head")})
    tables = {"": measurements, "_accounting": head.accounting, "_training": training, "_history": history,
              "_refits": refits,
              "_learning_curves": learning_curves(measurements, head.accounting, parameters.audited_circuit), "_tests": tests}
    for table in tables.values():
        labelled(table, {"role": head.role, "analysed_head": head.name})
    return tables


def control_plan(parameters: Parameters, seed: int) -> ControlPlan:
    """The fitted controls and nulls of a run (the benchmark times the same plan)."""
    return ControlPlan(m=parameters.m, n_seeds=parameters.n_seeds, controls=parameters.controls,
                       capacity_null=parameters.capacity_null, budget=parameters.budget,
                       budget_tolerance=parameters.budget_tolerance, base_seed=seed,
                       v2_nulls=parameters.v2_nulls, null_learning_rates=parameters.null_learning_rates,
                       control_seeds=parameters.control_seeds, refit=parameters.refit)


def study_cost(parameters: Parameters) -> StudyCost:
    """For the cost estimate (astrostats.cost): the fitted controls' and the v2 nulls' training, as multiply-adds
    of every epoch's passes over the training and validation sequences at each m, on the target and each secondary
    head (the epochs at their cap; within 1.2x of the measured time at the quick and full profiles)."""
    fits = len(parameters.controls) * ((parameters.control_seeds or parameters.n_seeds)
                                       + parameters.n_seeds * len(parameters.null_learning_rates))
    heads = 1 + len(parameters.secondary_targets)
    sequences = parameters.n_train + parameters.n_validation
    return StudyCost(multiply_adds=float(heads * fits * parameters.max_epochs * sequences * parameters.n_tokens
                                         * sum(parameters.m) * parameters.d_head))


def run(spec: Spec, context: RunContext) -> dict[str, pd.DataFrame]:
    parameters = spec.bind(Parameters)
    registered = check_preregistration(spec, parameters)
    amendment = check_amendment(spec, parameters, registered)
    plan = control_plan(parameters, spec.seed)
    heads = [prepare(parameters.target, "primary", parameters, plan, spec.seed)]  # fails early if unmatched
    heads += [prepare(target, "secondary", parameters, plan, spec.seed) for target in parameters.secondary_targets]
    collected: dict[str, list[pd.DataFrame]] = {}
    for head in heads:
        started = time.perf_counter()
        for suffix, table in analyse(head, parameters, plan, registered, spec.seed, context, amendment).items():
            collected.setdefault(suffix, []).append(table)
        LOG.info("%s (%s): %.1f s", head.name, head.role, time.perf_counter() - started)
    tables = {f"{spec.name}{suffix}": pd.concat(frames, ignore_index=True) for suffix, frames in collected.items()}
    tables[spec.name].insert(0, "analysis", spec.name)
    tests = tables[f"{spec.name}_tests"]
    tests.insert(0, "analysis", spec.name)
    tests["spec_sha256"] = spec.sha256
    tests["preregistration_sha256"] = preregistration_hash(registered)
    return tables


__all__ = ["Parameters", "run", "control_plan", "synthetic_splits", "real_splits", "target_splits", "other_head", "families",
           "check_preregistration", "check_amendment", "families_v2", "preregistration_hash", "learning_curves", "prepare", "analyse", "head_name", "longer_window_ids", "TARGETS",
           "TARGET_SPLITS", "EVALUATION_SPLITS"]
