"""Paired comparisons of each control with the circuit at matched m: the pre-registered test and its kin.

For one (control, m, split) the unit is a sequence: e_c,i and e_circuit,i are its relative errors, averaged
over seeds (the control of seed s is paired with the circuit of seed s; a control without seeds, such as
uniform attention, is set beside every circuit seed). Reported:

* ratio = mean e_c / mean e_circuit (> 1: the circuit is closer to the target), with a hierarchical
  bootstrap CI (sequences, then seeds; ``astrostats.stats.hierarchical_weights`` and ``bootstrap_interval``);
* p: a paired test over sequences of d_i = e_c,i - (1 + margin) e_circuit,i; with alternative "greater" H1 is
  that the control's error exceeds the circuit's by more than the margin (margin 0 and "two-sided" for the
  efficiency comparisons). The pre-registered families (v1) use the registered sign-flip test
  (``paired_permutation_test``, H0: d symmetric about 0); amendment v2's families use a bootstrap-t test of the
  mean (``paired_mean_test``, H0: mean d = 0), since on skewed differences with mean 0 the sign-flip test
  rejected 13 % at 5 % (calibration study);
* Holm across each family (``astrostats.stats.adjust_p_values``).

A control flagged by training (not converged, diverged) keeps its row; the flag is carried in
``control_status`` and the comparison's ``status`` so the audit can refuse to count it.

Amendment v2's families (``design="crossed"``, ``constant_floor=True``): the ratio CI resamples sequences and
feature draws as crossed factors (every draw W is shared by all sequences; percentile interval), and a null
whose mean error exceeds the best constant predictor's (``constant`` rows, the training-mean output) on that
split is replaced by the constant (``replaced_by_constant``), so a broken fit cannot inflate a ratio. The
replacement can only lower the null's error: it makes SUPPORTED harder, never easier.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from astrostats.stats import (adjust_p_values, bootstrap_interval, hierarchical_weights, paired_mean_test,
                              paired_permutation_test)
from astrostats.circuits.registry import DEFAULT_CIRCUIT
from astrostats.validation import check_choice, check_float, check_int, fail
from astrostats.seeding import derived_seed, name_code



@dataclass(frozen=True)
class Family:
    """A set of comparisons corrected together, with the hypothesis they test."""

    name: str
    controls: tuple[str, ...]
    m: tuple[int, ...]
    splits: tuple[str, ...]
    margin: float = 0.0
    alternative: str = "greater"
    design: str = "nested"  # the ratio bootstrap: sequences then seeds (nested), or crossed
    constant_floor: bool = False  # replace a null worse than the best constant predictor by it
    test: str = "sign_flip"  # the paired test: "sign_flip" (pre-registered, v1) or "mean" (bootstrap-t, v2)

    def __post_init__(self):
        check_float("margin", self.margin, minimum=0.0)
        check_choice("alternative", self.alternative, ("greater", "two-sided"))
        check_choice("design", self.design, ("nested", "crossed"))


def scored_rows(measurements: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The relative errors scored against the true head, by split (filtered once for every comparison)."""
    rows = measurements[(measurements["metric"] == "relative_error") & (measurements["scored_against"] == "true")]
    return {split: group for split, group in rows.groupby("split", sort=False)}


PAIRED_COLUMNS = ["sequence_id", "seed", "value", "m"]


