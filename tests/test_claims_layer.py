"""The claims layer: each claim states its rule, reads its numbers from the pre-registered rules.toml (one source,
shared with the scaling study), declares the tables it reads as schemas checked before it judges."""
import importlib
import json
from pathlib import Path

import pandas as pd
import pytest

from astrostats.claims import c1_convergence, c2_real_models, judging
from astrostats.claims.rules import rules_sha256, thresholds
from astrostats.studies import scaling

REFERENCE = Path(__file__).resolve().parent / "reference_run"


@pytest.mark.parametrize("claim_id, module_name", judging.CLAIMS)
def test_every_claim_states_its_rule_and_judges(claim_id, module_name):
    module = importlib.import_module(module_name)
    assert module.CLAIM_ID == claim_id and module.STATEMENT and module.RULE and callable(module.judge)


def test_the_rule_numbers_come_from_the_preregistered_file_alone():
    rules = thresholds("C1")
    assert (c1_convergence.RATE, c1_convergence.ALPHA_MARGIN, c1_convergence.BOUND) == (
        rules["rate"], rules["alpha_margin"], rules["regime_bound"])
    assert (scaling.REGIME_BOUND, scaling.ALPHA_MARGIN, scaling.RATIO_MARGIN) == (
        rules["regime_bound"], rules["alpha_margin"], rules["ratio_margin"])  # the study computes what C1 reads
    assert c2_real_models.END_TO_END[("top1_agreement", "language")] == 0.90
    thresholds("C1")["rate"] = 0.0  # a caller's copy: nobody else reads it
    assert thresholds("C1")["rate"] == 0.5
    assert len(rules_sha256()) == 64


def test_every_stored_reference_table_passes_the_schemas_of_the_claims_that_read_it():
    tables = {path.stem: pd.read_parquet(path) for path in REFERENCE.glob("*.parquet")}
    read = 0
    for _, module_name in judging.CLAIMS:
        declared = getattr(importlib.import_module(module_name), "SCHEMAS", {})
        read += sum(schema.applies_to(table) for suffix, schema in declared.items()
                    for name, table in tables.items() if name.endswith(suffix))
        from astrostats.claims import schemas
        assert schemas.problems(declared, tables) == [], module_name
    assert read >= 8  # C1, C2 x 2, C3 x 2, C4, C6 x 2, C7: the schemas do meet the tables they are for


def test_a_malformed_table_is_not_judged():
    table = pd.read_parquet(REFERENCE / "scaling_asymptotic.parquet")
    verdicts = {v.claim_id: v for v in judging.judge_all({"scaling_asymptotic": table}, {"analyses": []})}
    assert verdicts["C1"].verdict == json.loads((REFERENCE / "verdicts.json").read_text())["C1"]
    table = table.assign(floor_p_value=1.5)  # a p-value outside [0, 1]
    verdict = {v.claim_id: v for v in judging.judge_all({"scaling_asymptotic": table}, {"analyses": []})}["C1"]
    assert verdict.verdict == "INSUFFICIENT_DATA" and "floor_p_value" in verdict.reason and "schema" in verdict.reason
