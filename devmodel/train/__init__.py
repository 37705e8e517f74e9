"""Hardware-aware training with the five seeds' methods, driven by fitted device models.

``train_hwa``, ``evaluate_hwa`` and the options classes are imported lazily (they need torch);
:data:`METHODS` (devmodel.train.registry) lists the methods without it.
"""

from __future__ import annotations

from typing import Any

from devmodel.train.registry import METHODS

__all__ = ["METHODS", "HWAResult", "MethodOptions", "TrainOptions", "evaluate_hwa", "method_options",
           "train_hwa"]

_LAZY = {"HWAResult": "hwa", "evaluate_hwa": "hwa", "train_hwa": "hwa", "MethodOptions": "methods",
         "TrainOptions": "methods", "method_options": "methods"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"devmodel.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'devmodel.train' has no attribute {name!r}")
