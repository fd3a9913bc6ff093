"""The circuit under audit, set for a whole run: every spec whose study audits a circuit gets the same one.

Studies read ``audited_circuit`` from their parameters (default: the paper's astrocyte circuit); the command
line's ``--circuit`` and :func:`astrostats.audit` set it on every such spec, so the spec hash records it. The
run's manifest names it (``audited_circuit``), and the claims read their rows by it.
"""
from __future__ import annotations

import dataclasses

from astrostats.circuits.registry import get_circuit
from astrostats.constants import DEFAULT_CIRCUIT
from astrostats.spec import Spec
from astrostats.studies import get_study
from astrostats.validation import InputError


def audits_a_circuit(spec: Spec) -> bool:
    """Whether the spec's study has a circuit under audit (scaling, real heads, overfitting, circuits)."""
    return "audited_circuit" in {field.name for field in dataclasses.fields(get_study(spec.kind).Parameters)}


def with_circuit(spec: Spec, circuit: str | None) -> Spec:
    """The spec with ``circuit`` under audit (checked now: an unknown name fails before any work); unchanged
    where ``circuit`` is None or the study audits no circuit."""
    if circuit is None or not audits_a_circuit(spec):
        return spec
    return dataclasses.replace(spec, parameters={**spec.parameters,
                                                 "audited_circuit": get_circuit(circuit, "--circuit").name})


def audited_circuit_record(specs: list[Spec]) -> dict:
    """What the manifest records: the run's one circuit under audit, its feature map and description. Specs that
    name different circuits cannot share one audit: an InputError says which."""
    names = {spec.name: spec.parameters.get("audited_circuit", DEFAULT_CIRCUIT) for spec in specs
             if audits_a_circuit(spec)}
    distinct = sorted(set(names.values())) or [DEFAULT_CIRCUIT]
    if len(distinct) > 1:
        raise InputError(f"audited_circuit: one circuit per run, got {names}; run them separately or set --circuit")
    circuit = get_circuit(distinct[0])
    return {"name": circuit.name, "feature_map": circuit.primary_feature_map, "description": circuit.description,
            "random_features": circuit.random_features}


__all__ = ["with_circuit", "audited_circuit_record", "audits_a_circuit"]
