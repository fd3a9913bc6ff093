"""Figure 2B done properly: relative error of the circuit against m, over feature seeds and sequences,
for every feature map and null circuit at three logit scales, with the delta-method prediction beside it.

Tables: ``<name>`` (the runner's measurements), ``<name>_theory`` (the predicted error constant C per
sequence: relative error ~ C / sqrt(m), positive features), ``<name>_fits`` (scaling-law fits, stats layer).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from astrostats.circuits.features import FEATURE_MAPS
from astrostats.circuits.theory import predicted_error_constant
from astrostats.runner import CIRCUITS, Sweep, run_sweep
from astrostats.spec import Spec
from astrostats.stats.scaling import scaling_fits_table
from astrostats.studies.base import RunContext
from astrostats.targets.base import labelled
from astrostats.targets.synthetic import qk_norm, synthetic_head
from astrostats.validation import check_int, fail



@dataclass(frozen=True)
class Parameters:
    m: tuple[int, ...] = tuple(2**p for p in range(3, 17))
    n_seeds: int = 32
    n_sequences: int = 8
    logit_scales: tuple = ("diffuse", "typical", "peaked")
    n_tokens: int = 197
    d_head: int = 64
    feature_maps: tuple[str, ...] = FEATURE_MAPS
    circuits: tuple[str, ...] = CIRCUITS
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
        if len(set(self.m)) != len(self.m) or len(self.m) < 3:
            raise fail("m", "at least 3 distinct values (a scaling law needs them)", self.m)
        if not isinstance(self.causal, bool):
            raise fail("causal", "true or false", self.causal)
        for scale in self.logit_scales:
            qk_norm(scale)
        self.sweep(0)

    def sweep(self, base_seed: int) -> Sweep:
        return Sweep(m=self.m, n_seeds=self.n_seeds, feature_maps=self.feature_maps, circuits=self.circuits,
                     base_seed=base_seed, memory_mb=self.memory_mb)


def targets(spec: Spec, parameters: Parameters):
    return [synthetic_head(n_sequences=parameters.n_sequences, n_tokens=parameters.n_tokens,
                           d_head=parameters.d_head, logit_scale=scale, seed=spec.seed, causal=parameters.causal)
            for scale in parameters.logit_scales]


def theory_table(batches) -> pd.DataFrame:
    """Delta-method constant C per sequence (relative error ~ C / sqrt(m) for i.i.d. positive features)."""
    frames = []
    for batch in batches:
        constant = predicted_error_constant(batch.q, batch.k, batch.v, batch.causal).numpy()
        frames.append(labelled(pd.DataFrame({"sequence_id": list(batch.sequence_ids),
                                             "predicted_constant": constant}), batch.labels))
    return pd.concat(frames, ignore_index=True)


def fit_error_laws(measurements: pd.DataFrame, theory: pd.DataFrame, by: list[str], *, n_resamples: int,
                   seed: int, **fit_options) -> pd.DataFrame:
    """Scaling-law fits of relative error per group of ``by`` (circuits that depend on m), for any target.

    The delta-method constant is the theory for the astrocyte circuit with i.i.d. positive features only, so
    only those groups get a theory ratio. ``error_at_smallest_m`` (mean over seeds and sequences) says whether
    small circuits agree.
    """
    errors = measurements[(measurements["metric"] == "relative_error") & measurements["m"].notna()]
    sequence_keys = [key for key in by if key in theory and key not in ("circuit", "feature_map")]
    predicted = theory[[*sequence_keys, "sequence_id", "predicted_constant"]].assign(
        circuit="astrocyte", feature_map="positive")
    fits = scaling_fits_table(errors, by=by, predicted_constants=predicted, n_resamples=n_resamples, seed=seed,
                              **fit_options)
    smallest = errors[errors["m"] == errors["m"].min()].groupby(by)["value"].mean().rename("error_at_smallest_m")
    return fits.merge(smallest.reset_index(), on=by, how="left")


def run(spec: Spec, context: RunContext) -> dict[str, pd.DataFrame]:
    parameters = spec.bind(Parameters)
    sweep = parameters.sweep(spec.seed)
    batches = targets(spec, parameters)
    measurements = run_sweep(batches, sweep, progress=context.progress, executor=context.executor)
    measurements.insert(0, "analysis", spec.name)
    theory = theory_table(batches)
    return {spec.name: measurements, f"{spec.name}_theory": theory,
            f"{spec.name}_fits": fit_error_laws(measurements, theory, ["circuit", "feature_map", "logit_scale"],
                                                n_resamples=parameters.n_resamples, seed=spec.seed)}
