"""The numbers of every claim's rule, read from the pre-registered rules.toml beside this module (one source for
the claims and the studies that compute their tables), with the file's SHA-256 for the audit's record."""
from __future__ import annotations

import hashlib
import importlib.resources
import tomllib
from functools import cache

RULES_FILE = "rules.toml"


@cache
def _raw() -> bytes:
    return importlib.resources.files("astrostats.claims").joinpath(RULES_FILE).read_bytes()


def rules_sha256() -> str:
    """SHA-256 of rules.toml: which pre-registered numbers judged a run."""
    return hashlib.sha256(_raw()).hexdigest()


@cache
def _all() -> dict:
    return tomllib.loads(_raw().decode())


def thresholds(claim_id: str) -> dict:
    """The rule's numbers of one claim (a copy: a caller cannot change what another reads)."""
    return dict(_all()[claim_id])


__all__ = ["thresholds", "rules_sha256", "RULES_FILE"]
