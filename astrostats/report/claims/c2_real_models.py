"""C2: the agreement holds on real language and vision Transformers, layer by layer, head by head, end to end.

Reads the real_heads tables: ``*_measured_summary`` rows of metric ``normaliser_error`` (the paper's Figure 3
quantity: the astrocyte response a_t against the softmax normaliser sum_tau exp(q_t·k_tau), per head, measured
at the paper's m) and ``*_end_to_end`` (final outputs with every attention layer replaced by the circuit), for
targets minilm, smollm2 and vit_*. The output error at the same m is reported beside it (details), not judged:
those rows decide C6.
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
REGIME_M = 10_000  # end-to-end evidence counts only from an m of the paper's regime (10^3 - 10^5) or above
END_TO_END = {  # (metric, direction, threshold): the network with the circuit agrees with the model's own
    "minilm": ("embedding_cosine", ">=", 0.99),
    "smollm2": ("top1_agreement", ">=", 0.90),
    "vit": ("top1_agreement", ">=", 0.95),
}
PAPER_M = 100_000  # the paper's Figure 3 runs m = 1e3 to 1e5: heads are judged at the largest m measured there
MIN_SEQUENCES, MIN_SEEDS = 3, 2
ALPHA = 0.05
RULE = (f"Real targets only (minilm, smollm2, vit_*). Head by head, from the *_measured_summary rows with metric "
        f"'normaliser_error' (|a - Z| / |Z| over tokens, the paper's Figure 3 quantity) at m = {PAPER_M:,}: a head "
        f"agrees if its mean over sequences x feature draws is below {TOLERANCE:.0%} and disagrees if above, each "
        f"by a one-sided crossed-bootstrap p Holm-adjusted over every head at that m (< {ALPHA}). End to end, from "
        f"the *_end_to_end tables at the largest m: mean over sequences (seeds averaged) of MiniLM's "
        f"sentence-embedding cosine >= {END_TO_END['minilm'][2]}, SmolLM2's next-token top-1 agreement >= "
        f"{END_TO_END['smollm2'][2]}, the ViT's top-1 agreement with its own predictions >= {END_TO_END['vit'][2]} "
        f"(95 % t-interval over sequences). SUPPORTED if a language and a vision model were tested and every head "
        f"agrees and every end-to-end check passes at a largest m >= {REGIME_M:,}. NOT_SUPPORTED if some head "
        f"disagrees, or an end-to-end check fails at a largest m >= {REGIME_M:,} (CI high below the threshold). "
        f"INCONCLUSIVE otherwise (heads whose CI straddles, end-to-end checks only at small m, missing or "
        f"non-finite results, each counted and named). Minimum data: normaliser rows at m = {PAPER_M:,} on >= "
        f"{MIN_SEQUENCES} sequences x >= {MIN_SEEDS} feature draws and end-to-end rows, for a language and a vision "
        f"model; INSUFFICIENT_DATA below it. The output error at m = 1e3 and 1e5 is reported beside, not judged "
        f"(it decides C6).")


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


def _judge_heads(summaries: list[tuple[str, pd.DataFrame]]):
    """Normaliser error per head at PAPER_M: agrees, disagrees (Holm) or straddles."""
    evidence, failing, straddling = [], [], []
    for name, table in summaries:
        rows = table[(table["metric"] == "normaliser_error") & (table["m"] == PAPER_M)]
        for _, row in rows.iterrows():
            label = f"{row['target']} L{row['layer']} H{row['head']}"
            query = (f"target == '{row['target']}' and layer == {row['layer']} and head == {row['head']} "
                     f"and metric == 'normaliser_error' and m == {PAPER_M}")
            if row["p_above_adjusted"] < ALPHA:
                failing.append(f"{label} (normaliser error {row['statistic']:.3f})")
                state = "disagrees"
            elif row["p_below_adjusted"] < ALPHA:
                state = "agrees"
            else:
                straddling.append(label)
                state = "CI straddles the tolerance"
            evidence.append(Evidence(name, query, "normaliser_error", float(row["statistic"]),
                                     p_value=finite(row["p_above_adjusted"]), ci_low=finite(row["ci_low"]),
                                     ci_high=finite(row["ci_high"]), note=f"{label} at m = {PAPER_M:,}: {state}"))
    return evidence, failing, straddling


def _output_errors(summaries) -> dict:
    """Beside the verdict: mean output error per model at each m (these rows decide C6, not C2)."""
    found = {}
    for _, table in summaries:
        rows = table[table["metric"] == "relative_error"]
        for (target, m), part in rows.groupby(["target", "m"]):
            found[f"{target} m={int(m)}"] = {"heads": len(part), "median_error": float(part["statistic"].median()),
                                             "heads_below_tolerance": int((part["p_below_adjusted"] < ALPHA).sum())}
    return found


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


def _unpaired(summaries, end_to_end) -> list[str]:
    """Real targets with measured heads but no end-to-end rows, or the reverse."""
    with_heads = {t for _, table in summaries for t in table["target"].unique()}
    with_e2e = {t for _, table in end_to_end for t in table["target"].unique()}
    return ([f"{t}: measured heads but no end-to-end rows" for t in sorted(with_heads - with_e2e)]
            + [f"{t}: end-to-end rows but no measured heads" for t in sorted(with_e2e - with_heads)])


def _sufficient(summaries) -> list[tuple[str, pd.DataFrame]]:
    kept = []
    for name, table in summaries:
        part = table[(table["metric"] == "normaliser_error") & (table["m"] == PAPER_M)
                     & (table["n_sequences"] >= MIN_SEQUENCES) & (table["n_seeds"] >= MIN_SEEDS)]
        if not part.empty:
            kept.append((name, table[table["target"].isin(part["target"].unique())]))
    return kept


def judge(tables: dict) -> ClaimVerdict:
    summaries, end_to_end = _sufficient(_tables(tables, "_measured_summary")), _tables(tables, "_end_to_end")
    families = lambda found: {_family(t) for _, table in found for t in table["target"].unique()}
    heads_families, e2e_families = families(summaries), families(end_to_end)
    if not (VISION in heads_families and heads_families & set(LANGUAGE)
            and VISION in e2e_families and e2e_families & set(LANGUAGE)):
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", RULE,
                            reason=f"needs the normaliser error measured at m = {PAPER_M:,} on >= {MIN_SEQUENCES} "
                                   f"sequences x >= {MIN_SEEDS} feature draws and end-to-end tables, for a language "
                                   f"and a vision model: run `python -m astrostats.analyze fig3_language fig3_vision`",
                            analyses_needed=("fig3_language", "fig3_vision"))
    head_evidence, head_failing, head_straddling = _judge_heads(summaries)
    e2e_evidence, e2e_failing, e2e_small, e2e_missing = _judge_end_to_end(end_to_end)
    missing_results = e2e_missing + _unpaired(summaries, end_to_end)
    evidence = tuple(e2e_evidence + head_evidence)
    agreeing = sum(e.note.endswith(": agrees") for e in head_evidence)  # not "disagrees"
    headline = (f"normaliser error below {TOLERANCE:.0%} at m = {PAPER_M:,} in {agreeing} of {len(head_evidence)} "
                f"heads; " + "; ".join(f"{e.statistic} {e.value:.3f} ({e.note.split(';')[0]})" for e in e2e_evidence))
    details = {"heads_failing": head_failing, "heads_straddling": head_straddling, "end_to_end_failing": e2e_failing,
               "end_to_end_small_m": e2e_small, "missing_or_non_finite": missing_results,
               "output_error_beside": _output_errors(summaries)}
    if head_failing or e2e_failing:
        verdict = "NOT_SUPPORTED"
        reason = "; ".join(part for part in (
            f"{len(head_failing)} heads whose normaliser error stays above {TOLERANCE:.0%} at m = {PAPER_M:,}: "
            + ", ".join(head_failing[:8]) + (" ..." if len(head_failing) > 8 else "") if head_failing else "",
            f"end to end below threshold: {', '.join(e2e_failing)}" if e2e_failing else "") if part)
    elif head_straddling or e2e_small or missing_results:
        verdict = "INCONCLUSIVE"
        reason = "; ".join(part for part in (
            f"{len(missing_results)} missing or non-finite results: {', '.join(missing_results)}"
            if missing_results else "",
            f"{len(head_straddling)} heads whose CI straddles {TOLERANCE:.0%}" if head_straddling else "",
            f"end to end not yet agreeing at small m: {', '.join(e2e_small)}" if e2e_small else "") if part)
    else:
        verdict, reason = "SUPPORTED", (f"every real head's normaliser error is below {TOLERANCE:.0%} at m = "
                                        f"{PAPER_M:,} and every network agrees end to end")
    concerns = ("SmolLM2's weights are a 4-bit GGUF dequantised: close to, not identical with, the released model.",
                "The ViT is small and trained here on 4,000 MNIST digits; no pretrained ViT ships inside a package.")
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, evidence, reason, minor_concerns=concerns,
                        headline=headline, details=details)
