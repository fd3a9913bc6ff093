"""Planted direct measurements for the claim tests: tidy rows as studies.measured writes them, with known means."""
import numpy as np
import pandas as pd

from astrostats.studies import measured


def planted_rows(means: dict, m_values=(1000, 10000, 100000), n_sequences=8, n_seeds=4, sd=0.01, seed=0,
                 heads=((0, 0), (0, 1))) -> pd.DataFrame:
    """means: {(target, metric): callable m -> mean error}; normal noise of SD ``sd`` per (seed, sequence)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (target, metric), mean in means.items():
        for layer, head in heads:
            for m in m_values:
                for s in range(n_seeds):
                    for sequence in range(n_sequences):
                        rows.append({"target": target, "layer": layer, "head": head, "circuit": "astrocyte",
                                     "feature_map": "positive", "m": m, "seed": s, "sequence_id": sequence,
                                     "metric": metric, "value": abs(mean(m) + sd * rng.standard_normal())})
    return pd.DataFrame(rows)


def planted_tables(rows: pd.DataFrame, n_resamples=200, seed=1, theory=None, fits=None) -> dict:
    summary, shares = measured.summarise(rows, n_resamples=n_resamples, seed=seed)
    if theory is None:
        heads = rows.drop_duplicates(measured.HEAD_LABELS)[measured.HEAD_LABELS]
        theory = heads.assign(predicted_constant=np.nan, m_required_theory=np.nan)
    return {"fig3_measured_summary": summary, "fig3_measured_shares": shares,
            "fig3_required_m": measured.required_m_table(summary, theory, fits)}
