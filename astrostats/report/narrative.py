"""The report's words that are not numbers: the critic's questions and which claims answer them, a short name
per claim and what would change each verdict (each claim module's SHORT_NAME and WOULD_CHANGE, generic wording
for a claim without them), the limitations.
"""
from __future__ import annotations

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
           "Methods are generated from the specs; the appendix lists every cited number.")


def short_name(claim_id: str, statement: str, module=None) -> str:
    return getattr(module, "SHORT_NAME", None) or statement.split(":")[0][:40]


def would_change(claim_id: str, module=None) -> str:
    return getattr(module, "WOULD_CHANGE", None) or GENERIC_WOULD_CHANGE
