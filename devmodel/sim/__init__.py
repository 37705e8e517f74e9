"""Analog inference on a characterised chip: tiled crossbar layers driven by a fitted device model.

``convert(net, card, config)`` → :class:`~devmodel.sim.analog.AnalogNet`; see ``devmodel evaluate``.
"""

from devmodel.sim.analog import AnalogNet, accuracy, convert, evaluate_over_time
from devmodel.sim.config import CrossbarConfig

__all__ = ["AnalogNet", "CrossbarConfig", "accuracy", "convert", "evaluate_over_time"]
