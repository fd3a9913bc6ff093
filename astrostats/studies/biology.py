"""Realistic astrocytes (issue 7): does the error law survive measured kinetics, saturation, noise, domains,
heterogeneous gains and the synapse counts of one astrocyte?

For every variant of astrostats.circuits.biophysics (with the ideal circuit and the no-astrocyte null beside
them) the relative error against exact softmax attention is measured over m, feature seeds and sequences on
synthetic heads, and, by the same code (a target is a source of q, k, v and exact outputs), on real
Transformer heads (``real_models`` x ``real_layers`` x ``real_heads``: MiniLM, SmolLM2, the ViT trained here;
the same first ``n_sequences`` text windows of ``n_tokens`` tokens or held-out test images as the figure-3
analyses) for the variants at the levels in ``real_levels`` (default: ideal, null and measured, the ones
claim C4 judges). A model that is not installed is an InputError naming its package. The floor E_inf and m_required at 10 % are fitted (astrostats.stats.scaling) and set against
one rodent (1e5) and one human (2e6) astrocyte's synapses. When the shared culture Ca2+ data exist, the noise
and event model is calibrated on them (astrostats.targets.recordings), the calibrated SNR joins the noise
variants and the noise is resampled from the real baselines.

Tables: ``<name>`` (tidy errors: target labels (target, layer, head, logit_scale, ...), circuit, variant, family, level, feature_map, m, seed,
sequence_id, metric, value, status), ``<name>_floors`` (fits per target x layer x head x variant x feature map, with the
synapse-count comparison), ``<name>_variants`` (definitions), ``<name>_synapse_counts`` and
``<name>_calibration`` (data against model; flagged insufficient_data when the data are absent).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from astrostats.circuits import biophysics as bio
from astrostats.circuits.features import FEATURE_MAPS, PAIRED_MAPS
from astrostats.circuits.registry import DEFAULT_CIRCUIT
from astrostats.cost import StudyCost
from astrostats.constants import HUMAN_SYNAPSES, RODENT_SYNAPSES, SYNAPSE_SOURCES, TOLERANCE
from astrostats.runner import Sweep, draw_projections, items_per_chunk, references, score, tidy_rows
from astrostats.spec import Spec
from astrostats.stats.multitest import adjust_p_values
from astrostats.stats.scaling import scaling_fits_table
from astrostats.stats.scaling_result import epsilon_label
from astrostats.studies.base import RunContext
from astrostats.targets.models import load, targets_of
from astrostats.targets.sources import check_sources, source_name
from astrostats.targets import recordings
from astrostats.targets.corpora import IMAGE_SOURCES, TEXT_SOURCES
from astrostats.targets.synthetic import LOGIT_SCALES, synthetic_head
from astrostats.validation import check_choice, check_float, check_int, fail
from astrostats.seeding import feature_code, seed_sequence, torch_generator

LOG = logging.getLogger(__name__)
LEVELS = ("ideal", "null", "measured", "stress")
FLOOR_ALPHA = 0.05
SYNAPSE_COUNTS = pd.DataFrame([
    {"species": "rodent", "synapses": RODENT_SYNAPSES, "source": SYNAPSE_SOURCES["rodent"]},
    {"species": "human", "synapses": HUMAN_SYNAPSES, "source": SYNAPSE_SOURCES["human"]},
])


@dataclass(frozen=True)
class Parameters:
    m: tuple[int, ...] = (16, 64, 256, 1024, 4096, 16384, 65536)
    n_seeds: int = 16
    n_sequences: int = 8
    logit_scales: tuple = ("near_uniform_unit_norm", "near_uniform_large_norm")
    n_tokens: int = 197
    d_head: int = 64
    feature_maps: tuple[str, ...] = ("positive",)
    causal: bool = False
    token_interval_s: float = bio.TOKEN_INTERVAL_S
    hill_n: tuple = (1, 2, 4)
    ec50_ratios: tuple = (0.25, 1.0, 4.0)
    slow_shapes: tuple = ("event", "exponential", "exponential", "exponential")
    slow_rise_s: tuple = (0.55, 0.12, 2.0, 0.3)
    slow_decay_s: tuple = (0.35, 0.35, 7.0, 20.0)
    li_rinzel_ip3: tuple = (0.3, 0.5, 1.5)
    noise_snr: tuple = (2.0, bio.MEASURED_EVENT_SNR, 5.5)
    microdomains: tuple = (5, 50)
    gain_sigmas: tuple = (0.5, 1.0)
    gain_couplings: tuple = (0.0, 0.5)
    divisor_noise_scales: tuple = (0.5, 1.0, 2.0, 4.0)  # whole-cell CV = scale x baseline noise SD (assumption)
    use_recordings: bool = True
    real_models: tuple[str | dict, ...] = ()  # real Transformer heads beside the synthetic ones (names, folders)
    real_layers: tuple[int, ...] = (0,)
    real_heads: tuple[int, ...] = (0,)
    real_levels: tuple[str, ...] = ("ideal", "null", "measured")
    text_source: str = "pydoc"
    image_source: str = "mnist"
    n_resamples: int = 1000
    memory_mb: int = 512

    def __post_init__(self):
        for value in self.m:
            check_int("m", value, minimum=2)
        check_int("n_seeds", self.n_seeds, minimum=2)
        check_int("n_sequences", self.n_sequences, minimum=2)
        check_int("n_resamples", self.n_resamples, minimum=20)
        for feature in self.feature_maps:
            check_choice("feature_maps", feature, FEATURE_MAPS)
        check_float("token_interval_s", self.token_interval_s, minimum=0.0, strict=True)
        check_sources("real_models", self.real_models)
        for level in self.real_levels:
            check_choice("real_levels", level, LEVELS)
        if self.real_models and not (self.real_layers and self.real_heads and self.real_levels):
            raise fail("real_layers, real_heads, real_levels", "non-empty lists when real_models is set",
                       (self.real_layers, self.real_heads, self.real_levels))
        for name in ("real_layers", "real_heads"):
            for value in getattr(self, name):
                check_int(name, value)
        check_choice("text_source", self.text_source, TEXT_SOURCES)
        check_choice("image_source", self.image_source, IMAGE_SOURCES)
        if not len(self.slow_shapes) == len(self.slow_rise_s) == len(self.slow_decay_s):
            raise fail("slow_shapes, slow_rise_s, slow_decay_s", "lists of equal length",
                       (len(self.slow_shapes), len(self.slow_rise_s), len(self.slow_decay_s)))
        self._check_physical()

    def _check_physical(self) -> None:
        """Every value of every physical list, at bind time: a bad spec fails before anything runs."""
        for name in ("m", "feature_maps", "logit_scales"):
            if not getattr(self, name):
                raise fail(name, "a non-empty list", getattr(self, name))
        for scale in self.logit_scales:
            if isinstance(scale, str):
                check_choice("logit_scales", scale, LOGIT_SCALES)
            else:
                check_float("logit_scales", scale, minimum=0.0, strict=True)
        check_int("n_tokens", self.n_tokens, minimum=1)
        check_int("d_head", self.d_head, minimum=1)
        check_int("memory_mb", self.memory_mb, minimum=1)
        for name in ("causal", "use_recordings"):
            if not isinstance(getattr(self, name), bool):
                raise fail(name, "true or false", getattr(self, name))
        positive = ("hill_n", "ec50_ratios", "slow_rise_s", "slow_decay_s", "noise_snr", "divisor_noise_scales")
        for name in positive:
            for value in getattr(self, name):
                check_float(name, value, minimum=0.0, strict=True)
        for shape in self.slow_shapes:
            check_choice("slow_shapes", shape, bio.KERNEL_SHAPES)
        rest = bio.LiRinzelParameters().ip3_rest
        for value in self.li_rinzel_ip3:
            check_float("li_rinzel_ip3", value, minimum=rest)
        for value in self.microdomains:
            check_int("microdomains", value, minimum=1)
        for value in self.gain_sigmas:
            check_float("gain_sigmas", value, minimum=0.0)
        for value in self.gain_couplings:
            check_float("gain_couplings", value, minimum=0.0, maximum=1.0)


def variants(parameters: Parameters, calibrated_snr: float | None = None,
             baseline_noise_sd: float | None = None) -> list:
    """Every variant, with its level: ``measured`` (parameters at a published or calibrated value),
    ``stress`` (brackets around them, and operating points no experiment has measured in the circuit's units:
    the Li-Rinzel IP3 levels, whole-cell noise with CV = 1/event-SNR), ``ideal`` and ``null``. Whole-cell noise
    at level ``measured`` is derived from the baseline noise (calibrated, else bio.BASELINE_NOISE_SD) at scale 1;
    the other scales are the declared assumption's sweep (``stress``)."""
    dt = parameters.token_interval_s
    chosen = [bio.Ideal(), bio.NoAstrocyte()]
    chosen += [bio.Saturating(float(n), float(r), level="measured" if (n, r) == (2, 1.0) else "stress")
               for n in parameters.hill_n for r in parameters.ec50_ratios]
    for index, (shape, rise, decay) in enumerate(zip(parameters.slow_shapes, parameters.slow_rise_s, parameters.slow_decay_s)):
        measured = (shape == "event") or (rise, decay) == (0.12, 0.35)
        chosen.append(bio.SlowDivisor(float(rise), float(decay), shape, dt, level="measured" if measured else "stress"))
    chosen += [bio.LiRinzel(float(level), dt, level="stress") for level in parameters.li_rinzel_ip3]
    snrs = [(float(s), "measured" if s == bio.MEASURED_EVENT_SNR else "stress") for s in parameters.noise_snr]
    if calibrated_snr is not None:
        snrs.append((round(float(calibrated_snr), 3), "measured"))
    chosen += [bio.WholeCellNoise(s, level="stress") for s, _ in snrs]  # CV = 1/event-SNR: a floor by construction
    chosen += [bio.ProcessNoise(s, level=level) for s, level in snrs]
    noise_sd = bio.BASELINE_NOISE_SD if baseline_noise_sd is None else float(baseline_noise_sd)
    chosen += [bio.BaselineNoise.derived(float(scale), noise_sd, level="measured" if scale == 1.0 else "stress")
               for scale in parameters.divisor_noise_scales]
    for domains in parameters.microdomains:
        chosen += [bio.Microdomains(int(domains), bio.WHOLE_CELL_FRACTION, level="measured"),
                   bio.Microdomains(int(domains), None, level="stress")]
    chosen += [bio.HeterogeneousGains(float(s), float(c), level="measured" if c == 0.0 else "stress")
               for s in parameters.gain_sigmas for c in parameters.gain_couplings]
    return unique_variants(chosen)


