"""C3's reading of the refit table: which fitted nulls failed to learn at first, which a refit rescued, which never
learned (a limitation named in the verdict: they could not be tested), and whether a rescued one reaches the
circuit's error. A null is never silently dropped: the verdict says what became of each.
"""
from __future__ import annotations

import pandas as pd

from astrostats.claims.schemas import label, number, table_schema

REFITS = "_refits"  # suffix after the run's name
#: the refit table as C3 reads it (astrostats.controls.refit writes it)
SCHEMA = table_schema({"circuit", "attempt", "learned", "used"}, number("m", minimum=1), number("seed", minimum=0),
                      number("attempt", minimum=1), number("epochs", minimum=0), number("train_loss"),
                      number("heldout_loss"), label("optimiser", ("adam", "lbfgs")),
                      label("learned", (True, False)), label("used", (True, False)))


def outcomes(refits: pd.DataFrame | None) -> pd.DataFrame:
    """One row per fit (role, circuit, m, seed): attempts, the step used, learned at first, learned at all."""
    if refits is None or refits.empty:
        return pd.DataFrame(columns=["role", "circuit", "m", "seed", "attempts", "step", "first_learned", "learned"])
    refits = refits if "role" in refits else refits.assign(role="primary")
    keys = ["role", "circuit", "m", "seed"]
    first = refits[refits["attempt"] == 1].set_index(keys)["learned"].astype(bool).rename("first_learned")
    used = refits[refits["used"].astype(bool)].set_index(keys)
    table = pd.concat([used[["attempts", "step"]], used["learned"].astype(bool), first], axis=1, join="inner")
    return table.reset_index()


def rescued(refits: pd.DataFrame | None, role: str = "primary") -> set[tuple[str, int]]:
    """(circuit, m) of the ``role`` head with a fit that learned only on a refit."""
    fits = outcomes(refits)
    fits = fits[(fits["role"] == role) & fits["learned"] & ~fits["first_learned"]]
    return {(str(circuit), int(m)) for circuit, m in zip(fits["circuit"], fits["m"])}


def _reaching(tests: pd.DataFrame, role: str, circuit: str, ms) -> list[str]:
    """The comparisons of a rescued null at its m whose ratio CI does not lie above 1 (it reaches the circuit)."""
    rows = tests[(tests["control"] == circuit) & tests["m"].isin(list(ms))
                 & tests["family"].astype(str).str.endswith("_v2")]
    if "role" in rows:
        rows = rows[rows["role"] == role]
    rows = rows[pd.to_numeric(rows["ci_low"], errors="coerce") <= 1.0]
    return [f"{r['split']} at m={int(r['m'])} (ratio {r['ratio']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}])"
            for _, r in rows.iterrows()]


def sentence(refits: pd.DataFrame | None, tests: pd.DataFrame) -> str:
    """What the refits did, per head role and null, for the verdict's headline ("" without a refit table)."""
    fits = outcomes(refits)
    if fits.empty:
        return ""
    parts = []
    for (role, circuit), group in fits.groupby(["role", "circuit"], sort=True):
        refit = group[~group["first_learned"]]
        if refit.empty:
            continue
        saved, lost = refit[refit["learned"]], refit[~refit["learned"]]
        text = f"{circuit} ({role}): {len(refit)} of {len(group)} fits failed to learn at first"
        if not saved.empty:
            steps = ", ".join(f"{step} {n}" for step, n in saved["step"].value_counts().sort_index().items())
            reached = _reaching(tests, role, circuit, sorted(set(saved["m"])))
            text += (f", {len(saved)} learned on a refit ({steps}); "
                     + ("it reaches the circuit's error on " + "; ".join(reached) if reached else
                        "refit, it does not reach the circuit's error"))
        if not lost.empty:
            where = ", ".join(f"m={int(m)} draw{'s' * (len(d) > 1)} {', '.join(str(int(s)) for s in d['seed'])}"
                              for m, d in lost.groupby("m"))
            text += (f"; {circuit} failed to learn after {int(lost['attempts'].max()) - 1} refits ({where}): "
                     "it could not be tested there (a limitation)")
        parts.append(text)
    return ("refits: " + "; ".join(parts)) if parts else "refits: every fitted null learned on its first fit"


__all__ = ["REFITS", "SCHEMA", "outcomes", "rescued", "sentence"]
