"""The handful of evidence rows a reader needs, chosen the same way for every claim: per cited statistic, all
rows when there are few, otherwise the lowest and the highest value (the two ends the rule's thresholds are
checked against) and a count, with the pandas query that selects the rest. audit.md and the report's tables
use this; audit.json keeps every row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SHOW_ALL_UP_TO = 3  # a statistic cited this many times or fewer is shown in full
MAX_ROWS = 6  # per claim


@dataclass(frozen=True)
class Decisive:
    """The rows shown for one claim and, per table, what was left out and how to get it."""

    shown: tuple  # (role, Evidence)
    left_out: tuple  # (count left out, table, query selecting them, statistic, count cited)


def common_query(queries: list[str]) -> str:
    """The conjuncts every query shares ('a == 1 and b == 2' and 'a == 1 and b == 3' give 'a == 1'): a query
    that selects all the rows of a group (and possibly a few more); '' when none are shared (the whole table)."""
    parts = [[part.strip() for part in query.split(" and ")] for query in queries]
    shared = [part for part in parts[0] if all(part in other for other in parts[1:])] if parts else []
    return " and ".join(shared)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """'1 row', '2 rows': a count with its noun in the right number."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def _value(item) -> float:
    try:
        value = float(item.value)
    except (TypeError, ValueError):
        return math.nan
    return value


def choose(evidence, max_rows: int = MAX_ROWS) -> Decisive:
    """Group by (table, statistic) in citation order; keep small groups whole, else the lowest and highest."""
    groups: dict[tuple, list] = {}
    for item in evidence:
        groups.setdefault((item.table, item.statistic), []).append(item)
    shown, left_out = [], []
    for (table, statistic), items in groups.items():
        if len(items) <= SHOW_ALL_UP_TO:
            picked = [("", item) for item in items]
        else:
            finite = [item for item in items if math.isfinite(_value(item))] or items
            low, high = min(finite, key=_value), max(finite, key=_value)
            picked = [("lowest", low)] + ([("highest", high)] if high is not low else [])
        room = max_rows - len(shown)
        kept = picked[:max(room, 0)]
        shown += kept
        rest = len(items) - len(kept)
        if rest > 0:
            left_out.append((rest, table, common_query([item.rows for item in items]), statistic, len(items)))
    return Decisive(tuple(shown), tuple(left_out))


def left_out_lines(chosen: Decisive, named: int = 1) -> list[str]:
    """What a claim's shown rows leave out: the first ``named`` groups with the rows that select them, the rest
    counted in one line (every row is in audit.json)."""
    lines = [more_line(*left) for left in chosen.left_out[:named]]
    if len(chosen.left_out) > named:
        rows = sum(left[0] for left in chosen.left_out[named:])
        lines.append(f"{plural(rows, 'more row')} citing {plural(len(chosen.left_out) - named, 'other statistic')}, "
                     "in audit.json")
    return lines


def more_line(count: int, table: str, query: str, statistic: str, total: int) -> str:
    where = f"the rows of `{query}` in table `{table}`" if query else f"table `{table}`"
    return f"{plural(count, 'more row')} of the {total} citing {statistic}: {where} (every one in audit.json)"