def unique_variants(chosen: list) -> list:
    """One variant per name (a calibrated SNR that rounds to a listed one, a value listed twice), in first-seen
    order; where the copies' levels differ, the ``measured`` one is kept, so no fit counts rows twice."""
    kept: dict[str, object] = {}
    for variant in chosen:
        if variant.name not in kept or variant.level == "measured":
            kept[variant.name] = variant
    return list(kept.values())


ASSUMPTIONS = {
    "li_rinzel": "stress: the IP3 operating point in the circuit's units is not measured; swept across regimes",
    "noise_whole_cell": "stress: CV = 1/event-SNR per token treats every token as one calcium event",
    "noise_whole_cell_baseline": "assumption: the divisor's relative noise is the imaging baseline noise (dF/F) "
                                 "times the scale; scale 1 is level 'measured', the others bracket it",
}


def variants_table(chosen: list) -> pd.DataFrame:
    """One row per variant: its level and, where a value is assumed rather than measured, the assumption."""
    def assumption(v) -> str:
        key = "noise_whole_cell_baseline" if isinstance(v, bio.BaselineNoise) else v.family
        return ASSUMPTIONS.get(key, "")
    return pd.DataFrame([{"variant": v.name, "family": v.family, "level": v.level,
                          "settings": ", ".join(f"{k}={val}" for k, val in bio.variant_settings(v).items()),
                          "assumption": assumption(v)}
                         for v in chosen])


