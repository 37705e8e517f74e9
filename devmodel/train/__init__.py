"""Hardware-aware training with the five seeds' methods, driven by fitted device models."""

from devmodel.train.hwa import HWAResult, evaluate_hwa, train_hwa
from devmodel.train.methods import METHODS, HWAOptions

__all__ = ["METHODS", "HWAOptions", "HWAResult", "evaluate_hwa", "train_hwa"]
