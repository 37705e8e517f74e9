"""``fit_session(path) -> DeviceModel``: the fitting entry point (``devmodel fit``).

The session's technology's ``fit`` part does the fit (``OPTIONS`` and ``fit(data, options)``); what
is shared lives here: screening and hold-out, device-resampled bootstrap intervals, provenance.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from devmodel import __version__
from devmodel.errors import ConfigError, DevmodelError
from devmodel.fit.data import FitData, prepare
from devmodel.model.card import DeviceModel, created_utc
from devmodel.store.reader import Session, read_session
from devmodel.store.schema import sha256_of
from devmodel.technologies import technology
from devmodel.validation import Interval, check_values

#: How devices are held out: at random (``fraction``, ``seed``), or by chip address parity (odd
#: addresses held out: a split that keeps neighbouring cells apart from each other's fit).
HOLDOUT_SPLITS = ("random", "parity")


def holdout_split(n_devices: int, fraction: float, seed: int, split: str = "random",
                  address: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of held-out devices (deterministic in ``seed``; ``parity``: odd ``address``)."""
    if split == "parity":
        if address is None:
            raise ConfigError("a parity hold-out needs the devices' addresses")
        return np.asarray(address) % 2 == 1
    if split != "random":
        raise ConfigError(f"unknown hold-out split {split!r}; one of: {', '.join(HOLDOUT_SPLITS)}")
    rng = np.random.default_rng(seed)
    return rng.random(n_devices) < fraction


def session_holdout(session: Session, holdout: dict) -> np.ndarray:
    """The held-out mask a card's recorded ``provenance.holdout`` names, on ``session``."""
    split = holdout.get("split", "random")
    if split == "random" and not holdout.get("fraction", 0) > 0:
        return np.zeros(session.n_devices, bool)
    return holdout_split(session.n_devices, holdout.get("fraction", 0.0), holdout.get("seed", 0),
                         split, session.devices.get("address"))


def fit_options(technology_name: str, options: Any = None) -> Any:
    """The technology's fit options: ``options`` itself, or its defaults with the fields of a dict
    (``{"prog_degree": 3}``) replaced; unknown fields refused with one sentence."""
    part = technology(technology_name).part("fit")
    if isinstance(options, part.OPTIONS):
        opts = options
    else:
        given = dict(options or {})
        known = {f.name for f in fields(part.OPTIONS)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"the {technology_name} fit has no option {unknown[0]!r}; its options: "
                              f"{', '.join(sorted(known))}")
        opts = part.OPTIONS(**given)
    opts.check()
    return opts


def check_card_matches(card: DeviceModel, session: Session) -> None:
    """A card describes one technology: comparing it with a session of another is refused in one
    sentence (its fit options, units and model forms do not apply)."""
    if card.technology != session.technology:
        raise DevmodelError(f"the card describes {card.technology} devices but {session.path} "
                            f"holds {session.technology} devices; compare a card with a session of its "
                            "own technology")


def screened(session: Session, options: Any = None) -> FitData:
    """The session's fit data, screened as the technology's fit options say (outliers at t0)."""
    opts = fit_options(session.technology, options)
    return prepare(session, getattr(opts, "outlier_sigma", 6.0))


def _guarded_fit(session: Session, data: FitData, opts: Any) -> DeviceModel:
    """The technology's fit on ``data`` (see :func:`guarded_fit_call`)."""
    part = technology(session.technology).part("fit")
    return guarded_fit_call(session.path, session.technology, lambda: part.fit(data, opts))


def guarded_fit_call(path: Path, technology_name: str, fit) -> DeviceModel:
    """``fit()``; an optimiser meeting non-finite numbers (data a model cannot describe, e.g. too
    few usable reads at some level) is one sentence, not lmfit's traceback."""
    try:
        return fit()
    except ValueError as e:
        if "nan" not in str(e).lower():
            raise
        raise DevmodelError(f"{path}: the {technology_name} fit met non-finite values "
                            "(too few usable reads at some level or age?); devmodel info shows what "
                            "the session holds") from None


def _fit(session: Session, options: Any = None) -> DeviceModel:
    return _guarded_fit(session, screened(session, options), fit_options(session.technology, options))


