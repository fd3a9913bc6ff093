"""Analysis specs: one TOML file per question, resolved for a profile into a frozen, hashed Spec.

A spec file::

    name = "scaling"            # how the CLI names it
    kind = "scaling"            # which study runs it (astrostats.studies)
    question = "..."            # one sentence, printed in the report's methods
    seed = 0                    # base seed; every task derives its own from it

    [parameters]                # the exhaustive values (publication grade: hours, a Dask cluster)
    m = [8, 16, 32]

    [profiles.full]             # overrides sized so that every analysis at full runs in 30 min on 2 cores
    [profiles.quick]            # overrides for the default run
    [profiles.smoke]            # overrides for the tests (seconds)

Resolution: parameters, then the profile's overrides (the exhaustive profile has none), then the command line's
``--set key=value`` overrides (:func:`parse_override`, :meth:`Spec.with_overrides`), which win. The hash is over the
resolved spec (canonical JSON) and the ``--set`` overrides, so the manifest pins exactly what ran; the file's own
hash is kept beside it, because a pre-registered spec must be shown unchanged.

A user's spec file (any file that is not one of the shipped ``analyses/*.toml``) whose chosen profile replaces a
value its own ``[parameters]`` set is read with a warning naming the key: the profile's value is what runs, and
editing ``[parameters]`` alone would otherwise silently do nothing. A value equal to the one a shipped spec of the
same kind sets in its ``[parameters]`` counts as copied, not set, and is not warned about (a copy of
``scaling.toml`` with only ``m`` edited warns about ``m`` alone); nor is a key that ``--set`` replaces anyway.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import json
import logging
import math
import re
import numbers
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astrostats.safe_io import read_user_file
from astrostats.validation import (MAX_SEED, InputError, check_bool, check_choice, check_float, check_identifier,
                                   check_int, did_you_mean, fail)

LOG = logging.getLogger("astrostats.spec")

PROFILES = ("smoke", "quick", "full", "exhaustive")
MAX_SPEC_BYTES = 2**24  # a spec file larger than 16 MiB is refused unread
TOP_LEVEL_KEYS = {"name", "kind", "question", "seed", "parameters", "profiles", "preregistration", "amendments"}


def _analyses_dir() -> Path:
    """The specs: analyses/ beside the package in a source checkout (editable installs and worktrees read their
    own), else the copy the wheel ships as the package astrostats.analyses, found with importlib.resources."""
    checkout = Path(__file__).resolve().parent.parent / "analyses"
    if (checkout / "__init__.py").is_file():
        return checkout
    return Path(str(importlib.resources.files("astrostats.analyses")))


ANALYSES_DIR = _analyses_dir()


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str
    question: str
    seed: int
    profile: str
    parameters: dict = field(hash=False)
    preregistration: dict = field(hash=False, default_factory=dict)
    amendments: tuple = field(hash=False, default=())  # [[amendments]]: dated, hashed, the original kept
    source: str = ""
    file_sha256: str = ""
    overrides: dict = field(hash=False, default_factory=dict)  # --set key=value: applied after the profile

    @property
    def sha256(self) -> str:
        """Hash of the resolved spec: what actually ran (the --set overrides included)."""
        payload = {"name": self.name, "kind": self.kind, "seed": self.seed, "profile": self.profile,
                   "parameters": self.parameters, "preregistration": self.preregistration}
        if self.amendments:  # specs without amendments keep the hashes they always had
            payload["amendments"] = list(self.amendments)
        if self.overrides:  # as do specs run without --set
            payload["overrides"] = self.overrides
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def with_overrides(self, overrides: dict) -> "Spec":
        """The spec with ``overrides`` (key -> value, from --set) replacing its resolved parameters; they win over
        the file and the profile, and are kept (``overrides``) for the manifest and the hash."""
        if not overrides:
            return self
        return dataclasses.replace(self, parameters={**self.parameters, **overrides},
                                   overrides={**self.overrides, **overrides})

    def bind(self, parameter_class):
        """Build the study's frozen parameter dataclass; an unknown key is an error naming it."""
        known = {f.name for f in dataclasses.fields(parameter_class)}
        unknown = sorted(set(self.parameters) - known)
        if unknown:
            raise fail(f"{self.name}.parameters", f"keys among {sorted(known)}", unknown)
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in self.parameters.items()}
        hints = typing.get_type_hints(parameter_class)
        for key, value in values.items():
            check_typed(f"{self.name}.parameters.{key}", value, hints.get(key))
        try:
            return parameter_class(**values)
        except TypeError as error:
            raise InputError(f"{self.name}.parameters: {error}") from None

    def with_seed(self, seed: int | None) -> "Spec":
        return self if seed is None else dataclasses.replace(self, seed=seed)