def preflight(parameters: Parameters) -> None:
    """Before the run writes anything (the command line calls it): the calcium data a user named must exist and
    load (an InputError otherwise: exit 2, not an uncalibrated run or a failure after outputs were written)."""
    if parameters.use_recordings:
        directory = recordings.calcium_data_dir(strict=True)
        if directory is not None:
            recordings.load_reference_data(directory)


def calibration(parameters: Parameters, seed: int) -> tuple[pd.DataFrame, float | None, torch.Tensor | None,
                                                             float | None]:
    """Data-vs-model table, calibrated event SNR, the real baseline-noise pool and the baseline noise SD in
    dF/F (None when no data)."""
    directory = recordings.calcium_data_dir(strict=True) if parameters.use_recordings else None
    if directory is None:
        reason = ("use_recordings = false" if not parameters.use_recordings else
                  f"no calcium data (set ${recordings.CALCIUM_DIR_ENV} or provide ../shared/data/astrocyte-calcium)")
        return pd.DataFrame([{"metric": metric, "status": "insufficient_data", "reason": reason}
                             for metric in recordings.METRICS]), None, None, None
    data = recordings.load_reference_data(directory)
    model, report = recordings.calibrate_event_model(data["raw"], shape=data["processed"], seed=seed)
    summary = recordings.summarise(recordings.measure_events(data["raw"]), n_resamples=parameters.n_resamples, seed=seed)
    table = report.merge(summary[["metric", "ci_low", "ci_high", "standard_error", "n"]], on="metric", how="left")
    table = table.rename(columns={"ci_low": "data_ci_low", "ci_high": "data_ci_high", "standard_error": "data_se"})
    table["within_data_ci"] = (table["model"] >= table["data_ci_low"]) & (table["model"] <= table["data_ci_high"])
    for name in ("noise_sd", "event_snr", "rise_s", "decay_s", "noise_ar1"):
        table[f"model_{name}"] = getattr(model, name)
    table["status"], table["reason"], table["source"] = "ok", "", str(directory)
    pool = torch.from_numpy(recordings.baseline_noise_pool(data["raw"]))
    return table, model.event_snr, pool, model.noise_sd