def fit_session(
    path: str | Path | Session,
    options: Any = None,
    holdout_fraction: float = 0.0,
    holdout_seed: int = 0,
    bootstrap: int = 0,
    progress=None,
    holdout: str = "random",
) -> DeviceModel:
    """Fit a device model to a session file with its technology's fitter; ``options`` is that fitter's
    options object or a dict of its fields. ``holdout_fraction`` of the devices (chosen by
    ``holdout_seed``; ``holdout="parity"``: the devices at odd addresses) are left out of the fit
    and recorded in the card for ``validate``;
    ``bootstrap`` > 0 adds percentile intervals from that many device-resampled refits.
    ``progress(phase, done, total)`` hears of each phase (reading, the fit, each bootstrap refit)."""
    step = progress or (lambda phase, done, total: None)
    check_values({"holdout_fraction": holdout_fraction, "holdout_seed": holdout_seed,
                  "bootstrap": bootstrap},
                 {"holdout_fraction": Interval(0.0, 1.0, "left"),
                  "holdout_seed": Interval(0, 2**63 - 1, integer=True),
                  "bootstrap": Interval(0, 100_000, integer=True)}, "fit")
    step("reading session", 0, 1)
    session = path if isinstance(path, Session) else read_session(path, with_trace=False)
    step(f"fitting {session.technology}", 0, 1)
    opts = fit_options(session.technology, options)
    data = screened(session, opts)
    record = {"fraction": holdout_fraction, "seed": holdout_seed, "split": holdout}
    if holdout == "parity":
        record["fraction"] = 0.5
    held = session_holdout(session, record)
    if held.any():
        data.use &= ~held
        data.excluded["held_out"] = int(held.sum())
    card = _guarded_fit(session, data, opts)
    # every fit says what it left out, by reason (reads the fitters' ages do not take included)
    card.fit_quality["excluded_devices"] = data.excluded
    card.fit_quality.setdefault("excluded_reads", data.losses(data.schedule_ages()))
    if bootstrap > 0:
        base = _subset(session, ~held) if held.any() else session
        card.fit_quality["bootstrap"] = {
            "n": bootstrap, "method": "devices resampled with replacement within each level",
            "intervals_95": bootstrap_intervals(base, card, bootstrap, holdout_seed, opts,
                                                lambda i, n: step("bootstrap refits", i, n))}
    card.provenance = {
        "source": str(session.path),
        "source_sha256": sha256_of(session.path),
        "source_status": session.status,
        "technology": session.technology,
        "n_devices": int(data.n_devices),
        "n_devices_used": int(data.use.sum()),
        "n_reads": int(session.reads["g_us"].size),
        "age_range_s": [float(np.min(data.age_s)), float(np.max(data.age_s))],
        "holdout": record | {"n_held_out": int(held.sum())},
        "toolkit_version": __version__,
        "created_utc": created_utc(),
    }
    return card


def _subset(session: Session, keep: np.ndarray) -> Session:
    """The session restricted to the devices in ``keep`` (rows renumbered)."""
    new_row = np.cumsum(keep) - 1
    r = session.reads
    sel = keep[r["device"]]
    reads = {k: v[sel] for k, v in r.items()}
    reads["device"] = new_row[reads["device"]]
    return replace(session, devices={k: v[keep] for k, v in session.devices.items()}, reads=reads,
                   ground_truth=None, trace={})


def resample_devices(session: Session, rng: np.random.Generator) -> Session:
    """A copy of ``session`` whose devices are drawn with replacement within each level (reads,
    bursts and ground truth follow their device): one bootstrap replicate."""
    d = session.devices
    level = np.asarray(d["level"])
    target = d["target_us"]
    rows = np.concatenate([rng.choice(np.flatnonzero(level == j), np.sum(level == j))
                           for j in np.unique(level)])
    r = session.reads
    # every read of an old device is copied once per copy of the device
    counts = np.bincount(rows, minlength=target.size)
    rep = counts[r["device"]]
    reads = {k: np.repeat(v, rep) for k, v in r.items()}
    order_old = np.argsort(rows, kind="stable")
    first_new = np.concatenate([[0], np.cumsum(counts)])[:-1]
    k = np.arange(rep.sum()) - np.repeat(np.cumsum(rep) - rep, rep)  # copy index of each read
    reads["device"] = order_old[first_new[reads["device"]] + k]
    burst = reads["burst"]
    has = burst >= 0
    # a copied burst becomes a new burst: id = old id × copies + copy index
    reads["burst"] = np.where(has, burst.astype(np.int64) * int(counts.max()) + k, -1)
    devices = {key: v[rows] for key, v in d.items()}
    return replace(session, devices=devices, reads=reads, bursts={}, trace={}, ground_truth=None)


def bootstrap_intervals(session: Session, card: DeviceModel, n: int, seed: int = 0, options: Any = None,
                        progress=None) -> dict[str, list[float]]:
    """2.5/97.5 % percentile intervals of the card's scalar parameters over ``n`` device-resampled
    refits."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for i in range(n):
        c = _fit(resample_devices(session, rng), options)
        for k, v in c.scalars().items():
            samples.setdefault(k, []).append(v)
        if progress:
            progress(i + 1, n)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
            for k, v in samples.items() if len(v) == n}


def card_scalars(card: DeviceModel) -> dict[str, float]:
    """The card's fitted numbers by dotted name (programming.c0, drift.nu_mean.a, …)."""
    return card.scalars()
