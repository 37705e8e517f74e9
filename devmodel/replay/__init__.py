"""Offline replay of recorded sessions (docs/replay.md).

* :mod:`devmodel.replay.backend` — ``replay:session.h5``: the recorded reads, on the recorded clock,
  as a read-only device array;
* :mod:`devmodel.replay.emulator` — ``emulate:session.h5``: an empirical pulse-response model learned
  from the program-and-verify trace (:mod:`devmodel.replay.response`), as a device array;
* :mod:`devmodel.replay.procedures` — the drift schedule and bursts re-run exactly, program-and-verify
  on the emulator;
* the command ``devmodel replay`` lives in :mod:`devmodel.commands.replay`.
"""
