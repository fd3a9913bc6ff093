"""Parameter accounting: how many numbers each circuit and control takes from where, at each m.

The critique ("many tunable weights m") is a claim about counts, so the counts come first. Three kinds:

* fitted: set by gradient descent (or least squares) against the target's outputs;
* fixed random: drawn once from a distribution and never changed (the circuit's projection W, m x d);
* input determined: set by the input sequence itself, never by the target's outputs (the circuit's Hebbian
  H, d_v x m, and presynaptic g, m; the mean value of uniform attention).

The query/key/value projections W_Q, W_K, W_V are part of the target (they produce q, k, v) and are copied,
not fitted, by every circuit alike; they are noted, not counted. A control is "matched" at m when its fitted
count equals the circuit's budget m * d (the number of random weights a critic would call tunable).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from astrostats.circuits.registry import DEFAULT_CIRCUIT, get_circuit
from astrostats.circuits.resources import resources
from astrostats.validation import InputError, check_float, check_int

#: fitted controls and what they fit
FITTED_CONTROLS = ("learned_feature", "fitted_mlp")
CAPACITY_NULLS = tuple(f"{name}_shuffled" for name in FITTED_CONTROLS)

#: the runner's input nulls: the circuit under audit on other inputs (counted as that circuit)
INPUT_NULL_NOTES = {
    "shuffled_kv": "the circuit run on another sequence's keys and values (specificity null)",
    "mismatched_target": "the circuit built from another head's q and k (specificity null)",
}
#: the fitted controls and what they fit; a registered circuit's note is its registration's description
CONTROL_NOTES = {
    "learned_feature": "the circuit's form with W (m x d) trained to reproduce the target's outputs",
    "fitted_mlp": "residual MLP on per-query inputs [q_t, mean k, mean v] trained on the target's outputs",
    "learned_feature_shuffled": "learned_feature trained on shuffled targets (capacity null)",
    "fitted_mlp_shuffled": "fitted_mlp trained on shuffled targets (capacity null)",
    "ridge_shuffled": "ridge read-out (closed form) of fixed random features of [q_t, mean k, mean v], fitted to "
                      "shuffled targets (capacity null, amendment v2)",
    "learned_feature_v2_shuffled": "learned_feature from a W independent of the circuit's, early-stopped on "
                                   "shuffled targets (capacity null, amendment v2)",
    "fitted_mlp_v2_shuffled": "fitted_mlp early-stopped on shuffled targets, learning rate chosen on validation "
                              "(capacity null, amendment v2)",
    "constant": "the mean training output (best constant predictor); fitted: d_v numbers",
}


@dataclass(frozen=True)
class MlpSize:
    """The hidden width that best matches a budget, and how far off the match is."""

    hidden: int
    n_fitted: int
    budget: int

    @property
    def mismatch(self) -> float:
        return (self.n_fitted - self.budget) / self.budget


def mlp_fitted_count(hidden: int, d: int, d_v: int) -> int:
    """Weights and biases of the residual MLP: inputs [q, mean k, mean v] (3d) -> hidden -> d_v."""
    return hidden * (2 * d + d_v + 1) + hidden * d_v + d_v


def mlp_size_for_budget(budget: int, d: int, d_v: int, tolerance: float) -> MlpSize:
    """The hidden width whose fitted count is nearest ``budget``; InputError saying why if none is within
    ``tolerance`` (relative), e.g. when even one hidden unit exceeds the budget."""
    budget = check_int("budget", budget, minimum=1)
    tolerance = check_float("budget_tolerance", tolerance, minimum=0.0)
    per_unit = 2 * d + 2 * d_v + 1
    candidates = {max(1, (budget - d_v) // per_unit), max(1, (budget - d_v) // per_unit + 1)}
    best = min((MlpSize(h, mlp_fitted_count(h, d, d_v), budget) for h in candidates),
               key=lambda size: abs(size.mismatch))
    if abs(best.mismatch) > tolerance:
        raise InputError(
            f"m: the fitted MLP cannot match the circuit's budget of {budget} fitted parameters within "
            f"budget_tolerance={tolerance:g}: its nearest size (hidden width {best.hidden}) has {best.n_fitted} "
            f"({best.mismatch:+.0%}); each hidden unit costs {per_unit} parameters and the read-out bias {d_v}, "
            f"so raise m or the tolerance")
    return best


def circuit_counts(circuit: str, m: int | None, d: int, d_v: int) -> tuple[int, int, int, str]:
    """(fitted, fixed random, input determined, note) of a registered circuit, from its declared resources:
    fixed random synapses are fixed random, plastic synapses are written by the input sequence. A circuit that
    declares none has unknown counts (NaN): claim C3 then cannot say it fits nothing to the target."""
    registered = get_circuit(circuit)
    if registered.resources is None:
        unknown = float("nan")
        return unknown, unknown, unknown, f"{registered.description} (declares no resources: counts unknown)"
    # the runner sweeps no circuit with an input limit or one unit per token (runner.Sweep refuses them), so
    # these counts do not depend on the sequence length: n_tokens is only the resource row's required argument
    row = resources(registered, m=m, d=d, d_v=d_v, n_tokens=1)
    return row["fitted_parameters"], row["fixed_random_synapses"], row["plastic_synapses"], registered.description


def accounting_row(circuit: str, m: int | None, d: int, d_v: int, tolerance: float = 0.25,
                   audited: str = DEFAULT_CIRCUIT) -> dict:
    """Counts for one circuit or control at m (m is None for circuits without hidden units); an input null
    counts as the circuit under audit that it runs."""
    budget = None if m is None else m * d
    fitted = fixed = determined = 0
    note = INPUT_NULL_NOTES.get(circuit) or CONTROL_NOTES.get(circuit, "")
    if circuit in INPUT_NULL_NOTES:
        fitted, fixed, determined, _ = circuit_counts(audited, m, d, d_v)
    elif circuit not in CONTROL_NOTES:
        fitted, fixed, determined, note = circuit_counts(circuit, m, d, d_v)
    elif circuit in ("learned_feature", "learned_feature_shuffled", "learned_feature_v2_shuffled"):
        fitted, determined = m * d, m * d_v + m
    elif circuit == "ridge_shuffled":
        n_features = max(1, round(m * d / d_v))
        fitted, fixed, determined = n_features * d_v + d_v, n_features * (2 * d + d_v + 1), d + d_v
    elif circuit == "constant":
        fitted = d_v
    elif circuit in ("fitted_mlp", "fitted_mlp_shuffled", "fitted_mlp_v2_shuffled"):
        fitted, determined = mlp_size_for_budget(budget, d, d_v, tolerance).n_fitted, d + d_v
    return {"circuit": circuit, "m": m, "n_fitted": fitted, "n_fixed_random": fixed,
            "n_input_determined": determined, "budget": budget,
            "budget_mismatch": None if budget is None or fitted == 0 else (fitted - budget) / budget,
            "copied_from_target": "W_Q, W_K, W_V (produce q, k, v; shared by every circuit)",
            "note": note}


def has_width(circuit: str, audited: str = DEFAULT_CIRCUIT) -> bool:
    """Whether a circuit or control is counted at each m (else once, with m None)."""
    if circuit in CONTROL_NOTES:
        return circuit != "constant"
    registered = get_circuit(audited if circuit in INPUT_NULL_NOTES else circuit)
    return registered.random_features or registered.one_unit_per_token


def accounting_table(circuits: tuple[str, ...], m_values: tuple[int, ...], d: int, d_v: int,
                     tolerance: float = 0.25, audited: str = DEFAULT_CIRCUIT) -> pd.DataFrame:
    """One row per (circuit, m): fitted, fixed-random and input-determined counts and the budget match."""
    d = check_int("d", d, minimum=1)
    d_v = check_int("d_v", d_v, minimum=1)
    rows = []
    for circuit in circuits:
        for m in (m_values if has_width(circuit, audited) else (None,)):
            rows.append(accounting_row(circuit, None if m is None else check_int("m", m, minimum=1),
                                       d, d_v, tolerance, audited))
    table = pd.DataFrame(rows)
    table["m"] = table["m"].astype("Int64")
    table["budget"] = table["budget"].astype("Int64")
    table["budget_mismatch"] = table["budget_mismatch"].astype("Float64")
    return table
