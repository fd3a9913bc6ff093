"""C2: the agreement holds on real language and vision Transformers, layer by layer, head by head, end to end.

Reads the real_heads tables: ``*_fits`` (scaling-law fits per real head) and ``*_end_to_end`` (final outputs
with every attention layer replaced by the circuit), for targets minilm, smollm2 and vit_*.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from astrostats.constants import TOLERANCE
from astrostats.report.claims import astrocyte_positive, finite
from astrostats.report.verdicts import ClaimVerdict, Evidence

CLAIM_ID = "C2"
STATEMENT = ("The agreement holds on real language and vision Transformers, layer by layer, head by head, "
             "end to end.")
LANGUAGE, VISION = ("minilm", "smollm2"), "vit"
EXTRAPOLATION = 10  # a head 'agrees' if it reaches TOLERANCE within 10 x the largest m swept
REGIME_M = 10_000  # end-to-end evidence counts only from an m of the paper's regime (10^3 - 10^5) or above
END_TO_END = {  # (metric, direction, threshold): the network with the circuit agrees with the model's own
    "minilm": ("embedding_cosine", ">=", 0.99),
    "smollm2": ("top1_agreement", ">=", 0.90),
    "vit": ("top1_agreement", ">=", 0.95),
}
RULE = (f"Real targets only (minilm, smollm2, vit_*). Head by head, from the *_fits tables (astrocyte circuit, "
        f"positive features): a head agrees if its error falls with m (alpha 95 % CI low > 0) and the fitted law "
        f"reaches {TOLERANCE:.0%} relative error within {EXTRAPOLATION} x the largest m swept. End to end, from "
        f"the *_end_to_end tables at the largest m: mean over sequences (seeds averaged) of MiniLM's "
        f"sentence-embedding cosine >= {END_TO_END['minilm'][2]}, SmolLM2's next-token top-1 agreement >= "
        f"{END_TO_END['smollm2'][2]}, the ViT's top-1 agreement with its own predictions >= {END_TO_END['vit'][2]} "
        f"(95 % t-interval over sequences reported). SUPPORTED if at least one language and one vision model were "
        f"tested and every head and every end-to-end check passes. NOT_SUPPORTED if some head never reaches "
        f"{TOLERANCE:.0%} (infinite m_required: a floor) or does not improve with m (alpha CI high <= 0), or an "
        f"end-to-end check fails at a largest m >= {REGIME_M:,} (the 95 % CI high below the threshold). "
        f"INCONCLUSIVE otherwise: heads needing extrapolation beyond the range, heads whose fit is undetermined "
        f"(fit status not ok, or m_required NaN: counted, never taken for a floor), end-to-end checks only at "
        f"small m, and missing or non-finite results (a real target with per-head fits but no end-to-end rows for "
        f"its metric, or the reverse; an end-to-end mean that is NaN or infinite), each counted and named.")


def _is_real(target) -> bool:
    return isinstance(target, str) and (target in LANGUAGE or target.startswith(VISION))


def _family(target: str) -> str:
    return VISION if target.startswith(VISION) else target


def _tables(tables: dict, suffix: str) -> list[tuple[str, pd.DataFrame]]:
    found = []
    for name, table in tables.items():
        if name.endswith(suffix) and "target" in table and not table.empty:
            part = astrocyte_positive(table[table["target"].map(_is_real)])
            if not part.empty:
                found.append((name, part))
    return found


def _judge_heads(fits: list[tuple[str, pd.DataFrame]]):
    evidence, failing, extrapolated, undetermined = [], [], [], []
    for name, table in fits:
        for _, row in table.iterrows():
            label = f"{row['target']} L{row['layer']} H{row['head']}"
            query = (f"target == '{row['target']}' and layer == {row['layer']} and head == {row['head']} "
                     f"and circuit == 'astrocyte'")
            if row.get("status", "ok") != "ok":
                undetermined.append(f"{label} (fit: {row.get('reason', '')})")
                continue
            raw = pd.to_numeric(pd.Series([row["m_required_10pct"]]), errors="coerce").iloc[0]
            alpha_low, alpha_high = finite(row.get("alpha_ci_low")), finite(row.get("alpha_ci_high"))
            m_max = finite(row.get("m_max"))
            if alpha_high is not None and alpha_high <= 0:
                failing.append(f"{label} (error does not fall with m)")
            elif pd.isna(raw):
                undetermined.append(f"{label} (m_required undetermined: NaN)")
            elif math.isinf(raw):
                failing.append(f"{label} (floor: never reaches {TOLERANCE:.0%})")
            elif alpha_low is None or alpha_low <= 0 or m_max is None or raw > EXTRAPOLATION * m_max:
                extrapolated.append(label)
            evidence.append(Evidence(name, query, "m_required_10pct", float(raw),
                                     ci_low=finite(row.get("m_required_10pct_ci_low")),
                                     ci_high=finite(row.get("m_required_10pct_ci_high")),
                                     effect=f"alpha {row['alpha']:.3f} [{row.get('alpha_ci_low', float('nan')):.3f}, "
                                            f"{row.get('alpha_ci_high', float('nan')):.3f}]",
                                     note=label + (" (undetermined)" if pd.isna(raw) else
                                                   " (floor)" if math.isinf(raw) else "")))
    return evidence, failing, extrapolated, undetermined


def _judge_end_to_end(end_to_end: list[tuple[str, pd.DataFrame]]):
    evidence, failing, small, missing_results = [], [], [], []
    for name, table in end_to_end:
        for target, part in table.groupby("target"):
            metric, _, threshold = END_TO_END[_family(target)]
            part = part[part["metric"] == metric]
            if part.empty:
                missing_results.append(f"{target}: no {metric} rows in {name}")
                continue
            m = int(part["m"].max())
            per_sequence = part[part["m"] == m].groupby("sequence_id")["value"].mean().to_numpy(dtype=float)
            mean = float(per_sequence.mean())
            if not math.isfinite(mean):
                missing_results.append(f"{target}: {metric} not finite at m = {m} "
                                       f"({int((~np.isfinite(per_sequence)).sum())} of {len(per_sequence)} sequences)")
                evidence.append(Evidence(name, f"target == '{target}' and metric == '{metric}' and m == {m}",
                                         f"mean {metric} at the largest m", mean,
                                         note=f"{target}, m = {m}: non-finite; threshold {threshold}"))
                continue
            if len(per_sequence) > 1 and per_sequence.std() > 0:
                low, high = stats.t.interval(0.95, len(per_sequence) - 1, loc=mean, scale=stats.sem(per_sequence))
            else:
                low = high = mean
            passed = mean >= threshold
            if not passed and m >= REGIME_M and high < threshold:
                failing.append(f"{target} {metric} {mean:.3f} at m = {m}")
            elif not passed:
                small.append(f"{target} {metric} {mean:.3f} at m = {m}")
            evidence.append(Evidence(name, f"target == '{target}' and metric == '{metric}' and m == {m}",
                                     f"mean {metric} at the largest m", mean, ci_low=float(low), ci_high=float(high),
                                     note=f"{target}, m = {m}, {len(per_sequence)} sequences; threshold {threshold}"))
    return evidence, failing, small, missing_results


def _unpaired(fits, end_to_end) -> list[str]:
    """Real targets with per-head fits but no end-to-end rows, or the reverse."""
    with_fits = {t for _, table in fits for t in table["target"].unique()}
    with_e2e = {t for _, table in end_to_end for t in table["target"].unique()}
    return ([f"{t}: per-head fits but no end-to-end rows" for t in sorted(with_fits - with_e2e)]
            + [f"{t}: end-to-end rows but no per-head fits" for t in sorted(with_e2e - with_fits)])


def judge(tables: dict) -> ClaimVerdict:
    fits, end_to_end = _tables(tables, "_fits"), _tables(tables, "_end_to_end")
    families = {_family(t) for _, table in fits + end_to_end for t in table["target"].unique()}
    if not fits or not end_to_end or VISION not in families or not families & set(LANGUAGE):
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", RULE,
                            reason="needs per-head fits and end-to-end tables for a language and a vision model: run "
                                   "`python -m astrostats.analyze fig3_language` and `... fig3_vision`",
                            analyses_needed=("fig3_language", "fig3_vision"))
    head_evidence, head_failing, head_extrapolated, head_undetermined = _judge_heads(fits)
    e2e_evidence, e2e_failing, e2e_small, e2e_missing = _judge_end_to_end(end_to_end)
    missing_results = e2e_missing + _unpaired(fits, end_to_end)
    evidence = tuple(e2e_evidence + head_evidence)
    worst = max((e.value for e in head_evidence if not math.isnan(e.value)), default=math.nan)
    headline = "; ".join(f"{e.statistic} {e.value:.3f} ({e.note.split(';')[0]})" for e in e2e_evidence)
    details = {"heads_failing": head_failing, "heads_extrapolated": head_extrapolated,
               "heads_undetermined": head_undetermined, "end_to_end_failing": e2e_failing,
               "end_to_end_small_m": e2e_small, "missing_or_non_finite": missing_results,
               "largest_m_required_10pct": worst}
    if head_failing or e2e_failing:
        reason = "; ".join(part for part in (
            f"heads that never reach {TOLERANCE:.0%} or do not improve: {', '.join(head_failing[:8])}"
            + (" ..." if len(head_failing) > 8 else "") if head_failing else "",
            f"end to end below threshold: {', '.join(e2e_failing)}" if e2e_failing else "") if part)
        verdict = "NOT_SUPPORTED"
    elif head_extrapolated or head_undetermined or e2e_small or missing_results:
        verdict = "INCONCLUSIVE"
        reason = "; ".join(part for part in (
            f"{len(missing_results)} missing or non-finite results: {', '.join(missing_results)}"
            if missing_results else "",
            f"{len(head_undetermined)} heads with an undetermined fit: {', '.join(head_undetermined[:8])}"
            + (" ..." if len(head_undetermined) > 8 else "") if head_undetermined else "",
            f"{len(head_extrapolated)} heads reach {TOLERANCE:.0%} only by extrapolation beyond the swept m"
            if head_extrapolated else "",
            f"end to end not yet agreeing at small m: {', '.join(e2e_small)}" if e2e_small else "") if part)
    else:
        verdict, reason = "SUPPORTED", "every real head reaches 10 % within the range and every network agrees end to end"
    concerns = ("SmolLM2's weights are a 4-bit GGUF dequantised: close to, not identical with, the released model.",
                "The ViT is small and trained here on 4,000 MNIST digits; no pretrained ViT ships inside a package.")
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, evidence, reason, minor_concerns=concerns,
                        headline=headline, details=details)
