"""Hardware in the loop (seed 001's central experiment; docs/deployment.md): program a trained
network's weights onto a chip as differential conductance pairs with the technology's
program-and-verify, read every programmed device back on a drift schedule, and compare the accuracy
of the measured conductances with what a model card predicts.

* :mod:`devmodel.deploy.mapping` — weights → conductance targets and device addresses, layer by
  layer, exactly as ``evaluate`` maps them (differential pairs, per-column scales, g_max of the chip);
* :mod:`devmodel.deploy.session` — the deployment as a crash-safe, resumable session on any chip
  (``devmodel deploy``);
* :mod:`devmodel.deploy.measured` — a deployment file read back: accuracy from the measured
  conductances at each read time, the card's prediction beside it, per-layer weight errors
  (``devmodel evaluate --deployment``).

Layer: above ``train`` (it uses the analog layers of ``sim`` and the procedures), below ``report``
and ``commands`` (docs/architecture.md).
"""
