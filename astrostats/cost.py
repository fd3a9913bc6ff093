"""What a resolved spec will cost, estimated before anything is written: peak memory and time.

Read from the parameters by name, the same for every study: the hidden-unit widths (every ``m``-like field),
tokens, sequences, seeds, heads (synthetic logit scales, the real models' selected layers x heads), feature maps
and circuits. Two numbers per analysis:

* memory, a lower bound on the peak: one head's q, k, v for every sequence (float64), its exact attention
  (sequences x tokens x tokens), the largest projection W (m x d, drawn in float64 and held in float32) and one
  sequence's hidden-unit rates (tokens x m, float64), bounded by the study's ``memory_mb`` where it tiles them;
* time, a rough figure: the circuits' multiply-adds (heads x seeds x sequences x tokens x sum of m x (3 d) x
  maps x circuits) at ``MULTIPLY_ADDS_PER_S`` on one core, the statistics' resamples at ``RESAMPLES_PER_S``,
  plus ``FIXED_SECONDS``, plus what the study adds (below). Calibrated on the quick profile (measured per analysis,
  2 cores); it is meant to tell a minute from an hour and an hour from a year, not to the minute (within about a
  factor of 5 either way; benchmarks/README.md sets each shipped analysis's estimate beside its measured time).

A study whose parameters name widths that run no circuit (simulated tables) lists them in ``COST_IGNORED``. A
study whose work the names above do not show declares it with ``study_cost(parameters)`` returning a
:class:`StudyCost`: how many times its sweeps run (biology's astrocyte variants), multiply-adds of other work
(training fitted controls) and seconds of work that is neither (planted scenarios).
The command line refuses a plan whose memory exceeds ``--max-gib`` (default: this machine's memory) or whose time
exceeds ``--max-hours`` (default :data:`DEFAULT_MAX_HOURS`), before anything is written.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from astrostats.validation import InputError

M_FIELDS = ("m", "m_values", "response_m", "end_to_end_m", "measured_m", "measured_large_m", "scaling_m")
TOKEN_FIELDS = ("n_tokens", "ood_n_tokens")
SEQUENCE_FIELDS = ("n_sequences", "measured_sequences", "end_to_end_sequences", "scaling_sequences",
                   "response_sequences")
SPLIT_FIELDS = ("n_train", "n_validation", "n_test", "n_ood")  # sequences of a fitted study, all in memory
SEED_FIELDS = ("n_seeds", "measured_seeds", "end_to_end_seeds", "scaling_seeds", "control_seeds")
REPLICATE_FIELDS = ("n_replicates", "n_simulations", "recovery_replicates")
RESAMPLE_FIELDS = ("n_resamples", "bootstrap_resamples", "recovery_resamples", "permutation_resamples")
DEFAULT_D_HEAD = 64  # real heads: SmolLM2's 64 (MiniLM 32, the ViT 16)
VIT_TOKENS = 50
MODEL_SHAPES = {"minilm": (12, 12), "smollm2": (30, 9), "vit": (4, 4)}  # layers, heads (their configurations)
DEFAULT_MODEL_SHAPE = (12, 12)  # a model not listed here
NESTED = ("measured_m",)  # widths measured as nested blocks of the largest: the largest alone costs
#: (widths, seeds, sequences, layers, heads) of each circuit sweep a study may run; a group whose widths field
#: the parameters lack is skipped; missing seeds fall back to n_seeds, missing sequences to the largest count
SWEEPS = (("m", "n_seeds", "n_sequences", ("sweep_layers", "real_layers"), ("sweep_heads", "real_heads")),
          ("m_values", "n_seeds", "n_sequences", None, None),
          ("response_m", None, "response_sequences", "response_layers", "response_heads"),
          ("end_to_end_m", "end_to_end_seeds", "end_to_end_sequences", None, None),
          ("measured_m", "measured_seeds", "measured_sequences", "measured_layers", "measured_heads"),  # nested
          ("measured_large_m", "measured_seeds", "measured_sequences", None, "measured_large_max_heads"),
          ("scaling_m", "scaling_seeds", "scaling_sequences", None, None))
BYTES_PER_PROJECTION_ENTRY = 8 + 4  # W drawn in float64, then held in float32
MULTIPLY_ADDS_PER_S = 2.5e10  # one core, circuits (calibrated on the quick profile's scaling and circuits)
RESAMPLES_PER_S = 2e4  # one core: statistic recomputations per second (bootstrap, permutation, replicates)
FIXED_SECONDS = 3.0  # per analysis: imports, tables, figures
DEFAULT_MAX_HOURS = 48.0
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class StudyCost:
    """What a study adds to the count from its parameters' names: ``circuit_runs``, how many times its circuit
    sweeps run; ``multiply_adds`` of work that is no sweep; ``seconds`` of one core for work that is neither."""

    circuit_runs: float = 1.0
    multiply_adds: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class Cost:
    name: str
    peak_bytes: float
    core_seconds: float
    detail: str

    def line(self) -> str:
        return (f"{self.name}: about {_bytes(self.peak_bytes)} peak (lower bound), {_duration(self.core_seconds)} of one "
                f"core ({self.detail})")


def _bytes(value: float) -> str:
    return f"{value / 2**30:.3g} GiB" if value >= 2**28 else f"{value / 2**20:.3g} MiB"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds > 3.15e9:
        return "more than a century"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * SECONDS_PER_HOUR:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / SECONDS_PER_HOUR:.1f} h"
    return f"{seconds / 86400:.3g} days"


def _values(parameters, names) -> list[int | float]:
    found = []
    for name in names:
        value = getattr(parameters, name, None)
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item) and item > 0:
                found.append(item)
    return found


def _field(parameters, names):
    for name in (names,) if isinstance(names, str) else names or ():
        if hasattr(parameters, name):
            return getattr(parameters, name)
    return ()


def _selected(parameters, model: str, layers_field, heads_field) -> int:
    """Heads of ``model`` a group selects: its layers x heads lists, () meaning all of them."""
    n_layers, n_heads = MODEL_SHAPES.get(model, DEFAULT_MODEL_SHAPE)
    layers, heads = _field(parameters, layers_field), _field(parameters, heads_field)
    count_layers = len(layers) if isinstance(layers, (list, tuple)) and layers else n_layers
    if isinstance(heads, dict):  # a budget per model
        heads = heads.get(model, 0)
    if isinstance(heads, int) and not isinstance(heads, bool):
        return min(heads, count_layers * n_heads)
    if not layers and not heads and (hasattr(parameters, "layer") or hasattr(parameters, "head")):
        return 1  # a study of one named layer and head
    count_heads = len(heads) if isinstance(heads, (list, tuple)) and heads else n_heads
    return count_layers * count_heads


def _models(parameters) -> list[str]:
    found = list(getattr(parameters, "real_models", ()) or ()) + list(getattr(parameters, "models", ()) or ())
    target = getattr(parameters, "target", None)
    found += [target] if isinstance(target, str) and target != "synthetic" else []
    found += list(getattr(parameters, "secondary_targets", ()) or ())
    return [model for model in found if isinstance(model, str)]


def estimate(name: str, parameters, ignored: tuple[str, ...] = (), study: StudyCost = StudyCost()) -> Cost:
    """The cost of one analysis's resolved parameters, with what its ``study`` adds (see the module's docstring)."""
    fields = {f.name for f in dataclasses.fields(parameters)} - set(ignored)

    def values(names):
        return _values(parameters, [n for n in names if n in fields])

    tokens = max(values(TOKEN_FIELDS) or [0])
    all_sequences = max(values(SEQUENCE_FIELDS) + [sum(values(SPLIT_FIELDS))] or [0])
    d = max(values(("d_head",)) or [DEFAULT_D_HEAD])
    maps = len(getattr(parameters, "feature_maps", ()) or ()) or 1
    circuits = len(getattr(parameters, "circuits", ()) or ()) or 1
    scales = getattr(parameters, "logit_scales", None)
    synthetic = (len(scales) if isinstance(scales, (list, tuple)) else 1) if "d_head" in fields else 0
    models = _models(parameters)
    lengths = values(("n_tokens",)) or [tokens]  # a study sweeping the context length lists several
    multiply_adds, widths, head_count, seeds_shown = 0.0, [], 0, 1
    for m_field, seeds_field, sequences_field, layers_field, heads_field in SWEEPS:
        group_widths = values((m_field,))
        if not group_widths:
            continue
        widths += group_widths
        seeds = max(values((seeds_field,)) or values(("n_seeds",)) or [1])
        sequences = max(values((sequences_field,)) or [all_sequences])
        seeds_shown = max(seeds_shown, seeds)
        heads = [(synthetic, length) for length in lengths] if synthetic else []  # one set per context length
        heads += [(_selected(parameters, model, layers_field, heads_field), VIT_TOKENS if model == "vit" else tokens)
                  for model in models]
        head_count = max(head_count, sum(count for count, _ in heads))
        swept = max(group_widths) if m_field in NESTED else sum(group_widths)
        multiply_adds += sum(count * seeds * sequences * head_tokens * swept * 3 * d * maps * circuits
                             for count, head_tokens in heads)
    largest_m = max(widths or [0])
    memory_cap = max(values(("memory_mb",)) or [math.inf]) * 2**20
    head_tokens = max([tokens] + [VIT_TOKENS for model in models if model == "vit"])
    peak = (all_sequences * head_tokens * d * 3 * 8 + all_sequences * head_tokens ** 2 * 8
            + min(head_tokens * largest_m * 8, memory_cap) + largest_m * d * BYTES_PER_PROJECTION_ENTRY)
    replicates = max(values(REPLICATE_FIELDS) or [1])
    resamples = sum(values(RESAMPLE_FIELDS))
    multiply_adds *= max(values(("n_replicates",)) or [1])  # planted replicates run the circuits again
    multiply_adds = multiply_adds * study.circuit_runs + study.multiply_adds
    seconds = (FIXED_SECONDS + multiply_adds / MULTIPLY_ADDS_PER_S + replicates * resamples / RESAMPLES_PER_S
               + study.seconds)
    detail = (f"m up to {largest_m:g}, {tokens:g} tokens, {all_sequences:g} sequences, {head_count} heads, "
              f"{seeds_shown:g} seeds" if widths else f"{replicates:g} replicates, {resamples:g} resamples")
    return Cost(name, peak, seconds, detail)


def machine_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check(costs: list[Cost], *, cores: int, max_gib: float | None, max_hours: float | None) -> str:
    """The plan's summary line; an InputError when an analysis needs more memory than ``max_gib`` (default: the
    machine's) or the whole plan more time than ``max_hours`` on ``cores`` cores (default DEFAULT_MAX_HOURS)."""
    limit_bytes = max_gib * 2**30 if max_gib is not None else machine_memory_bytes()
    for cost in costs:
        if limit_bytes is not None and cost.peak_bytes > limit_bytes:
            where = "--max-gib" if max_gib is not None else "this machine's memory"
            raise InputError(f"{cost.name}.parameters: needs at least {cost.peak_bytes / 2**30:.3g} GiB ({cost.detail}), "
                             f"more than {where} ({limit_bytes / 2**30:.3g} GiB); reduce the sizes or raise --max-gib")
    total = sum(cost.core_seconds for cost in costs)
    wall = max(max((cost.core_seconds for cost in costs), default=0.0), total / max(1, cores))
    hours = DEFAULT_MAX_HOURS if max_hours is None else max_hours
    summary = f"estimated: {_duration(wall)} on {cores} core{'s' if cores != 1 else ''} (rough, within ~5x)"
    if wall > hours * SECONDS_PER_HOUR:
        heaviest = max(costs, key=lambda cost: cost.core_seconds)
        raise InputError(f"{summary}, more than --max-hours {hours:g}; the largest is {heaviest.line()}; reduce the "
                         "sizes or raise --max-hours")
    return summary


__all__ = ["Cost", "StudyCost", "estimate", "check", "machine_memory_bytes", "DEFAULT_MAX_HOURS"]
