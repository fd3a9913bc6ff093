"""Figure 2B done properly: relative error of the circuit against m, over feature seeds and sequences,
for every feature map and null circuit at three logit scales, with the delta-method prediction beside it.

Tables: ``<name>`` (the runner's measurements), ``<name>_theory`` (the predicted error constant C per
sequence: relative error ~ C / sqrt(m), positive features), ``<name>_fits`` (scaling-law fits, stats layer,
with the uniform-attention error of the same head beside each), ``<name>_asymptotic`` (claim C1's rows: the
astrocyte circuit with positive features refitted where the delta method's C / sqrt(m) is at most
REGIME_BOUND, with equivalence tests of the rate and the constant; a head whose regime starts beyond the
swept m says so and is not fitted).
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np
import pandas as pd
import torch

from astrostats.circuits.attention import attention_logits
from astrostats.circuits.features import FEATURE_MAPS
from astrostats.circuits.theory import predicted_error_constant
from astrostats.circuits.registry import DEFAULT_CIRCUIT, get_circuit
from astrostats.claims.rules import thresholds
from astrostats.runner import Sweep, run_sweep
from astrostats.spec import Spec
from astrostats.stats.effects import tost_bootstrap_p_value, tost_p_value
from astrostats.stats.scaling import fit_scaling_law, log_spread_trend, rms_rate, scaling_fits_table
from astrostats.studies.base import RunContext
from astrostats.targets.base import labelled
from astrostats.targets.synthetic import qk_norm, synthetic_head
from astrostats.validation import check_int, check_int_list, fail

#: claim C1's pre-registered numbers (astrostats/claims/rules.toml): the regime (the delta method's relative error
#: C / sqrt(m) at most regime_bound), the widths and decades a rate needs inside it, the equivalence margins
C1_RULES = thresholds("C1")
REGIME_BOUND, MIN_REGIME_WIDTHS, MIN_REGIME_DECADES, ALPHA_MARGIN, RATIO_MARGIN = (C1_RULES[key] for key in (
    "regime_bound", "min_widths", "min_decades", "alpha_margin", "ratio_margin"))


@dataclass(frozen=True)
class Parameters:
    m: tuple[int, ...] = tuple(2**p for p in range(3, 17))
    n_seeds: int = 32
    n_sequences: int = 8
    logit_scales: tuple = ("near_uniform_small_norm", "near_uniform_unit_norm", "near_uniform_large_norm", "peaked",
                           "real_like")
    n_tokens: int = 197
    d_head: int = 64
    feature_maps: tuple[str, ...] = FEATURE_MAPS
    circuits: tuple[str, ...] = ()  # nulls and other circuits beside the one under audit
    audited_circuit: str = DEFAULT_CIRCUIT
    causal: bool = False
    n_resamples: int = 1000
    memory_mb: int = 512

    def __post_init__(self):
        """Every value is checked here, when the spec is bound, so bad specs fail before anything runs."""
        check_int("n_sequences", self.n_sequences, minimum=2)
        check_int("n_tokens", self.n_tokens, minimum=1)
        check_int("d_head", self.d_head, minimum=1)
        check_int("n_resamples", self.n_resamples, minimum=100)
        check_int("n_seeds", self.n_seeds, minimum=2)
        check_int_list("m", self.m, minimum=1)
        check_int("memory_mb", self.memory_mb, minimum=1)
        if len(set(self.m)) != len(self.m) or len(self.m) < 3:
            raise fail("m", "at least 3 distinct values (a scaling law needs them)", self.m)
        if not isinstance(self.causal, bool):
            raise fail("causal", "true or false", self.causal)
        for scale in self.logit_scales:
            qk_norm(scale)
        self.sweep(0)

    def sweep(self, base_seed: int) -> Sweep:
        return Sweep(m=self.m, n_seeds=self.n_seeds, feature_maps=self.feature_maps, circuits=self.circuits,
                     base_seed=base_seed, memory_mb=self.memory_mb, audited_circuit=self.audited_circuit)


def targets(spec: Spec, parameters: Parameters):
    return [synthetic_head(n_sequences=parameters.n_sequences, n_tokens=parameters.n_tokens,
                           d_head=parameters.d_head, logit_scale=scale, seed=spec.seed, causal=parameters.causal)
            for scale in parameters.logit_scales]


def theory_table(batches) -> pd.DataFrame:
    """Per sequence: the delta-method constant C (relative error ~ C / sqrt(m) for i.i.d. positive features)
    and what the head is: mean query and key norms, logit SD and mean attention entropy (nats)."""
    frames = []
    for batch in batches:
        constant = predicted_error_constant(batch.q, batch.k, batch.v, batch.causal).numpy()
        logits = attention_logits(batch.q.double(), batch.k.double(), batch.causal)
        weights = torch.softmax(logits, -1)
        entropy = -(weights * torch.log(weights.clamp_min(1e-300))).sum(-1).mean(-1)
        spread = [float(np.nanstd(row)) for row in logits.masked_fill(~torch.isfinite(logits), float("nan")).flatten(1).numpy()]
        frames.append(labelled(pd.DataFrame({"sequence_id": list(batch.sequence_ids),
                                             "predicted_constant": constant,
                                             "q_norm": batch.q.double().norm(dim=-1).mean(-1).numpy(),
                                             "k_norm": batch.k.double().norm(dim=-1).mean(-1).numpy(),
                                             "logit_std": spread, "attention_entropy": entropy.numpy()}),
                               batch.labels))
    return pd.concat(frames, ignore_index=True)


def fit_error_laws(measurements: pd.DataFrame, theory: pd.DataFrame, by: list[str], *, n_resamples: int,
                   seed: int, audited: str = DEFAULT_CIRCUIT, **fit_options) -> pd.DataFrame:
    """Scaling-law fits of relative error per group of ``by`` (circuits that depend on m), for any target.

    The delta-method constant is the theory for a circuit with i.i.d. positive random features only, so only
    the audited circuit's positive-feature groups get a theory ratio (none where it brings its own features). ``error_at_smallest_m`` (mean over seeds and sequences) says whether
    small circuits agree.
    """
    errors = measurements[(measurements["metric"] == "relative_error") & measurements["m"].notna()]
    sequence_keys = [key for key in by if key in theory and key not in ("circuit", "feature_map")]
    predicted = theory[[*sequence_keys, "sequence_id", "predicted_constant"]].assign(
        circuit=audited, feature_map="positive")
    fits = scaling_fits_table(errors, by=by, predicted_constants=predicted, n_resamples=n_resamples, seed=seed,
                              **fit_options)
    smallest = errors[errors["m"] == errors["m"].min()].groupby(by)["value"].mean().rename("error_at_smallest_m")
    fits = fits.merge(smallest.reset_index(), on=by, how="left")
    uniform = uniform_errors(measurements, by)
    return fits if uniform is None else fits.merge(uniform, on=[key for key in by if key in uniform], how="left")


def uniform_errors(measurements: pd.DataFrame, by) -> pd.DataFrame | None:
    """Mean relative error of uniform attention (the zero-unit baseline) per head, for every error beside it."""
    head_keys = [key for key in by if key not in ("circuit", "feature_map")]
    rows = measurements[(measurements["metric"] == "relative_error") & (measurements["circuit"] == "uniform")]
    if rows.empty or not head_keys:
        return None
    return rows.groupby(head_keys)["value"].mean().rename("uniform_error").reset_index()


def asymptotic_fits(measurements: pd.DataFrame, theory: pd.DataFrame, *, by=("logit_scale",),
                    bound: float = REGIME_BOUND, n_resamples: int, seed: int,
                    audited: str = DEFAULT_CIRCUIT) -> pd.DataFrame:
    """Claim C1's table: per head, the audited circuit with its own features fitted only over the widths m
    where the delta method's predicted relative error sqrt(mean_s C_s^2) / sqrt(m) is at most ``bound``.

    Each row carries the regime (its first m, the widths and decades inside it), the power-law fit there, the
    TOST p-value of alpha in 1/2 +- ALPHA_MARGIN (cluster-robust t, the calibrated alpha_vs_half statistic)
    and of observed/predicted in 1 +- RATIO_MARGIN (bootstrap draws: the percentile TOST), the floor test, the
    uniform-attention error and how the log errors' spread changes with m there (``spread_slope``: where it
    grows, the fitted rate is the typical error's, not the root-mean-square error's that theory speaks of) with
    the root-mean-square error's own rate beside it (``alpha_rms``, a diagnostic: no rule tests it).
    Fewer than MIN_REGIME_WIDTHS widths or MIN_REGIME_DECADES decades inside the regime: status
    "regime_not_reached" with the m the regime needs.
    """
    by = list(by)
    feature = get_circuit(audited).primary_feature_map
    errors = measurements[(measurements["metric"] == "relative_error") & (measurements["circuit"] == audited)
                          & (measurements["feature_map"] == feature) & measurements["m"].notna()]
    uniform = uniform_errors(measurements, by)
    rows = []
    for key, group in errors.groupby(by, sort=True):
        labels = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        mask = np.ones(len(theory), dtype=bool)
        for column, value in labels.items():
            mask &= (theory[column] == value).to_numpy()
        constants = theory[mask].groupby("sequence_id")["predicted_constant"].mean()
        rms = float(np.sqrt((constants ** 2).mean())) if len(constants) else math.nan
        start = (rms / bound) ** 2
        widths = np.sort(group["m"].astype(float).unique())
        inside = widths[widths >= start]
        decades = float(np.log10(inside.max() / inside.min())) if inside.size else 0.0
        row = {**labels, "circuit": audited, "feature_map": feature, "regime_bound": bound,
               "predicted_constant_rms": rms, "m_regime_start": start, "m_swept_min": float(widths.min()),
               "m_swept_max": float(widths.max()), "n_m_in_regime": int(inside.size), "regime_decades": decades,
               "n_seeds": int(group["seed"].nunique()), "n_sequences": int(group["sequence_id"].nunique()),
               "alpha_margin": ALPHA_MARGIN, "ratio_margin": RATIO_MARGIN}
        if uniform is not None:
            match = uniform
            for column, value in labels.items():
                match = match[match[column] == value]
            row["uniform_error"] = float(match["uniform_error"].mean()) if len(match) else math.nan
        if not len(constants):
            rows.append({**row, "status": "insufficient_data", "reason": "no predicted constants for this head"})
            continue
        if inside.size < MIN_REGIME_WIDTHS or decades < MIN_REGIME_DECADES:
            rows.append({**row, "status": "regime_not_reached",
                         "reason": f"C/sqrt(m) <= {bound:g} needs m >= {start:.3g}; the swept m <= {widths.max():.0f} "
                                   f"give {inside.size} widths over {decades:.2g} decades there (need "
                                   f">= {MIN_REGIME_WIDTHS} over >= {MIN_REGIME_DECADES:g})"})
            continue
        regime = group[group["m"] >= start]
        fit = fit_scaling_law(regime, predicted_constant=constants, n_resamples=n_resamples, seed=seed)
        row.update(log_spread_trend(regime["m"], regime["value"]))  # does the fitted rate speak for the RMS error?
        row.update(rms_rate(regime["m"], regime["seed"], regime["sequence_id"], regime["value"]))  # RMS error's
        summary = fit.summary_row()
        row.update({name: summary[name] for name in (
            "alpha", "alpha_ci_low", "alpha_ci_high", "alpha_se_cluster", "a", "theory_ratio", "theory_ratio_ci_low",
            "theory_ratio_ci_high", "e_inf", "e_inf_ci_low", "e_inf_ci_high", "preferred_model", "floor_p_value",
            "alpha_vs_half_p_value", "n", "n_m", "m_min", "m_max", "cov_type")})
        df = fit.diagnostics["df_inference"]
        ratio_draws = fit.draws["theory_ratio"] if "theory_ratio" in fit.draws else []
        row.update(alpha_df=df,
                   alpha_tost_p_value=tost_p_value(summary["alpha"], summary["alpha_se_cluster"], df,
                                                   low=0.5 - ALPHA_MARGIN, high=0.5 + ALPHA_MARGIN),
                   theory_ratio_tost_p_value=tost_bootstrap_p_value(ratio_draws, low=1 - RATIO_MARGIN,
                                                                    high=1 + RATIO_MARGIN),
                   status="ok", reason="")
        rows.append(row)
    return pd.DataFrame(rows)


def run(spec: Spec, context: RunContext) -> dict[str, pd.DataFrame]:
    parameters = spec.bind(Parameters)
    sweep = parameters.sweep(spec.seed)
    batches = targets(spec, parameters)
    measurements = run_sweep(batches, sweep, progress=context.progress, executor=context.executor)
    measurements.insert(0, "analysis", spec.name)
    theory = theory_table(batches)
    return {spec.name: measurements, f"{spec.name}_theory": theory,
            f"{spec.name}_fits": fit_error_laws(measurements, theory, ["circuit", "feature_map", "logit_scale"],
                                                n_resamples=parameters.n_resamples, seed=spec.seed,
                                                audited=parameters.audited_circuit),
            f"{spec.name}_asymptotic": asymptotic_fits(measurements, theory, n_resamples=parameters.n_resamples,
                                                       seed=spec.seed, audited=parameters.audited_circuit)}