def targets(spec: Spec, parameters: Parameters):
    """The synthetic heads (one per logit scale), then the real heads (see the module docstring)."""
    synthetic = [synthetic_head(n_sequences=parameters.n_sequences, n_tokens=parameters.n_tokens,
                                d_head=parameters.d_head, logit_scale=scale, seed=spec.seed, causal=parameters.causal)
                 for scale in parameters.logit_scales]
    return synthetic + real_targets(parameters)


def real_targets(parameters: Parameters) -> list:
    """TargetBatches of the chosen layers and heads of every real model, as the figure-3 analyses load them."""
    if not parameters.real_models:
        return []
    batches = []
    for entry in parameters.real_models:
        name = source_name(entry, "real_models")
        loaded = load(entry, n_sequences=parameters.n_sequences, n_tokens=parameters.n_tokens,
                      text_source=parameters.text_source, image_source=parameters.image_source)
        handle = loaded.handle.config if loaded.is_vision else loaded.handle
        for key, total in (("real_layers", handle.n_layers), ("real_heads", handle.n_heads)):
            if not all(-total <= index < total for index in getattr(parameters, key)):
                raise fail(key, f"indices in [{-total}, {total - 1}] ({name} has {total})", getattr(parameters, key))
        batches += targets_of(loaded, parameters.real_layers, parameters.real_heads)
        LOG.info("biology: %s heads loaded in %.1f s", name, loaded.load_seconds)
    return batches


def levels_for(batch, parameters: Parameters) -> tuple[str, ...] | None:
    """Which variant levels run on a target: all on synthetic heads, ``real_levels`` on real ones."""
    return None if batch.labels["target"] == "synthetic" else tuple(parameters.real_levels)