def check_typed(name: str, value: Any, hint: Any) -> None:
    """A parameter against its annotation: bools are bools, integers integers, numbers finite, lists lists;
    so a spec's ``learning_rate = nan`` or ``causal = "false"`` fails when the spec is read, not hours later."""
    origin = typing.get_origin(hint)
    if hint is bool:
        check_bool(name, value)
    elif hint is int:
        check_int(name, value)
    elif hint is float:
        check_float(name, value)
    elif hint is str:
        if not isinstance(value, str):
            raise fail(name, "a string", value)
    elif origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                check_typed(name, value, option)
                return
            except InputError:
                continue
        raise fail(name, " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint)), value)
    elif hint is tuple or origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise fail(name, "a list", value)
        arguments = typing.get_args(hint)
        element = arguments[0] if len(arguments) == 2 and arguments[1] is Ellipsis else None
        for item in value:
            check_typed(name, item, element) if element is not None else _check_scalar(name, item)
    elif hint is None:
        _check_scalar(name, value) if not isinstance(value, (tuple, list)) else None


def _check_scalar(name: str, value: Any) -> None:
    """An untyped list entry: a string, a bool, or a finite number."""
    if isinstance(value, (str, bool)):
        return
    if not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise fail(name, "strings or finite numbers", value)


def load_spec(path: str | Path, profile: str = "quick", *, replaced: frozenset | set | tuple = ()) -> Spec:
    """Read and resolve a spec file; any defect is an InputError that names the file and the key.

    A user's spec whose profile replaces a value its ``[parameters]`` set is read with a warning naming the key
    (module docstring); ``replaced``: keys (``key`` or ``name.key``) that --set replaces anyway, not warned about."""
    check_choice("profile", profile, PROFILES)
    path = Path(path)
    try:
        raw_bytes = read_user_file(path, limit=MAX_SPEC_BYTES, what="spec")  # a FIFO or device: refused, not read
        raw = tomllib.loads(raw_bytes.decode())
    except FileNotFoundError:
        raise fail("spec", "an existing spec file", str(path)) from None
    except IsADirectoryError:
        raise fail("spec", "a spec file, not a folder", str(path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"spec {path}: malformed TOML ({error})") from None
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise fail(f"spec {path.name}", f"top-level keys among {sorted(TOP_LEVEL_KEYS)}", unknown)
    for key in ("name", "kind"):  # both become parts of file names and table names: safe identifiers only
        check_identifier(f"spec {path.name}: {key}", raw.get(key))
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise fail(f"spec {path.name}: seed", f"an integer in [0, {MAX_SEED}]", seed)
    for key in ("parameters", "preregistration"):
        if not isinstance(raw.get(key, {}), dict):
            raise fail(f"spec {path.name}: {key}", "a table ([" + key + "])", raw.get(key))
    parameters = dict(raw.get("parameters", {}))
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict) or set(profiles) - set(PROFILES):
        raise fail(f"spec {path.name}: profiles", f"tables among {list(PROFILES)}", profiles)
    for name, overrides in profiles.items():
        if not isinstance(overrides, dict):
            raise fail(f"spec {path.name}: profiles.{name}", "a table of parameter overrides", overrides)
    _warn_profile_replaces(path, raw, profile, replaced)
    parameters.update(profiles.get(profile, {}))
    if not parameters:  # no value set at all (tables absent or empty): the study's exhaustive defaults would run
        raise fail(f"spec {path.name}", f"a non-empty [parameters] table or [profiles.{profile}] table (without "
                                        "values, the study's exhaustive defaults would run: hours)",
                   {key: raw[key] for key in ("parameters", "profiles") if key in raw} or sorted(raw))
    amendments = raw.get("amendments", [])
    if not isinstance(amendments, list) or not all(isinstance(item, dict) for item in amendments):
        raise fail(f"spec {path.name}: amendments", "an array of tables ([[amendments]])", amendments)
    return Spec(name=raw["name"], kind=raw["kind"], question=str(raw.get("question", "")), seed=seed,
                profile=profile, parameters=parameters, preregistration=dict(raw.get("preregistration", {})),
                amendments=tuple(dict(item) for item in amendments),
                source=str(path), file_sha256=hashlib.sha256(raw_bytes).hexdigest())


def _is_shipped(path: Path) -> bool:
    """Whether ``path`` is one of the shipped analyses/*.toml (links resolved), not a user's copy."""
    try:
        return path.resolve().parent == ANALYSES_DIR.resolve() and path.suffix == ".toml"
    except (OSError, RuntimeError):
        return False


@functools.lru_cache(maxsize=None)
def _shipped_parameters(kind: str) -> tuple:
    """The [parameters] tables of the shipped specs of ``kind`` (what a copy starts from)."""
    tables = []
    for path in available_specs().values():
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if raw.get("kind") == kind and isinstance(raw.get("parameters"), dict):
            tables.append(raw["parameters"])
    return tuple(tables)


def _warn_profile_replaces(path: Path, raw: dict, profile: str, replaced) -> None:
    """Warn (logging) for each key of a user's spec whose [parameters] value the chosen profile replaces; see the
    module docstring for which values count as the user's."""
    chosen, own = raw.get("profiles", {}).get(profile, {}), raw.get("parameters", {})
    if not chosen or not own or _is_shipped(path):
        return
    copied = _shipped_parameters(str(raw.get("kind")))
    for key in sorted(set(chosen) & set(own)):
        if own[key] == chosen[key] or key in replaced or f"{raw.get('name')}.{key}" in replaced:
            continue
        if any(key in table and table[key] == own[key] for table in copied):
            continue  # the shipped spec's own value, copied with the file: not one the user set
        hint = "use --profile exhaustive or" if profile != "exhaustive" and "exhaustive" not in raw["profiles"] \
            else "use"
        LOG.warning("%s: [profiles.%s] overrides %s set in [parameters] (%s runs, not %s); %s --set %s=... to run "
                    "your value", path.name, profile, key, _short_value(chosen[key]), _short_value(own[key]), hint,
                    key)


def _short_value(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


OVERRIDE = re.compile(r"\A(?:(?P<scope>[A-Za-z][A-Za-z0-9_-]{0,63})\.)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)\Z",
                      re.DOTALL)
BARE_WORD = re.compile(r"\A[A-Za-z_][A-Za-z0-9_./:-]*\Z")


def parse_override(text: str) -> tuple[str | None, str, Any]:
    """One ``--set`` argument, ``key=value`` or ``analysis.key=value``: (analysis or None, key, value), the value
    read as TOML (``[8, 16, 32]``, ``4``, ``0.5``, ``true``, ``"text"``); a bare word that is not TOML
    (``--set audited_circuit=performer``) is read as that string. InputError for anything else."""
    match = OVERRIDE.match(text) if isinstance(text, str) else None
    if match is None:
        raise fail("--set", "KEY=VALUE or ANALYSIS.KEY=VALUE (the value as TOML, e.g. m=[8,16,32] or n_seeds=4)",
                   text)
    scope, key, value_text = match.group("scope"), match.group("key"), match.group("value").strip()
    try:
        value = tomllib.loads(f"value = {value_text}")["value"]
    except tomllib.TOMLDecodeError as error:
        if not BARE_WORD.fullmatch(value_text):
            raise InputError(f"--set {match.group(0).split('=')[0]}: {value_text!r} is not a TOML value ({error}); "
                             "write lists as [8,16,32], strings in quotes") from None
        value = value_text
    return scope, key, value


def available_specs(directory: Path = ANALYSES_DIR) -> dict[str, Path]:
    """Spec name -> file, for every analyses/*.toml."""
    return {path.stem: path for path in sorted(directory.glob("*.toml"))}


def resolve_spec_argument(argument: str, profile: str, directory: Path = ANALYSES_DIR, *,
                          replaced: frozenset | set | tuple = ()) -> Spec:
    """An analysis name from analyses/, or a path to a user's spec file; an unknown name is an InputError that
    suggests the closest analysis names."""
    specs = available_specs(directory)
    if argument in specs:
        return load_spec(specs[argument], profile, replaced=replaced)
    if argument.endswith(".toml") or Path(argument).exists():
        return load_spec(argument, profile, replaced=replaced)
    raise InputError(str(fail("analysis", f"one of {sorted(specs)} or a path to a .toml spec", argument))
                     + did_you_mean(argument, specs))
