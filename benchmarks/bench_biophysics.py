"""Speed of the realistic astrocytes: tokens per second of the time-integrated variants, and the wall time of
the biology analysis' quick profile (target: under 3 minutes on 2 cores).

    python benchmarks/bench_biophysics.py [--skip-profile] [--threads 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from astrostats.circuits import biophysics as bio
from astrostats.circuits.features import draw_projection
from astrostats.targets.synthetic import synthetic_head


def _timed(function, repeats: int = 3) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def bench_variants(m: int = 1024, n_sequences: int = 8, n_tokens: int = 197, n_seeds: int = 4) -> pd.DataFrame:
    """Tokens (x sequences x seeds) per second for each variant family, given the circuit's pieces."""
    batch = synthetic_head(n_sequences=n_sequences, n_tokens=n_tokens, seed=0)
    projection = torch.stack([draw_projection(m, batch.q.shape[-1], seed=s) for s in range(n_seeds)]).unsqueeze(1)
    pieces = bio.circuit_pieces(batch.q, batch.k, batch.v, projection)
    generators = [torch.Generator().manual_seed(s) for s in range(n_seeds)]
    tokens = n_seeds * n_sequences * n_tokens
    rows = [{"variant": "circuit_pieces (shared)", "seconds": _timed(lambda: bio.circuit_pieces(
        batch.q, batch.k, batch.v, projection))}]
    warm = bio.li_rinzel_warm_state(0.5, 30.0)
    variants = [bio.Ideal(), bio.Saturating(2, 1.0), bio.SlowDivisor(0.55, 0.35, "event"),
                bio.SlowDivisor(2.0, 20.0, "exponential"), bio.LiRinzel(0.5), bio.WholeCellNoise(), bio.ProcessNoise(),
                bio.Microdomains(50), bio.HeterogeneousGains(0.5)]
    for variant in variants:
        seconds = _timed(lambda: bio.apply_variant(variant, pieces, generators, None, warm))
        rows.append({"variant": variant.name, "seconds": seconds})
    rows.append({"variant": "li_rinzel warm-up (30 s, once per setting)",
                 "seconds": _timed(lambda: bio.li_rinzel_warm_state(0.5, 30.0), repeats=1)})
    table = pd.DataFrame(rows)
    table["tokens_per_second"] = tokens / table["seconds"]
    table.insert(1, "m", m)
    table.insert(2, "tokens", tokens)
    return table


def bench_quick_profile() -> pd.DataFrame:
    """Wall time of `analyses/biology.toml` at the quick profile (tables only, no figures)."""
    from astrostats.spec import load_spec
    from astrostats.studies import get_study
    from astrostats.studies.base import RunContext

    spec = load_spec(Path(__file__).resolve().parent.parent / "analyses" / "biology.toml", "quick")
    start = time.perf_counter()
    tables = get_study("biology").run(spec, RunContext(out_dir=Path("."), progress=False))
    seconds = time.perf_counter() - start
    return pd.DataFrame([{"benchmark": "biology quick profile", "seconds": seconds,
                          "rows": len(tables["biology"]), "threads": torch.get_num_threads()}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    pd.set_option("display.width", 160)
    print(bench_variants().to_string(index=False, float_format=lambda x: f"{x:,.3g}"))
    if not arguments.skip_profile:
        print(bench_quick_profile().to_string(index=False))


if __name__ == "__main__":
    main()
