"""C5: validated against real astrocyte data: what the data that exist can and cannot test."""
from __future__ import annotations

from astrostats.claims.rules import thresholds
from astrostats.claims import AuditedCircuit, finite, minimum_data, quote
from astrostats.claims.verdicts import ClaimVerdict, Evidence

CLAIM_ID = "C5"
STATEMENT = "The circuit is validated against real astrocyte data."
SHORT_NAME = 'real astrocyte data'
#: what new evidence would change the verdict (the report shows it beside the verdict)
WOULD_CHANGE = ("Only new data: paired recordings of an astrocyte's Ca2+ and the synaptic input driving it. No "
                're-analysis of the existing culture traces can test the attention mapping.')
MIN_EVENTS = thresholds(CLAIM_ID)["min_events"]  # a data median's bootstrap CI needs this many events or traces
RULE = ("Testing the attention mapping needs recordings of an astrocyte together with the synaptic input that "
        "drives it (to compute the softmax normaliser it should report). The available data (Schroeder, Bassett "
        "& Meaney 2022: cultured astrocyte Ca2+ snippets, 20 fps, F/F0) record no synaptic input, so the mapping "
        "is NOT_TESTABLE, always. What they can test is the noise and event-shape model the realistic variants "
        "use: from the biology study's calibration table (name ending in _calibration), each metric's model "
        f"median is reported against the data's with its 95 % bootstrap CI, for metrics measured on >= {MIN_EVENTS} "
        "events or traces (minimum data; fewer are listed as insufficient); a missing or flagged table is stated "
        "as such.")
CAN_TEST = ("baseline noise SD, event SNR, 10-90 % rise and peak-to-half decay of culture Ca2+ events, and hence "
            "the noise and kinetics fed to the realistic astrocyte variants (claim C4)")
CANNOT_TEST = ("whether an astrocyte's response equals sum_tau exp(q_t k_tau), whether it divides a synaptic output, "
               "any agreement with a Transformer: no synaptic input or neuronal output is recorded; cultures, not "
               "behaving animals; 4 s snippets, too short for seconds-scale integration")


def judge(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> ClaimVerdict:
    if not circuit.is_default:
        return circuit.not_about_it(CLAIM_ID, STATEMENT, RULE, "the comparison with astrocyte calcium recordings")
    found = [(name, table) for name, table in tables.items() if name.endswith("_calibration") and "metric" in table]
    evidence, notes = [], []
    for name, table in found:
        for index, row in table.iterrows():
            if row.get("status") != "ok":
                notes.append(f"{row['metric']}: {row.get('reason', 'not calibrated')}")
                continue
            shortfall = minimum_data(table.loc[[index]], observations=MIN_EVENTS) if "n" in table else None
            if shortfall:
                notes.append(f"{row['metric']}: insufficient data ({shortfall})")
                continue
            fitted = "fitted" if row.get("fitted") else "predicted (not fitted)"
            evidence.append(Evidence(name, f"metric == {quote(row['metric'])}", f"model median {row['metric']}",
                                     float(row["model"]), ci_low=finite(row.get("data_ci_low")),
                                     ci_high=finite(row.get("data_ci_high")),
                                     effect=f"relative gap {row['relative_gap']:+.1%}",
                                     note=f"data median {row['data']:.4g} ({fitted}); CI is the data's"))
    if evidence:
        predicted = [e for e in evidence if "predicted" in e.note]
        inside = [e for e in predicted if e.ci_low is not None and e.ci_high is not None and e.ci_low <= e.value <= e.ci_high]
        reason = (f"the mapping cannot be tested with these data (no synaptic input recorded); the noise and event "
                  f"model was: {len(inside)} of {len(predicted)} predicted statistics fall inside the data's 95 % CI"
                  + (f" ({'; '.join(notes)})" if notes else ""))
    else:
        reason = ("the mapping cannot be tested with these data (no synaptic input recorded); the noise model "
                  "calibration did not run" + (f" ({'; '.join(notes[:2])})" if notes else ""))
    return ClaimVerdict(CLAIM_ID, STATEMENT, "NOT_TESTABLE", RULE, tuple(evidence), reason,
                        headline="not testable by construction: no astrocyte recording with known synaptic input "
                                 "exists, so no data can test the attention mapping; the culture traces calibrate "
                                 "noise and event shape only",
                        analyses_needed=("paired recordings of astrocyte Ca2+ and the synaptic input driving it",),
                        details={"can_test": CAN_TEST, "cannot_test": CANNOT_TEST})
