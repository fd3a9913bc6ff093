"""The error each real head has at one astrocyte's synapse count, measured there instead of extrapolated (issue 14).

The circuit's output is a ratio of two sums over hidden units, y_t = sum_i H_i phi_i(q_t) / sum_i g_i phi_i(q_t).
A circuit of M units is therefore a sum of blocks: each block of m_b units (its own feature draw) gives its
output y_b and response a_b (an unbiased estimate of the normaliser Z_t from m_b units), and the M-unit circuit is

    a = sum_b (m_b / M) a_b,     y = sum_b (m_b / M) a_b y_b / a,

exactly, to float rounding. :func:`measure_heads` grows one circuit block by block and scores it whenever its
size passes a requested m (so m = 1e3, 1e4, 1e5, 2e6 are measured on nested circuits of one growing draw per
seed), with memory bounded by the block width and the number of (head, sequence) items per call, never by M.
Each block's W depends only on (base seed, seed, block index, head size), so it is drawn once for every head
of a model and a task's result does not depend on the executor.

Tables (prefixed by the spec's name in real_heads): ``_measured`` (tidy rows: relative_error, normaliser_error,
normaliser_error_per_token, cosine per head, m, seed, sequence), ``_measured_summary`` (per head, m and metric: mean over sequences x seeds
with a crossed-bootstrap CI and Holm-adjusted one-sided p-values against the tolerance, family = every head of
the table at that m and metric), ``_measured_shares`` (per model and m: share of heads below the tolerance, CI
from the same resamples) and ``_required_m`` (per head: the bracket on the m needed for the tolerance and the
class against one rodent and one human astrocyte; :func:`required_m_table` states the rule).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from astrostats.circuits.features import draw_projection
from astrostats.circuits.registry import DEFAULT_CIRCUIT, checked_result, get_circuit
from astrostats.circuits.kernels import STREAM_CHUNK
from astrostats.circuits.theory import predicted_error_constant
from astrostats.constants import HUMAN_SYNAPSES, RODENT_SYNAPSES, TOLERANCE
from astrostats.execution import Executor
from astrostats.seeding import derived_seed, seed_sequence
from astrostats.runner import CHUNK_TOKENS, references, score, tidy_rows
from astrostats.stats.crossed import crossed_bootstrap, crossed_t_test, share_below
from astrostats.stats.multitest import adjust_p_values
from astrostats.targets.base import TargetBatch
from astrostats.validation import check_int, check_int_list, fail

NESTED_TAG = 97  # a fourth SeedSequence word distinct from the runner's feature-map indices (0-3)
MAX_BLOCK = 100_000  # hidden units per block at most (W of 1e5 x 64 float32: 26 MB)
SPECIES = {"rodent": RODENT_SYNAPSES, "human": HUMAN_SYNAPSES}
HEAD_LABELS = ["target", "layer", "head"]
FAMILY_ALPHA = 0.05
CORRECTION = "holm"
RATE_ASSUMPTION = ("lower bound m_last (e_low / eps)^2: from the last measured point the error falls at most as fast "
                   "as m^(-1/2), the rate of an unbiased random-feature estimator once it is asymptotic (pre-asymptotic "
                   "heads fall more slowly, so the bound holds for them too); e_low is the CI's lower end")


def nested_blocks(m_values: Sequence[int], max_block: int = MAX_BLOCK) -> tuple[list[int], dict[int, int]]:
    """Block sizes whose running totals pass through every m, and {block index: m} where a total equals an m."""
    m_values = sorted(set(check_int_list("measured_m", m_values)))
    max_block = check_int("max_block", max_block, minimum=1)
    blocks, checkpoints, total = [], {}, 0
    for m in m_values:
        while total < m:
            size = min(max_block, m - total)
            blocks.append(size)
            total += size
        checkpoints[len(blocks) - 1] = m
    return blocks, checkpoints


def block_projection(base_seed: int, seed: int, block: int, size: int, d: int) -> torch.Tensor:
    return draw_projection(size, d, seed=seed_sequence(base_seed, NESTED_TAG, seed, block))


def _items_per_call(n_items: int, n_tokens: int, d_v: int, width: int, causal: bool, memory_bytes: float) -> int:
    """(head, sequence) items per circuit call: the tiled path holds Hebbian blocks (d_v + 1 per unit and
    item), the causal stream its rates (queries, keys, a block of keys) as well; at most CHUNK_TOKENS tokens,
    as the runner (the tiled kernel's GEMMs are fastest there)."""
    per_unit = (2 * n_tokens + STREAM_CHUNK + d_v + 2) if causal else (d_v + 2)
    by_memory = memory_bytes // (6.0 * per_unit * width)
    return int(max(1, min(n_items, by_memory, max(1, CHUNK_TOKENS // n_tokens))))


def measure_heads(common: tuple, seed: int) -> pd.DataFrame:
    """One feature seed on every head of a group sharing (tokens, head size, causality): tidy rows at each m.

    ``common`` = (targets, references, m values, base seed, memory in bytes, max block, circuit name). A circuit
    whose units add up grows by nested blocks; any other is called at each m with its own draw."""
    targets, exact_references, m_values, base_seed, memory, max_block, name = common
    circuit = get_circuit(name)
    q = torch.cat([t.q for t in targets])
    k = torch.cat([t.k for t in targets])
    v = torch.cat([t.v for t in targets])
    exact = torch.cat([r[0] for r in exact_references])
    log_z = torch.cat([r[1] for r in exact_references])
    causal = targets[0].causal
    n_items, n_tokens, d = q.shape
    d_v = v.shape[-1]
    if not (circuit.units_add_up and circuit.with_projection):
        return _measure_directly(circuit, targets, (q, k, v), exact, log_z, m_values, base_seed, seed, memory)
    # the widest block that fits one item in memory, at most max_block
    width_cap = int(max(1024, memory // (6.0 * ((2 * n_tokens + STREAM_CHUNK + d_v + 2) if causal else (d_v + 2)))))
    blocks, checkpoints = nested_blocks(m_values, min(max_block, width_cap))
    numerator = torch.zeros(n_items, n_tokens, d_v, dtype=torch.float64)
    denominator = torch.zeros(n_items, n_tokens, dtype=torch.float64)
    reference = torch.zeros(n_items, n_tokens, dtype=torch.float64)
    frames, total = [], 0
    for index, size in enumerate(blocks):
        projection = block_projection(base_seed, seed, index, size, d).to(q.dtype)
        chunk = _items_per_call(n_items, n_tokens, d_v, size, causal, memory)
        for start in range(0, n_items, chunk):
            part = slice(start, min(n_items, start + chunk))
            result = checked_result(name, circuit.with_projection(q[part], k[part], v[part], projection, "positive",
                                                                  causal), q[part], v[part])
            log_a = result.log_normaliser
            if index == 0:
                reference[part] = log_a
            weight = size * (log_a - reference[part]).exp()
            numerator[part] += weight.unsqueeze(-1) * result.output.double()
            denominator[part] += weight
        total += size
        if index in checkpoints:
            output = numerator / denominator.unsqueeze(-1)
            log_response = reference + (denominator / total).log()
            metrics = score(output, exact, log_response, log_z)
            offset = 0
            for target in targets:
                rows = slice(offset, offset + target.n_sequences)
                offset += target.n_sequences
                frames.append(_rows(target, circuit, checkpoints[index], seed, metrics, rows))
    return pd.concat(frames, ignore_index=True)


def _rows(target: TargetBatch, circuit, m: int, seed: int, metrics: dict, rows: slice) -> pd.DataFrame:
    return tidy_rows(target.labels, circuit.name, circuit.primary_feature_map, m, [seed], list(target.sequence_ids),
                     {metric: value[rows] for metric, value in metrics.items()})


def _measure_directly(circuit, targets, qkv, exact, log_z, m_values, base_seed: int, seed: int,
                      memory: float) -> pd.DataFrame:
    """A circuit whose units do not add up: one call per m on every (head, sequence) item, chunked so that about
    six (N, m) float32 tensors per item fit in ``memory``."""
    q, k, v = qkv
    n_items, n_tokens, _ = q.shape
    frames = []
    for m in sorted(m_values):
        chunk = int(max(1, min(n_items, memory // (6.0 * 4 * n_tokens * m))))
        own_seed = derived_seed(base_seed, NESTED_TAG, seed, m)
        parts = [circuit(q[s:s + chunk], k[s:s + chunk], v[s:s + chunk], m=m, seed=own_seed, causal=targets[0].causal)
                 for s in range(0, n_items, chunk)]
        log_response = None if parts[0].log_normaliser is None else torch.cat([p.log_normaliser for p in parts])
        metrics = score(torch.cat([p.output for p in parts]), exact, log_response, log_z)
        offset = 0
        for target in targets:
            rows = slice(offset, offset + target.n_sequences)
            offset += target.n_sequences
            frames.append(_rows(target, circuit, m, seed, metrics, rows))
    return pd.concat(frames, ignore_index=True)


def measured_table(batches: list[TargetBatch], m_values: Sequence[int], n_seeds: int, base_seed: int, *,
                   memory_mb: int, executor: Executor | None = None, progress: bool = False,
                   max_block: int = MAX_BLOCK, circuit: str = DEFAULT_CIRCUIT) -> pd.DataFrame:
    """Every head at every m of ``m_values`` with ``n_seeds`` feature draws: the runner's tidy rows.

    Heads are grouped by shape (one W per block serves the group); a task is one group and one seed."""
    if not batches:
        raise fail("targets", "at least one head to measure", batches)
    check_int("n_seeds", n_seeds, minimum=1)
    groups: dict[tuple, list[int]] = {}
    for index, batch in enumerate(batches):
        groups.setdefault((tuple(batch.q.shape[1:]), batch.v.shape[-1], batch.causal), []).append(index)
    executor = executor or Executor()
    frames = []
    for members in groups.values():
        group = [batches[i] for i in members]
        common = (group, [references(b) for b in group], tuple(m_values), base_seed, memory_mb * 2**20, max_block,
                  circuit)
        frames += executor.map(measure_heads, list(range(n_seeds)), common=common, desc="measured m",
                               progress=progress)
    table = pd.concat(frames, ignore_index=True)
    order = {tuple(b.labels[key] for key in HEAD_LABELS): i for i, b in enumerate(batches)}
    table["_order"] = [order[key] for key in zip(*(table[key] for key in HEAD_LABELS))]
    table = table.sort_values(["_order", "m", "metric", "seed", "sequence_id"], kind="stable")
    table = table.drop(columns="_order").reset_index(drop=True)
    table["m"] = table["m"].astype("Int64")
    table["seed"] = table["seed"].astype("Int64")
    return table


def theory_constants(batches: list[TargetBatch]) -> pd.DataFrame:
    """Per head: the delta-method constant C (mean over sequences; error ~ C / sqrt(m)) and the m it implies."""
    rows = []
    for batch in batches:
        constant = float(predicted_error_constant(batch.q, batch.k, batch.v, batch.causal).double().mean())
        rows.append({**{key: batch.labels[key] for key in HEAD_LABELS}, "predicted_constant": constant,
                     "m_required_theory": (constant / TOLERANCE) ** 2})
    return pd.DataFrame(rows)


def _grid(part: pd.DataFrame) -> np.ndarray:
    """(seeds, sequences) values of one head, m and metric."""
    return part.pivot_table(index="seed", columns="sequence_id", values="value", aggfunc="mean").to_numpy(dtype=float)


def _head_grids(part: pd.DataFrame) -> tuple[list[tuple], np.ndarray]:
    """The heads of one target, m and metric in order of appearance, and their (heads, seeds, sequences) values
    (NaN-padded): :func:`_grid` per head, in one pass of numpy (a pivot_table per head cost 0.06 s: 40 s for 72
    heads at three m and three metrics). Values with a NaN take the per-head path (pivot_table drops all-NaN
    columns)."""
    codes, heads = _head_codes(part)
    values = part["value"].to_numpy(dtype=float)
    if np.isnan(values).any():
        grids = [_grid(group) for _, group in part.groupby(["layer", "head"], sort=False)]
        shape = max(g.shape for g in grids)
        out = np.full((len(grids), *shape), np.nan)
        for i, grid in enumerate(grids):
            out[i, :grid.shape[0], :grid.shape[1]] = grid
        return heads, out
    rows = _dense_rank_within(codes, part["seed"].to_numpy())  # each head's own sorted seeds
    columns = _dense_rank_within(codes, part["sequence_id"].to_numpy())
    shape = (len(heads), rows.max() + 1, columns.max() + 1)
    cells = np.ravel_multi_index((codes, rows, columns), shape)
    total = np.bincount(cells, weights=values, minlength=math.prod(shape)).reshape(shape)
    count = np.bincount(cells, minlength=math.prod(shape)).reshape(shape)
    with np.errstate(invalid="ignore"):
        return heads, np.where(count > 0, total / np.maximum(count, 1.0), np.nan)


def _head_codes(part: pd.DataFrame) -> tuple[np.ndarray, list[tuple]]:
    """Each row's head as a code, and the (layer, head) pairs in order of appearance."""
    layer, head = part["layer"].to_numpy(), part["head"].to_numpy()
    if layer.dtype.kind not in "iu" or head.dtype.kind not in "iu" or not len(head):
        codes, heads = pd.MultiIndex.from_arrays([part["layer"], part["head"]]).factorize(sort=False)
        return codes, list(heads)
    span = int(head.max()) - int(head.min()) + 1
    codes, _ = pd.factorize(layer.astype(np.int64) * span + (head - head.min()), sort=False)
    first = np.unique(codes, return_index=True)[1]
    return codes, list(zip(layer[first].tolist(), head[first].tolist()))


def _dense_rank_within(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """0-based dense rank of each value among its group's distinct values (a groupby rank without pandas)."""
    order = np.lexsort((values, groups))
    group, value = groups[order], values[order]
    starts = np.r_[True, group[1:] != group[:-1]]
    counter = np.cumsum(starts | np.r_[True, value[1:] != value[:-1]]) - 1
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = counter - np.maximum.accumulate(np.where(starts, counter, 0))
    return ranks


def summarise(measured: pd.DataFrame, *, n_resamples: int, seed: int,
              metrics: Sequence[str] = ("relative_error", "normaliser_error", "normaliser_error_per_token")
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per head x m x metric, shares of heads below the tolerance per model x m x metric).

    Heads of one model share sequences and seeds: one set of crossed resamples per (model, m, metric) gives
    every head's CI and the share's CI. A head's test against the tolerance is the crossed design's t-test
    (:func:`astrostats.stats.crossed.crossed_t_test`, amendment 2026-12-06: ``p_above``, ``p_below``, with ``se``
    and ``df``; the crossed bootstrap's one-sided p-values, which it replaced, stay as ``p_above_bootstrap`` and
    ``p_below_bootstrap``). p-values are Holm-adjusted over every head of the table at that m and metric
    (``p_above_adjusted``, ``p_below_adjusted``)."""
    summaries, shares = [], []
    measured = measured[measured["metric"].isin(metrics)]
    family = measured.drop_duplicates(["m", "metric", *HEAD_LABELS]).groupby(["m", "metric"]).size()
    # enough resamples that a head clear of the tolerance could pass Holm on its bootstrap p (1 / (B + 1) times the
    # family size below alpha / 2): the rule before the amendment, whose p-values are kept beside the t-test's
    resamples = max(n_resamples, math.ceil(2 * int(family.max()) / FAMILY_ALPHA))
    for (target, m, metric), part in measured.groupby(["target", "m", "metric"], sort=False):
        heads, values = _head_grids(part)
        table, draws = crossed_bootstrap(values, TOLERANCE, n_resamples=resamples,
                                           seed=seed_sequence(seed, int(m)))
        test = crossed_t_test(values, TOLERANCE)
        columns = {"target": target, "layer": [key[0] for key in heads], "head": [key[1] for key in heads],
                   "m": int(m), "metric": metric}  # one frame built once (an insert per column was most of the cost)
        columns.update((f"{name}_bootstrap" if name in ("p_above", "p_below") else name, table[name].to_numpy())
                       for name in table.columns)
        columns.update(se=test["se"].to_numpy(), df=test["df"].to_numpy(), p_above=test["p_above"].to_numpy(),
                       p_below=test["p_below"].to_numpy(), test=test["method"].to_numpy(), n_resamples=resamples)
        summaries.append(pd.DataFrame(columns))
        shares.append({"target": target, "m": int(m), "metric": metric, "tolerance": TOLERANCE,
                       **share_below(table["statistic"], draws, TOLERANCE)})
    summary = pd.concat(summaries, ignore_index=True)
    for side in ("above", "below"):
        adjusted = adjust_p_values(summary, method=CORRECTION, alpha=FAMILY_ALPHA, p_col=f"p_{side}",
                                   by=["m", "metric"])
        summary[f"p_{side}_adjusted"] = adjusted["p_value_adjusted"]
    summary["correction"] = f"{CORRECTION} over heads at each m and metric (alpha {FAMILY_ALPHA})"
    summary["tolerance"] = TOLERANCE
    return summary, pd.DataFrame(shares)


def _classify(required: dict, count: float) -> tuple[str, str]:
    """(class, basis) of one head against ``count`` synapses: 'within', 'beyond' or 'undetermined'."""
    for m, p_above, p_below in required["measured"]:  # ascending m
        if m <= count and p_below < FAMILY_ALPHA:
            return "within", f"measured at m = {m:,}: error below {TOLERANCE} (one-sided p {p_below:.2g}, Holm)"
        if m >= count and p_above < FAMILY_ALPHA:
            return "beyond", f"measured at m = {m:,}: error above {TOLERANCE} (one-sided p {p_above:.2g}, Holm)"
    if any(m == count for m, *_ in required["measured"]):
        return "undetermined", f"measured at m = {count:,.0f}: neither side of {TOLERANCE} shown (Holm)"
    if required["floor"]:
        return "beyond", "a floor above the tolerance (Holm-adjusted floor test and E_inf CI above it)"
    bracket = [value for value in (required["lower"], required["fitted_low"], required["fitted_high"],
                                   required["theory"]) if value is not None and not math.isnan(value)]
    if not bracket:
        return "undetermined", "no bracket"
    if min(bracket) > count:
        return "beyond", "the whole bracket (lower bound, fitted CI, delta method) lies above"
    uppers = [value for value in (required["fitted_high"], required["theory"])
              if value is not None and not math.isnan(value)]
    if uppers and max(bracket) <= count:  # within needs an upper end: the lower bound alone says nothing
        return "within", "the whole bracket (lower bound, fitted CI, delta method) lies below"
    return "undetermined", "undetermined within budget: the bracket straddles"


def required_m_table(summary: pd.DataFrame, theory: pd.DataFrame, fits: pd.DataFrame | None = None, *,
                     circuit: str = DEFAULT_CIRCUIT) -> pd.DataFrame:
    """Per head: the m needed for TOLERANCE relative error as a bracket, and its class per species.

    Bracket: ``m_required_lower`` (RATE_ASSUMPTION), ``m_required_fitted`` with its CI (the sweep's scaling
    fit, when the head was swept; a fitted floor counts only when the data say so: Holm-adjusted floor
    p < 0.05 over the fitted heads and the floor's CI low above the tolerance, else the head is 'beyond m_max'
    of the fit), ``m_required_theory`` ((C / eps)^2, delta method from the head's own q and k). A head is
    classed against a synapse count from a direct measurement (Holm-adjusted one-sided p < 0.05 at an m on
    the right side of the count) or when the whole bracket lies on one side; otherwise 'undetermined'.
    """
    errors = summary[summary["metric"] == "relative_error"]
    fitted = _fitted(fits, circuit)
    theories = {}  # each head's first theory row, as a lookup (a filter per head was most of this table's cost)
    for key, value in zip(zip(*(theory[c] for c in HEAD_LABELS)), theory["m_required_theory"]):
        theories.setdefault(key, float(value))
    heads: dict[tuple, list[dict]] = {}  # the heads in order of appearance, each with its rows
    for record in errors.to_dict("records"):
        heads.setdefault(tuple(record[c] for c in HEAD_LABELS), []).append(record)
    rows = []
    for (target, layer, head), part in heads.items():
        part = sorted(part, key=lambda record: record["m"])
        first, last = part[0], part[-1]
        below = [float(r["m"]) for r in part if r["p_below_adjusted"] < FAMILY_ALPHA]
        # reached by a measurement: no lower bound needed (m_reached_measured says where); else the rate bound
        lower = math.nan if below else float(last["m"]) * max(float(last["ci_low"]) / TOLERANCE, 1.0) ** 2
        fit = fitted.get((target, layer, head), {})
        required = {
            "measured": [(int(r["m"]), r["p_above_adjusted"], r["p_below_adjusted"]) for r in part],
            "lower": lower if not below else None, "floor": fit.get("floor", False),
            "fitted_low": fit.get("low"), "fitted_high": fit.get("high"),
            "theory": theories.get((target, layer, head))}
        row = {"target": target, "layer": layer, "head": head, "tolerance": TOLERANCE, "m_last": int(last["m"]),
               "error_at_m_last": float(last["statistic"]), "error_at_m_last_ci_low": float(last["ci_low"]),
               "error_at_m_last_ci_high": float(last["ci_high"]), "m_smallest": int(first["m"]),
               "error_at_m_smallest": float(first["statistic"]),
               "error_at_m_smallest_p_above_adjusted": float(first["p_above_adjusted"]),
               "m_reached_measured": min(below) if below else math.nan,
               "m_required_lower": lower, "m_required_fitted": fit.get("estimate", math.nan),
               "m_required_fitted_ci_low": fit.get("low", math.nan),
               "m_required_fitted_ci_high": fit.get("high", math.nan),
               "fit_m_max": fit.get("m_max", math.nan), "fit_floor": fit.get("floor_label", "not swept"),
               "m_required_theory": required["theory"] if required["theory"] is not None else math.nan,
               "n_sequences": int(last["n_sequences"]), "n_seeds": int(last["n_seeds"]),
               "assumption": RATE_ASSUMPTION}
        for species, count in SPECIES.items():
            row[f"class_{species}"], row[f"basis_{species}"] = _classify(required, count)
        rows.append(row)
    return pd.DataFrame(rows)


def heads_to_extend(required: pd.DataFrame, max_heads: int, m_large: Sequence[int]) -> list[tuple]:
    """Heads worth measuring at ``m_large`` when the budget allows only ``max_heads``: those whose class against
    one human astrocyte is still undetermined and whose largest measured m is below the largest of ``m_large``,
    nearest to reaching the tolerance first (smallest lower bound on m), so the measurements most likely to
    decide a class are made first. Heads already decided by measurement or bracket gain nothing from it."""
    if required.empty or max_heads <= 0:
        return []
    open_heads = required[(required["class_human"] == "undetermined") & (required["m_last"] < max(m_large))]
    open_heads = open_heads.sort_values(["m_required_lower", "target", "layer", "head"], kind="stable")
    return [tuple(row) for row in open_heads[HEAD_LABELS].head(max_heads).itertuples(index=False)]


def _fitted(fits: pd.DataFrame | None, circuit: str) -> dict:
    """{(target, layer, head): fitted m_required, CI and a floor only where the data say so}."""
    if fits is None or fits.empty or "m_required_10pct" not in fits:
        return {}
    keep = pd.Series(True, index=fits.index)
    if "circuit" in fits:
        keep &= fits["circuit"] == circuit
    if "status" in fits:
        keep &= fits["status"] == "ok"
    fits = fits[keep].copy()
    if fits.empty:
        return {}
    fits = adjust_p_values(fits, method=CORRECTION, alpha=FAMILY_ALPHA, p_col="floor_p_value")
    found = {}
    for _, row in fits.iterrows():
        floor = bool(row["reject"]) and float(row.get("e_inf_ci_low", math.nan)) > TOLERANCE
        estimate, low, high = (float(row[f"m_required_10pct{s}"]) for s in ("", "_ci_low", "_ci_high"))
        if not floor and math.isinf(estimate):
            estimate = low = high = math.nan  # an unreachable point estimate the data do not back: beyond m_max
        label = ("floor (Holm)" if floor else "beyond m_max" if math.isnan(estimate) or estimate > row["m_max"]
                 else "reached within m_max")
        found[(row["target"], row["layer"], row["head"])] = {
            "estimate": estimate, "low": low, "high": high, "m_max": float(row["m_max"]), "floor": floor,
            "floor_label": label}
    return found


__all__ = ["heads_to_extend", "nested_blocks", "measure_heads", "measured_table", "theory_constants", "summarise", "required_m_table",
           "SPECIES", "RATE_ASSUMPTION"]
