"""Declared constraints for configuration values, checked once at entry (docs/architecture.md).

As scikit-learn's parameter constraints, a configuration class states what each field may hold, as
data, and one check turns the first violation into a :class:`~devmodel.errors.ConfigError`: one
sentence naming the field, what it must be and what it was. Numbers must be finite (a NaN limit
makes every ``x > limit`` false, so it would disable the very check it configures).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from devmodel.errors import ConfigError


class Constraint:
    """What one value may be; ``problem`` is None when it fits."""

    def describe(self) -> str:
        raise NotImplementedError

    def fits(self, value: Any) -> bool:
        raise NotImplementedError


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Interval(Constraint):
    """A finite real (or, with ``integer``, an integral) number between ``lo`` and ``hi``; ``closed``
    says which ends belong: "both", "left", "right" or "neither"."""

    lo: float | None = None
    hi: float | None = None
    closed: str = "both"
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.lo is not None and self.hi is not None:
            return f"{kind} in {'[' if left else '('}{_fmt(self.lo)}, {_fmt(self.hi)}{']' if right else ')'}"
        if self.lo is not None:
            return f"{kind} {'≥' if left else '>'} {_fmt(self.lo)}"
        if self.hi is not None:
            return f"{kind} {'≤' if right else '<'} {_fmt(self.hi)}"
        return kind

    def fits(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.integer
                                                       else numbers.Real):
            return False
        try:
            v = float(value)
        except OverflowError:  # a 5000-digit integer is beyond any bound we declare
            return False
        if not math.isfinite(v):
            return False
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.lo is not None and (v < self.lo or (v == self.lo and not left)):
            return False
        return not (self.hi is not None and (v > self.hi or (v == self.hi and not right)))


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of the listed values."""

    values: tuple

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def fits(self, value: Any) -> bool:
        return value in self.values


@dataclass(frozen=True)
class OrNone(Constraint):
    """None, or what ``inner`` allows."""

    inner: Constraint

    def describe(self) -> str:
        return f"{self.inner.describe()} or None"

    def fits(self, value: Any) -> bool:
        return value is None or self.inner.fits(value)


@dataclass(frozen=True)
class Each(Constraint):
    """A sequence of ``min_len`` or more values, each allowed by ``inner``."""

    inner: Constraint
    min_len: int = 0

    def describe(self) -> str:
        return f"a list of {self.min_len} or more values, each {self.inner.describe()}"

    def fits(self, value: Any) -> bool:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            return False
        return len(value) >= self.min_len and all(self.inner.fits(v) for v in value)


@dataclass(frozen=True)
class Flag(Constraint):
    """True or False."""

    def describe(self) -> str:
        return "true or false"

    def fits(self, value: Any) -> bool:
        return isinstance(value, bool)


def check_values(values: Mapping[str, Any], constraints: Mapping[str, Constraint], where: str) -> None:
    """Raise a ConfigError for the first value that its constraint does not allow."""
    for name, constraint in constraints.items():
        if name not in values:
            continue
        value = values[name]
        if not constraint.fits(value):
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            raise ConfigError(f"{where}: {name} must be {constraint.describe()}, not {shown}")


class Constrained:
    """Mixin for configuration dataclasses: ``CONSTRAINTS`` (field → Constraint) checked by
    :meth:`check`, then the class's own rules between fields in :meth:`check_more`. As in
    scikit-learn, constructing only stores the values; the entry point that uses them (a procedure,
    a fit, a command) calls :meth:`check`."""

    CONSTRAINTS: ClassVar[dict[str, Constraint]] = {}
    WHERE: ClassVar[str] = "configuration"

    def check(self) -> None:
        check_values(vars(self), self.CONSTRAINTS, self.WHERE)
        self.check_more()

    def check_more(self) -> None:
        """Rules between fields (raise ConfigError); none by default."""