def _rows(labels: dict, variant, feature: str, m: int, seeds, sequence_ids, metrics) -> pd.DataFrame:
    """The runner's tidy rows, plus which variant made them and whether each value is finite."""
    circuit = "no_astrocyte" if variant.family == "no_astrocyte" else DEFAULT_CIRCUIT  # C4 is about astrocytes
    frame = tidy_rows(labels, circuit, feature, m, list(seeds), sequence_ids, metrics)
    frame["seed"] = frame["seed"].astype(np.int64)
    position = frame.columns.get_loc("circuit") + 1
    for offset, (column, value) in enumerate((("variant", variant.name), ("family", variant.family),
                                              ("level", variant.level))):
        frame.insert(position + offset, column, value)
    finite = np.isfinite(frame["value"].to_numpy(dtype=np.float64))
    frame["status"] = np.where(finite, "ok", "non_finite")
    frame["reason"] = np.where(finite, "", "divisor not a positive finite number (output not finite)")
    return frame


def measure(batch, parameters: Parameters, chosen: list, base_seed: int, pool, bar,
            levels: tuple[str, ...] | None = None) -> list[pd.DataFrame]:
    """Every variant (or those at ``levels``) at every (feature map, m) on one target, chunked over seeds to
    bound memory. A variant's noise seeds depend on its place in ``chosen``, whatever ``levels`` keeps."""
    exact, log_z = references(batch)
    kept_index = {i for i, v in enumerate(chosen) if levels is None or v.level in levels}
    kept = [chosen[i] for i in sorted(kept_index)]
    per_process = any(v.family in bio.PER_PROCESS for v in kept)
    warm = {v.name: bio.li_rinzel_warm_state(v.ip3_level, v.warmup_s, parameters=v.parameters)
            for v in kept if v.family == "li_rinzel"}
    n_seq, n_tok, d = batch.q.shape
    frames = []
    for feature in parameters.feature_maps:
        sweep = Sweep(m=parameters.m, n_seeds=parameters.n_seeds, feature_maps=(feature,), base_seed=base_seed)
        for m in parameters.m:
            if feature in PAIRED_MAPS and m % 2:
                LOG.warning("skipping odd m=%d for paired feature map %s", m, feature)
                bar.update()
                continue
            per_seed = 16.0 * n_seq * n_tok * (m + d) * 8  # float64 features, weights and drives
            chunk = items_per_chunk(parameters.n_seeds, per_seed, parameters.memory_mb * 2**20)
            for start in range(0, parameters.n_seeds, chunk):
                seeds = range(start, min(parameters.n_seeds, start + chunk))
                projections = draw_projections(sweep, feature, m, seeds, d).to(batch.q.dtype).unsqueeze(1)
                pieces = bio.circuit_pieces(batch.q, batch.k, batch.v, projections, feature, batch.causal, per_process)
                for index, variant in enumerate(chosen):
                    if index not in kept_index:
                        continue
                    generators = [torch_generator(seed_sequence(base_seed, feature_code(feature), m, s, index)) for s in seeds]
                    if variant.family == "microdomains" and variant.n_domains > m:
                        empty = torch.full((len(seeds), n_seq), math.nan, dtype=torch.float64)
                        frame = _rows(batch.labels, variant, feature, m, seeds, list(batch.sequence_ids),
                                      {"relative_error": empty, "cosine": empty})
                        frame["status"], frame["reason"] = "not_applicable", f"fewer processes (m = {m}) than domains"
                        frames.append(frame)
                        continue
                    output = bio.apply_variant(variant, pieces, generators, pool, warm.get(variant.name))
                    metrics = score(output, exact, None, log_z)
                    frames.append(_rows(batch.labels, variant, feature, m, seeds, list(batch.sequence_ids), metrics))
            bar.update()
    return frames