def by_circuit(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One split's scored rows by circuit, in their order, with the columns a pairing reads (split once: a
    comparison then filters one circuit's numbers rather than the whole split's labelled rows)."""
    return {circuit: group for circuit, group in rows[[*PAIRED_COLUMNS, "circuit"]].groupby("circuit", sort=False)}


def paired_errors(groups: dict[str, pd.DataFrame], control: str, m: int, audited: str = DEFAULT_CIRCUIT
                  ) -> pd.DataFrame:
    """(sequence_id, seed, control_error, circuit_error) rows for one comparison, from one split's scored rows by
    circuit (:func:`by_circuit`); the circuit is the one under audit."""
    # a circuit the split lacks pairs as no rows, with the split's column types (an int column meets no object one)
    empty = next(iter(groups.values())).iloc[:0] if groups else pd.DataFrame(columns=PAIRED_COLUMNS)
    circuit = groups.get(audited, empty)
    circuit = circuit[circuit["m"] == m][["sequence_id", "seed", "value"]]
    other = groups.get(control, empty)
    if other["m"].notna().any():
        other = other[other["m"] == m]
    other = other[["sequence_id", "seed", "value"]]
    if other["seed"].isna().all():  # seedless baseline: beside every circuit seed
        paired = circuit.merge(other.drop(columns="seed"), on="sequence_id", suffixes=("_circuit", "_control"))
    else:
        paired = circuit.merge(other, on=["sequence_id", "seed"], suffixes=("_circuit", "_control"))
    return paired.rename(columns={"value_circuit": "circuit_error", "value_control": "control_error"})


def with_constant_floor(paired: pd.DataFrame, groups: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, bool]:
    """The paired errors with the null's replaced by the best constant predictor's where the constant does
    better on average over this split's paired sequences (``groups``: the split's scored rows by circuit,
    :func:`by_circuit`); (paired, replaced)."""
    rows = groups.get("constant")
    if rows is None or rows.empty or paired.empty:
        return paired, False
    constant = rows.groupby("sequence_id")["value"].mean()
    floor = paired["sequence_id"].map(constant)
    if floor.isna().any():
        return paired, False
    per_sequence = paired.groupby("sequence_id")["control_error"].mean()
    if per_sequence.mean() <= constant.reindex(per_sequence.index).mean():
        return paired, False
    return paired.assign(control_error=floor.to_numpy()), True


def control_statuses(measurements: pd.DataFrame) -> dict[tuple[str, object], str]:
    """(circuit, m) -> the training statuses other than ok/converged, comma-joined ("ok" when none)."""
    flagged = measurements[~measurements["status"].isin(["ok", "converged"]) & measurements["status"].notna()]
    statuses = flagged.groupby(["circuit", "m"])["status"].agg(lambda s: ",".join(sorted(set(s))))
    return statuses.to_dict()


PAIRED_TESTS = {"sign_flip": paired_permutation_test, "mean": paired_mean_test}


def compare(paired: pd.DataFrame, margin: float, alternative: str, n_resamples: int, seed: int,
            design: str = "nested", test: str = "sign_flip") -> dict:
    """One comparison row from paired errors (see the module docstring)."""
    per_sequence = paired.groupby("sequence_id")[["control_error", "circuit_error"]].mean()
    n = len(per_sequence)
    base = {"n_sequences": n, "n_seeds": int(paired["seed"].nunique()),
            "mean_control": float(per_sequence["control_error"].mean()) if n else np.nan,
            "mean_circuit": float(per_sequence["circuit_error"].mean()) if n else np.nan}
    if n < 2:
        return {**base, "status": "insufficient_data", "reason": f"{n} paired sequence(s); need at least 2"}
    if not (paired["circuit_error"] > 0).any():
        return {**base, "status": "insufficient_data", "reason": "the circuit's error is exactly 0: no ratio"}
    test = PAIRED_TESTS[test](per_sequence["control_error"].to_numpy(),
                              (1.0 + margin) * per_sequence["circuit_error"].to_numpy(),
                              n_resamples=n_resamples, seed=seed, alternative=alternative)
    weights = hierarchical_weights(paired, ["sequence_id", "seed"], n_resamples, seed, design=design)
    control, circuit = paired["control_error"].to_numpy(), paired["circuit_error"].to_numpy()
    ratio = float(control.mean() / circuit.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = (weights @ control) / (weights @ circuit)
    if design == "crossed":  # BCa's jackknife would leave out one factor only: percentile
        low, high, method = bootstrap_interval(draws, ratio, method="percentile")
        method = f"crossed sequence x draw, {method}"
    else:
        sums = paired.groupby("sequence_id")[["control_error", "circuit_error"]].sum()
        jackknife = ((control.sum() - sums["control_error"]) / (circuit.sum() - sums["circuit_error"])).to_numpy()
        low, high, method = bootstrap_interval(draws, ratio, method="bca", jackknife=jackknife)
        method = f"(sequence > seed), {method}"
    return {**base, "ratio": ratio, "ci_low": low, "ci_high": high, "statistic": float(test["statistic"].item()),
            "p_value": float(test["p_value"].item()), "p_value_mc_se": float(test["p_value_mc_se"].item()),
            "method": f"{test['method'].item()} on e_control - (1 + margin) e_circuit; ratio CI: hierarchical "
                      f"bootstrap {method}",
            "status": "ok", "reason": ""}


def comparison_seed(seed: int, family: str, control: str, m: int, split: str) -> int:
    """The resampling seed of one comparison, from its names alone (a stable CRC-32, not Python's salted hash),
    so adding or reordering comparisons leaves every other p-value and interval as it was."""
    return derived_seed(seed, name_code(family, control, str(int(m)), split))


def comparisons_table(measurements: pd.DataFrame, families: list[Family], *, alpha: float = 0.05,
                      correction: str = "holm", n_resamples: int = 4999, seed: int = 0,
                      audited: str = DEFAULT_CIRCUIT) -> pd.DataFrame:
    """Every comparison of every family against the circuit under audit, p-values corrected within each family."""
    alpha = check_float("alpha", alpha, minimum=0.0, strict=True, maximum=1.0)
    n_resamples = check_int("n_resamples", n_resamples, minimum=99)
    if (measurements["circuit"] == audited).sum() == 0:
        raise fail("measurements", f"rows of the circuit '{audited}' to compare against", "none")
    by_split = {split: by_circuit(rows) for split, rows in scored_rows(measurements).items()}
    statuses, rows = control_statuses(measurements), []
    for family in families:
        for control in family.controls:
            for m in family.m:
                for split in family.splits:
                    split_rows = by_split.get(split, {})
                    paired = paired_errors(split_rows, control, m, audited)
                    replaced = False
                    if family.constant_floor:
                        paired, replaced = with_constant_floor(paired, split_rows)
                    row = compare(paired, family.margin, family.alternative, n_resamples,
                                  comparison_seed(seed, family.name, control, m, split), family.design, family.test)
                    row["replaced_by_constant"] = replaced
                    control_status = statuses.get((control, m), "ok")
                    if control_status != "ok" and row["status"] == "ok":
                        row.update(status="control_flagged",
                                   reason=f"training status {control_status}: its error may be inflated")
                    rows.append({"family": family.name, "control": control, "m": m, "split": split,
                                 "margin": family.margin, "alternative": family.alternative, "alpha": alpha,
                                 "control_status": control_status, **row})
    table = pd.DataFrame(rows)
    for column in ("ratio", "ci_low", "ci_high", "statistic", "p_value", "p_value_mc_se"):
        if column not in table:
            table[column] = np.nan
    table = adjust_p_values(table, method=correction, alpha=alpha, by=["family"])
    table["m"] = table["m"].astype("Int64")
    passes = (table["reject"] & (table["ci_low"] > 1.0 + table["margin"]) & (table["status"] == "ok"))
    table["decision"] = np.select(
        [table["status"] == "insufficient_data", passes, table["ci_high"] < 1.0 + table["margin"]],
        ["insufficient_data", "circuit_better", "not_better"], default="undecided")
    return table
