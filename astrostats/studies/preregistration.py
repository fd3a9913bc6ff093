"""Pre-registrations and their declared amendments, shared by the studies whose claims were registered before
their first run (overfitting for C3, circuits for C7): the hash that pins a registration, and the latest
amendment, complete and pinned to the original's hash (so an edited original is refused)."""
from __future__ import annotations

import hashlib
import json

from astrostats.spec import Spec
from astrostats.validation import fail


def preregistration_hash(registered: dict) -> str:
    """SHA-256 of a registration table (canonical JSON): the original's, or an amendment's."""
    return hashlib.sha256(json.dumps(registered, sort_keys=True, default=str).encode()).hexdigest()


def latest_amendment(spec: Spec, registered: dict, keys) -> dict | None:
    """The spec's latest [[amendments]] entry with every one of ``keys``, pinned to the hash of ``registered``;
    None when the spec has none; an InputError naming what is missing or changed."""
    if not spec.amendments:
        return None
    amendment = dict(spec.amendments[-1])
    absent = [key for key in keys if key not in amendment]
    if absent:
        raise fail(f"{spec.name}.amendments", f"keys {list(keys)}", f"missing {absent}")
    if amendment["amends_sha256"] != preregistration_hash(registered):
        raise fail(f"{spec.name}.amendments.amends_sha256", f"the hash of [preregistration], "
                   f"{preregistration_hash(registered)} (the original may not change)", amendment["amends_sha256"])
    return amendment


__all__ = ["preregistration_hash", "latest_amendment"]
