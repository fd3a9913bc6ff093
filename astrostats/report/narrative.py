"""The report's words that are not numbers: the critic's questions and which claims answer them, a short name
per claim and what would change each verdict (each claim module's SHORT_NAME and WOULD_CHANGE, generic wording
for a claim without them), the limitations.
"""
from __future__ import annotations

import re

QUESTIONS = (
    ("Is the agreement just what many tunable units (overfitting) would give?", ("C3",)),
    ("Does it survive contact with real astrocytes?", ("C4", "C5")),
    ("How big must the circuit be, and does the paper's result hold on real Transformers?", ("C6", "C1", "C2")),
    ("What does the astrocyte buy over other biological circuits?", ("C7",)),
)

PLAIN_VERDICTS = {"SUPPORTED": "Yes, by the pre-registered rule",
                  "NOT_SUPPORTED": "No: the data contradict it",
                  "INCONCLUSIVE": "Not decided by the rule",
                  "NOT_TESTABLE": "Cannot be tested with the data that exist",
                  "INSUFFICIENT_DATA": "Not enough data to decide"}

GENERIC_WOULD_CHANGE = ("The verdict follows from its rule applied to the cited rows: new data that move the "
                        "decisive rows across the rule's thresholds (stated above) would change it.")

LIMITATIONS = (
    "Agreement at large m is guaranteed by construction: phi(q)·phi(k) is an unbiased estimator of exp(q·k). "
    "Convergence is evidence about the mathematics of random features, not about astrocytes.",
    "No recording of astrocytes driven by known synaptic input exists offline; the real calcium traces "
    "(cultures, 20 fps) calibrate noise and event shape only.",
    "SmolLM2 weights are 4-bit quantised (GGUF) and dequantised: close to, not identical with, the original model.",
    "The vision Transformer is a small model trained here on MNIST digits, not the paper's pretrained ViT-B/16; "
    "the language head is MiniLM's or SmolLM2's, not the paper's ALBERT head.",
    "Quick-profile runs use fewer seeds, sequences and m values than the full profile; their CIs are wider and "
    "some rules (C3's converged controls) can only decide at the full profile.",
    "Verdicts follow pre-registered rules; a reader who prefers another threshold finds every number in "
    "audit.json and the tables, with the query that selects it.",
)

READING = ("How to read this report. Each claim has a section: the rule that decides it, one or two figures "
           "(the paper's own figures reproduced beside what this audit adds), the decisive rows of its tables and "
           "what would change the verdict. Colours are fixed across figures: the circuit under audit is blue, nulls "
           "are warm colours (uniform attention red), fitted controls green and purple, theory a black dashed "
           "line, the 10 % tolerance a grey dotted line, one astrocyte's synapse count a purple dash-dot line. "
           "Methods are generated from the specs; every number a verdict cites, with the query that selects it, is in "
           "audit.json, and the appendix holds the figures the sections leave out.")


def short_name(claim_id: str, statement: str, module=None) -> str:
    return getattr(module, "SHORT_NAME", None) or statement.split(":")[0][:40]


def would_change(claim_id: str, module=None) -> str:
    return getattr(module, "WOULD_CHANGE", None) or GENERIC_WOULD_CHANGE


def parts(text: str, separator: str = "; ") -> list[str]:
    """``text`` split at ``separator`` where it is not inside parentheses (a CI or a list in brackets stays
    whole)."""
    pieces, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text[i] in "([":
            depth += 1
        elif text[i] in ")]":
            depth = max(0, depth - 1)
        elif depth == 0 and text.startswith(separator, i):
            pieces.append(text[start:i])
            start = i + len(separator)
            i = start
            continue
        i += 1
    pieces.append(text[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


PROCEDURAL = ("decides", "decided")  # a lead-in such as 'amendment v2 (2026-12-06) decides' says no finding


def sentence(text: str) -> str:
    """``text`` as a sentence: a capital first letter and a full stop."""
    text = text.strip().rstrip(".;,")
    word = re.match(r"[^\s:]*(:?)", text)
    label = word[1] and word[0][:-1] != "scope"  # 'minilm: ...', an identifier, keeps its case
    plain = word[0].rstrip(":").isalpha() and not label
    return (text[:1].upper() + text[1:] if plain else text) + "." if text else ""


def lead(reason: str) -> str:
    """The finding a reason opens with, as one whole sentence: its first clause, before the list of heads or
    cases that follows a colon or a semicolon (a procedural lead-in such as 'amendment v2 decides' skipped)."""
    clauses = [clause for part in parts(reason) for clause in parts(part, ": ")]
    finding = next((clause for clause in clauses  # a one-word label ('minilm: ...') is not a finding
                    if " " in clause and not clause.endswith(PROCEDURAL)), reason)
    return sentence(finding)


def whole_parts(text: str, limit: int) -> tuple[str, int]:
    """As many whole '; '-separated parts of ``text`` as fit in ``limit`` characters (always the first), and
    how many were left for the claim's section: no part is ever cut."""
    pieces = parts(text)
    kept = pieces[:1]
    for piece in pieces[1:]:
        if len("; ".join(kept + [piece])) > limit:
            break
        kept.append(piece)
    return "; ".join(kept), len(pieces) - len(kept)


def scope_and_numbers(headline: str, limit: int = 260, where: str = "in its section") -> str:
    """Page 1's line on what a verdict covers: the headline's whole parts that fit, then how many more
    findings the claim's section (``where``) gives."""
    kept, rest = whole_parts(headline, limit)
    more = f" ({rest} more {'finding' if rest == 1 else 'findings'} {where}.)" if rest else ""
    return sentence(kept) + more
