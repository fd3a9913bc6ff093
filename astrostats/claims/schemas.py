"""What each claim reads, as pandera schemas checked before it judges.

A claim module declares ``SCHEMAS = {table-name suffix: TableSchema}``. A stored table whose name ends with the
suffix and that carries the schema's identifying columns is one the claim reads; it must then pass the schema
(the columns the rule reads, their types, p-values in [0, 1], counts >= 0, labels from the known set), or the
claim is INSUFFICIENT_DATA with pandera's account of what is wrong, never judged on a malformed table.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

NUMBER = "float64"  # every number is read as float (integers and missing values alike)


def probability(name: str) -> pa.Column:
    return pa.Column(NUMBER, pa.Check.in_range(0.0, 1.0), nullable=True, coerce=True, required=True, name=name)


def number(name: str, *, minimum: float | None = None) -> pa.Column:
    checks = [] if minimum is None else [pa.Check.ge(minimum)]
    return pa.Column(NUMBER, checks, nullable=True, coerce=True, name=name)


def label(name: str, allowed=None) -> pa.Column:
    checks = [] if allowed is None else [pa.Check.isin(list(allowed))]
    return pa.Column(object, checks, nullable=True, coerce=True, name=name)


@dataclass(frozen=True)
class TableSchema:
    """The columns that say a table is the claim's (``identifies``) and the schema it must then pass."""

    identifies: frozenset
    schema: pa.DataFrameSchema

    def applies_to(self, table: pd.DataFrame) -> bool:
        return self.identifies <= set(table.columns)


def table_schema(identifies, *columns: pa.Column) -> TableSchema:
    return TableSchema(frozenset(identifies), pa.DataFrameSchema({column.name: column for column in columns},
                                                                  strict=False))


def problems(schemas: dict, tables: dict) -> list[str]:
    """'table: what is wrong' for every table a claim reads that fails its schema ([] when all pass)."""
    found = []
    for suffix, declared in schemas.items():
        for name, table in tables.items():
            if not name.endswith(suffix) or table is None or not declared.applies_to(table):
                continue
            try:
                declared.schema.validate(table, lazy=True)
            except pa.errors.SchemaErrors as error:
                cases = error.failure_cases
                described = "; ".join(sorted({f"{row.column}: {row.check}" for row in cases.itertuples()})[:4])
                found.append(f"{name}: {described}")
            except pa.errors.SchemaError as error:
                found.append(f"{name}: {error}")
    return found


__all__ = ["TableSchema", "table_schema", "probability", "number", "label", "problems"]
