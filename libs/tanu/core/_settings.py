"""How a configuration dataclass is declared and read: ``setting`` names a
field's environment variable and one-line doc, ``from_env`` builds the
dataclass (and its nested dataclass fields) from an environment mapping, and
``describe`` lists every variable for docs and ``--help``."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def setting(env: str, default: Any, doc: str) -> Any:
    """A config field read from ``env``, with ``default`` and a one-line doc."""
    return field(default=default, metadata={"env": env, "doc": doc})


def _convert(name: str, raw: str, typ: Any) -> Any:
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected true/false")
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        return raw
    except ValueError as exc:
        raise ValueError(
            f"{name}={raw!r} is not a valid {getattr(typ, '__name__', typ)}: {exc}"
        ) from None


def from_env(cls: type[T], env: Mapping[str, str]) -> T:
    """Builds ``cls`` from ``env``: unset variables keep their defaults."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = from_env(typ, env)  # type: ignore[arg-type]
            continue
        var = f.metadata.get("env")
        if var and var in env:
            kwargs[f.name] = _convert(var, env[var], typ)
    return cls(**kwargs)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, doc) for every setting of ``cls``, for docs and --help."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            rows.extend(describe(typ))  # type: ignore[arg-type]
        elif "env" in f.metadata:
            rows.append((f.metadata["env"], repr(f.default), f.metadata["doc"]))
    return rows
