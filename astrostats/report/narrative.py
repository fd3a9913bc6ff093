"""The report's words that are not numbers: the critic's questions and which claims answer them, a short name
per claim, what would change each verdict, the limitations. Claims not listed here (a new claim in the
registry) get generic wording, so that the report shows every claim without an edit here; a claim module may
also define SHORT_NAME and WOULD_CHANGE itself, which take precedence.
"""
from __future__ import annotations

QUESTIONS = (
    ("Is the agreement just what many tunable units (overfitting) would give?", ("C3",)),
    ("Does it survive contact with real astrocytes?", ("C4", "C5")),
    ("How big must the circuit be, and does the paper's result hold on real Transformers?", ("C6", "C1", "C2")),
    ("What does the astrocyte buy over other biological circuits?", ("C7",)),
)

SHORT_NAMES = {"C1": "convergence as m grows", "C2": "real Transformers", "C3": "overfitting",
               "C4": "realistic astrocytes", "C5": "real astrocyte data", "C6": "the m each head needs",
               "C7": "what the astrocyte buys"}

PLAIN_VERDICTS = {"SUPPORTED": "Yes, by the pre-registered rule",
                  "NOT_SUPPORTED": "No: the data contradict it",
                  "INCONCLUSIVE": "Not decided by the rule",
                  "NOT_TESTABLE": "Cannot be tested with the data that exist",
                  "INSUFFICIENT_DATA": "Not enough data to decide"}

WOULD_CHANGE = {
    "C1": "SUPPORTED needs every logit scale's exponent CI to overlap 1/2 +- 0.1 with no floor: for peaked "
          "attention that means sweeping m far enough to reach the asymptotic regime (the full or exhaustive "
          "profile). NOT_SUPPORTED would need an exponent CI below 0.1 or a floor whose CI excludes 0.",
    "C2": "SUPPORTED would need every real head's exponent to be consistent with the m^-1/2 rate and end-to-end "
          "agreement within tolerance at the m swept; one head with a floor (no decline at all) keeps it "
          "NOT_SUPPORTED, so different models or heads, not more seeds, would change it.",
    "C3": "The capacity nulls (the same budget fitted to shuffled targets) must converge under the training "
          "budget for the rule to count them: longer training (the full profile) or closed-form fits would turn "
          "INCONCLUSIVE into SUPPORTED if the circuit still beats them; a converged null that matches the "
          "circuit's held-out error would make it NOT_SUPPORTED.",
    "C4": "A realistic variant whose m for 10 % error stays within one human astrocyte's synapses, with CIs, "
          "for every head where the ideal circuit fits; measured (not assumed) noise levels below the SNR used "
          "here would remove the floors that break it now.",
    "C5": "Only new data: paired recordings of an astrocyte's Ca2+ and the synaptic input driving it. No "
          "re-analysis of the existing culture traces can test the attention mapping.",
    "C6": "If every model's heads needed fewer units than one astrocyte's synapses (with the CI's upper end), "
          "the verdict would turn SUPPORTED; it rests on the heads with the largest requirement and on floors, "
          "so better circuits, not more seeds, would change it.",
}
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
    return getattr(module, "SHORT_NAME", None) or SHORT_NAMES.get(claim_id) or statement.split(":")[0][:40]


def would_change(claim_id: str, module=None) -> str:
    return getattr(module, "WOULD_CHANGE", None) or WOULD_CHANGE.get(claim_id, GENERIC_WOULD_CHANGE)