def floors_table(errors: pd.DataFrame, parameters: Parameters, seed: int) -> pd.DataFrame:
    """E_inf and m_required at 10 % per (target, variant, feature map), set against synapse counts: ``within_<species>``
    is 'yes' (CI upper bound <= count), 'no' (CI lower bound above it, or a floor the data back: Holm-adjusted
    floor test < FLOOR_ALPHA and E_inf CI low >= the tolerance) or 'undetermined'."""
    by = ["target", "layer", "head", "logit_scale", "variant", "feature_map"]
    usable = errors[(errors["metric"] == "relative_error") & (errors["status"] == "ok")]
    fits = scaling_fits_table(usable.drop(columns=["status", "reason"]), by=by, n_resamples=parameters.n_resamples,
                              seed=seed, epsilons=(TOLERANCE,))
    dropped = (errors[errors["metric"] == "relative_error"].assign(bad=lambda t: t["status"] == "non_finite")
               .groupby(by)["bad"].sum().rename("n_non_finite").reset_index())
    fits = fits.merge(dropped, on=by, how="left")
    info = errors.drop_duplicates("variant").set_index("variant")[["family", "level"]]
    fits = fits.join(info, on="variant")
    label = f"m_required_{epsilon_label(TOLERANCE)}"
    smallest = (usable[usable["m"] == usable["m"].min()].groupby(by)["value"].median().rename("error_at_smallest_m"))
    largest = (usable[usable["m"] == usable["m"].max()].groupby(by)["value"].median().rename("error_at_largest_m"))
    fits = fits.join(smallest, on=by).join(largest, on=by)
    if label not in fits:
        return fits
    high, low = fits[f"{label}_ci_high"], fits[f"{label}_ci_low"]
    infinite = fits[f"{label}_infinite"].fillna(False).astype(bool) if f"{label}_infinite" in fits \
        else pd.Series(False, index=fits.index)
    infinite = infinite | np.isposinf(fits[label].astype(float))
    # a floor only where the data say so: the floor test, Holm-adjusted over every fit of the table, and the
    # floor's CI above the tolerance; an unbacked infinite estimate is 'beyond m_max' (undetermined)
    tested = adjust_p_values(fits, method="holm", alpha=FLOOR_ALPHA, p_col="floor_p_value") \
        if "floor_p_value" in fits else None
    backed = (tested["reject"].to_numpy(dtype=bool) if tested is not None else np.zeros(len(fits), dtype=bool)) \
        & (fits.get("e_inf_ci_low", pd.Series(np.nan, index=fits.index)).astype(float) >= TOLERANCE).to_numpy()
    fits["floor_p_value_holm"] = tested["p_value_adjusted"] if tested is not None else np.nan
    fits["floor_supported"] = backed & infinite.to_numpy(dtype=bool)
    for species, count in zip(SYNAPSE_COUNTS["species"], SYNAPSE_COUNTS["synapses"]):
        fits[f"within_{species}"] = np.select([fits["floor_supported"], low > count, infinite, high <= count],
                                              ["no", "no", "undetermined", "yes"], "undetermined")
        fits.loc[fits["status"] != "ok", f"within_{species}"] = "undetermined"
    return fits


def study_cost(parameters: Parameters) -> StudyCost:
    """For the cost estimate (astrostats.cost): every astrocyte variant runs the sweep again (within 1.4x of the
    measured time at the quick and full profiles)."""
    return StudyCost(circuit_runs=len(variants(parameters)))


def run(spec: Spec, context: RunContext) -> dict[str, pd.DataFrame]:
    parameters = spec.bind(Parameters)
    calibration_table, calibrated_snr, pool, noise_sd = calibration(parameters, spec.seed)
    chosen = variants(parameters, calibrated_snr, noise_sd)
    batches = targets(spec, parameters)
    total = len(batches) * len(parameters.feature_maps) * len(parameters.m)
    frames = []
    with tqdm(total=total, disable=not context.progress, desc="biology", unit="m") as bar:
        for batch in batches:
            frames += measure(batch, parameters, chosen, spec.seed, pool, bar, levels_for(batch, parameters))
    errors = pd.concat(frames, ignore_index=True)
    errors["m"] = errors["m"].astype("Int64")
    errors["seed"] = errors["seed"].astype("Int64")
    errors.insert(0, "analysis", spec.name)
    return {spec.name: errors, f"{spec.name}_floors": floors_table(errors, parameters, spec.seed),
            f"{spec.name}_variants": variants_table(chosen), f"{spec.name}_synapse_counts": SYNAPSE_COUNTS.copy(),
            f"{spec.name}_calibration": calibration_table}


__all__ = ["Parameters", "run", "variants", "unique_variants", "targets", "real_targets", "measure", "TOLERANCE",
           "SYNAPSE_COUNTS"]
