"""Fitting device models to sessions: ``fit_session(path) -> DeviceModel`` (each technology's fitter), with
validation on held-out devices in :mod:`devmodel.fit.validate`. Imported lazily, so the CLI and the
instrument code do not pay for lmfit until a fit runs."""

from __future__ import annotations

from typing import Any

__all__ = ["fit_session"]


def __getattr__(name: str) -> Any:
    if name == "fit_session":
        from devmodel.fit.session import fit_session

        return fit_session
    raise AttributeError(f"module 'devmodel.fit' has no attribute {name!r}")
