"""ReRAM program-and-verify: the NeuRRAM chip's alternating SET/RESET write-verify with stepped
voltages (docs/physics.md, "ReRAM"), the shared :class:`~devmodel.procedures.program_verify.StepVerify`
loop with this technology's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from devmodel.procedures.program_verify import StepVerify, StepVerifyConfig


@dataclass(frozen=True)
class ReramVerifyConfig(StepVerifyConfig):
    """NeuRRAM-style write-verify: ±0.4 µS, 5 reads (first discarded), SET 0.8 → 2.0 V and RESET
    0.7 → 2.5 V in 0.1 V steps, compliance 0.45 µA per µS of target (1–100 µA), 100 iterations."""


#: The technology's part interface (devmodel.technologies).
CONFIG = ReramVerifyConfig
RUN = StepVerify
