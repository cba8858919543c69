"""Typed, frozen configuration objects.

Every config is a frozen dataclass; :meth:`Config.from_mapping` builds one from a plain mapping (a JSON
file, CLI flags) and rejects unknown keys and values outside the allowed choices, naming them.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from .errors import ConfigError

Norm = Literal["inf", "2", "1"]
NORMS: tuple[str, ...] = ("inf", "2", "1")


def parse_norm(value: object) -> str:
    """Normalise a norm given as 'inf', 'linf', 'Linf', inf, 2, '2', 1, ... to one of NORMS."""
    s = str(value).strip().lower().lstrip("l")
    if s in ("inf", "infinity", "oo"):
        return "inf"
    if s in ("2", "2.0"):
        return "2"
    if s in ("1", "1.0"):
        return "1"
    raise ConfigError(f"unknown norm {value!r}; choose one of inf, 2, 1")


def dual_exponent(norm: str) -> float:
    """The dual norm's exponent q with 1/p + 1/q = 1 (inf <-> 1, 2 <-> 2)."""
    return {"inf": 1.0, "2": 2.0, "1": float("inf")}[parse_norm(norm)]


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: frozen dataclass with validated construction from mappings."""

    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __post_init__(self) -> None:
        for name, allowed in self.choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(
                    f"{type(self).__name__}.{name} = {value!r} is not one of {', '.join(map(str, allowed))}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, **overrides: Any):
        data = dict(mapping or {})
        data.update(overrides)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; "
                              f"known keys: {', '.join(sorted(fields))}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in data.items():
            hint = hints.get(k)
            if hint is not None and isinstance(getattr(cls, k, None), Config) is False:
                sub = _config_type(hint)
                if sub is not None and isinstance(v, Mapping):
                    v = sub.from_mapping(v)
            kwargs[k] = v
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


def _config_type(hint: Any) -> type[Config] | None:
    if isinstance(hint, type) and issubclass(hint, Config):
        return hint
    for arg in typing.get_args(hint):
        if isinstance(arg, type) and issubclass(arg, Config):
            return arg
    return None
