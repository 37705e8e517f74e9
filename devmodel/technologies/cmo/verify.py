"""CMO/HfOx program-and-verify: the shared stepped-voltage write-verify
(:class:`~devmodel.procedures.program_verify.StepVerify`) with an acceptance range relative to the
target, as the published model was measured with (2 % or 0.2 % of G_T; docs/physics.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from devmodel.procedures.program_verify import StepVerify, StepVerifyConfig
from devmodel.validation import Interval


@dataclass(frozen=True)
class CmoVerifyConfig(StepVerifyConfig):
    """Accept |G − G_T| ≤ max(acceptance·G_T, tolerance_us); fine voltage steps from below the
    thresholds (the cells move gradually and without compliance); no verify delay."""

    acceptance: float = 0.02
    tolerance_us: float = 0.1  # the floor of the window, for the lowest targets
    max_iterations: int = 150
    max_pulses_per_device: int = 200
    init_reset_v: float = 2.2
    set_start_v: float = 0.85
    set_max_v: float = 1.8
    reset_start_v: float = 0.85
    reset_max_v: float = 1.8
    step_v: float = 0.02
    compliance_ua_per_us: float = 0.0
    compliance_min_ua: float = 400.0  # CMO cells need none: the chip's own limit, never reached
    compliance_max_ua: float = 400.0

    CONSTRAINTS: ClassVar[dict] = StepVerifyConfig.CONSTRAINTS | {"acceptance": Interval(0.0, 0.5)}

    def tolerance_for(self, targets_us: np.ndarray) -> np.ndarray:
        return np.maximum(self.acceptance * np.asarray(targets_us, dtype=float), self.tolerance_us)


#: The technology's part interface (devmodel.technologies).
CONFIG = CmoVerifyConfig
RUN = StepVerify
