"""``fit_session(path) -> DeviceModel``: the fitting entry point (``devmodel fit``)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from devmodel import __version__
from devmodel.fit.data import prepare
from devmodel.fit.pcm import PcmFitOptions, fit_pcm
from devmodel.fit.reram import ReramFitOptions, fit_reram
from devmodel.model.card import DeviceModel, created_utc
from devmodel.store.session import Session, read_session


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def holdout_split(n_devices: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out devices (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    return rng.random(n_devices) < fraction


def fit_session(
    path: str | Path | Session,
    pcm: PcmFitOptions | None = None,
    reram: ReramFitOptions | None = None,
    holdout_fraction: float = 0.0,
    holdout_seed: int = 0,
    bootstrap: int = 0,
    progress=None,
) -> DeviceModel:
    """Fit a device model to a session file; ``holdout_fraction`` of the devices (chosen by
    ``holdout_seed``) are left out of the fit and recorded in the card for ``validate``;
    ``bootstrap`` > 0 adds percentile intervals from that many device-resampled refits."""
    session = path if isinstance(path, Session) else read_session(path, with_trace=False)
    data = prepare(session)
    held = np.zeros(data.n_devices, bool)
    if holdout_fraction > 0:
        held = holdout_split(data.n_devices, holdout_fraction, holdout_seed)
        data.use &= ~held
        data.excluded["held_out"] = int(held.sum())
    if session.technology == "pcm":
        card = fit_pcm(data, pcm)
    else:
        card = fit_reram(data, reram)
    if bootstrap > 0:
        base = session
        if held.any():
            keep = ~held
            base = _subset(session, keep)
        card.fit_quality["bootstrap"] = {
            "n": bootstrap, "method": "devices resampled with replacement within each level",
            "intervals_95": bootstrap_intervals(base, card, bootstrap, holdout_seed, pcm, reram,
                                                progress)}
    card.provenance = {
        "source": str(session.path),
        "source_sha256": sha256_of(session.path),
        "source_status": session.status,
        "technology": session.technology,
        "n_devices": int(data.n_devices),
        "n_devices_used": int(data.use.sum()),
        "n_reads": int(session.reads["g_us"].size),
        "age_range_s": [float(np.min(data.age_s)), float(np.max(data.age_s))],
        "holdout": {"fraction": holdout_fraction, "seed": holdout_seed,
                    "n_held_out": int(held.sum())},
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
    target = d["target_us"]
    rows = np.concatenate([rng.choice(np.flatnonzero(target == t), np.sum(target == t))
                           for t in np.unique(target)])
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


def bootstrap_intervals(session: Session, card: DeviceModel, n: int, seed: int = 0,
                        pcm: PcmFitOptions | None = None, reram: ReramFitOptions | None = None,
                        progress=None) -> dict[str, list[float]]:
    """2.5/97.5 % percentile intervals of the card's scalar parameters over ``n`` device-resampled
    refits."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for i in range(n):
        data = prepare(resample_devices(session, rng))
        c = fit_pcm(data, pcm) if session.technology == "pcm" else fit_reram(data, reram)
        for k, v in card_scalars(c).items():
            samples.setdefault(k, []).append(v)
        if progress:
            progress(i + 1, n)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
            for k, v in samples.items() if len(v) == n}


def card_scalars(card: DeviceModel) -> dict[str, float]:
    """The card's fitted numbers by dotted name (programming.c0, drift.nu_mean.a, …)."""
    out: dict[str, float] = {}
    if card.programming:
        for i, c in enumerate(card.programming.poly_coeffs_us):
            out[f"programming.c{i}"] = c
        if card.programming.verify_age_s:
            out["programming.verify_age_s"] = card.programming.verify_age_s
    if card.drift:
        for name in ("nu_mean", "nu_std"):
            f = getattr(card.drift, name)
            for k in ("a", "b", "lo", "hi"):
                if k not in f.fixed:
                    out[f"drift.{name}.{k}"] = getattr(f, k)
    if card.read_noise:
        rn = card.read_noise
        out |= {"read_noise.q_s_amp": rn.q_s_amp, "read_noise.q_s_exp": rn.q_s_exp,
                "read_noise.white_noise_us": rn.white_noise_us}
    for s in card.snapshots:
        for i, c in enumerate(s.poly_coeffs_us):
            out[f"snapshot.{s.t_s:g}.c{i}"] = c
        out[f"snapshot.{s.t_s:g}.mean_shift_us"] = s.mean_shift_us
    if card.read_noise_us is not None:
        out["read_noise_us"] = card.read_noise_us
    return out
