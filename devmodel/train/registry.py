"""The hardware-aware training methods by name (``train-hwa --method``; docs/hwa-training.md).

A method is a :class:`devmodel.train.methods.Method` subclass with its own options class; it is
registered here by name, as a ``"module:Class"`` string, so listing the methods imports no torch.
"""

from __future__ import annotations

from devmodel.registry import Registry

METHODS: Registry = Registry("training method")
METHODS.register("noise-001", "devmodel.train.methods:NoiseInjection001")
METHODS.register("device-000", "devmodel.train.methods:DeviceShaped000")
METHODS.register("hasgd-002", "devmodel.train.methods:HASGD002")
METHODS.register("tile-003", "devmodel.train.methods:TileAware003")
METHODS.register("fluct-004", "devmodel.train.methods:Fluctuation004")
