"""1/f (flicker) noise as a process in time, for millions of devices at once.

docs/physics.md: a bank of Ornstein–Uhlenbeck processes with log-spaced rates λ_k, each carrying variance
v = Q_s²·Δln λ, has a spectrum S ∝ Q_s²/f between its slowest and fastest rate. Started at zero at
the end of programming (the melt-quench erases history), component k has variance
v·(1 − e^{−2λ_k·age}), the sum ≈ ln(age / (2 t_read)) (the accumulation formula of the published
model), and the variogram of a burst grows as 2·Q_s²·ln τ. The bank is returned in units of Q_s (the
caller multiplies by each device's Q_s).

Cost per read does not grow with the decades the bank spans. At a read Δt after the previous one:

* components with λ·Δt ≥ ``renew`` have forgotten their past: they form the device's *lump*, drawn
  as one Gaussian (its members independent with known variances v·(1 − e^{−2λ·age}));
* a band of ``per_decade·log10(renew/freeze) + 2`` components just slower than those is advanced by
  the exact OU transition over each component's own elapsed time;
* slower components (λ·Δt < ``freeze``) are left as they are and catch up exactly on their next
  update (each keeps its own last-update time; untouched since the reset means zero);
* at the next read, lump members that are still needed are drawn exactly by Gaussian conditioning
  on the lump's sum (y_i ~ N(0, v_i), x_i = y_i + v_i·(L − Σy)/V), the others discarded.

Consecutive reads (``sample_run``: the verify reads of program-and-verify) share one Δt, so only the
components that move during the run are advanced; on a device not read since its last pulse, every
other component stays in the lump, so a device pulsed again before its next read costs nothing more.
"""

from __future__ import annotations

import numpy as np

_EULER_GAMMA = 0.5772156649015329
# Devices are processed in chunks so temporaries stay in cache and below glibc's mmap threshold
# (fresh mmapped pages cost a page fault each, which dominated unchunked 1M-device reads).
_CHUNK = 1 << 15


def _chunks(n: int) -> list[slice]:
    return [slice(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]


class FlickerBank:
    """Per-device 1/f noise state; ``sample`` returns η with Var η = ln(age/(2 t_read)) (±1 %)."""

    def __init__(
        self,
        n_devices: int,
        t_read_s: float = 250e-9,
        lam_min_per_s: float = 1e-9,
        per_decade: int = 2,
        renew: float = 4.0,
        freeze: float = 1e-3,
    ) -> None:
        self.per_decade = per_decade
        self.var_k = np.log(10.0) / per_decade
        self.renew, self.freeze = renew, freeze
        self.t_read_s, self.lam_min_per_s = t_read_s, lam_min_per_s
        lam_max = self._calibrated_lam_max(t_read_s, lam_min_per_s)
        k = int(np.ceil(np.log10(lam_max / lam_min_per_s) * per_decade)) + 1
        self.lam = lam_max * 10.0 ** (-np.arange(k) / per_decade)  # descending
        self._lam_asc = self.lam[::-1].copy()
        self.band = int(np.ceil(per_decade * np.log10(renew / freeze))) + 2
        # total variance vs ln(age), tabulated: the bank's variance is smooth in ln(age)
        self._ln_age = np.linspace(np.log(1e-10), np.log(1e11), 4000)
        self._var_tab = self.variance(np.exp(self._ln_age))
        n = n_devices
        # np.zeros is lazily backed by the OS: untouched devices cost no memory
        self.x = np.zeros((n, k), dtype=np.float32)  # individual component values
        self.tu = np.zeros((n, k), dtype=np.float64)  # time of each component's last update
        self.t_last = np.zeros(n)  # time of the device's last read or reset
        self.t_reset = np.zeros(n)  # time of the last reset (end of the last pulse)
        self.lump_lo = np.zeros(n, dtype=np.int16)  # members lump_lo..lump_hi-1
        self.lump_hi = np.zeros(n, dtype=np.int16)
        self.lump = np.zeros(n)  # their sum
        self.lump_var = np.zeros(n)  # its variance
        self.lump_t = np.zeros(n)  # when it was drawn
        self.xsum = np.zeros(n)  # sum of the individual components (excluding the lump)

    #: Per-device state arrays (rows of a snapshot, see save_rows).
    _ROW_ARRAYS = ("x", "tu", "t_last", "t_reset", "lump_lo", "lump_hi", "lump", "lump_var", "lump_t",
                   "xsum")

    def save_rows(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The 1/f state of devices ``idx`` (copies), for a chip snapshot."""
        return {name: getattr(self, name)[idx] for name in self._ROW_ARRAYS}

    def restore_rows(self, idx: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Put back the state of devices ``idx`` saved by :meth:`save_rows`."""
        for name in self._ROW_ARRAYS:
            getattr(self, name)[idx] = rows[name]

    @property
    def n_components(self) -> int:
        return self.lam.size

    def _calibrated_lam_max(self, t_read_s: float, lam_min: float) -> float:
        """Fastest rate such that the discrete bank's variance at age t matches ln(t/(2 t_read)).

        The continuous integral gives λ_max = 1/(4 e^γ t_read); the discrete log-grid sum differs by
        a constant, removed here by a correction on a log grid of ages.
        """
        lam_max = 1.0 / (4.0 * np.exp(_EULER_GAMMA) * t_read_s)
        ages = np.logspace(-4, 7, 111)
        for _ in range(3):
            k = int(np.ceil(np.log10(lam_max / lam_min) * self.per_decade)) + 1
            lam = lam_max * 10.0 ** (-np.arange(k) / self.per_decade)
            var = (self.var_k * (1 - np.exp(-2 * lam[None, :] * ages[:, None]))).sum(1)
            lam_max *= np.exp(-np.mean(var - np.log(ages / (2 * t_read_s))))
        return lam_max

    def variance(self, age_s: np.ndarray) -> np.ndarray:
        """Exact variance of η at ``age_s`` after a reset, for this discrete bank."""
        a = np.asarray(age_s, dtype=float)[..., None]
        return (self.var_k * -np.expm1(-2 * self.lam * a)).sum(-1)

    def covariance(self, ages_s: np.ndarray) -> np.ndarray:
        """Exact covariance of η at ``ages_s`` for a device reset at age 0 and not read in between
        (reads do not disturb the process): Σ_k v·e^{−λ_k|t_j − t_i|}·(1 − e^{−2λ_k·min(t_i, t_j)})."""
        a = np.asarray(ages_s, dtype=float)
        lo, gap = np.minimum.outer(a, a), np.abs(np.subtract.outer(a, a))
        lam = self.lam[:, None, None]
        return self.var_k * (np.exp(-lam * gap) * -np.expm1(-2 * lam * lo)).sum(0)

    def sample_fresh(self, n: int, ages_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """η of ``n`` independent devices reset at age 0 and read at ``ages_s``, shape (n, ages):
        draws from the exact Gaussian law of the bank (:meth:`covariance`), without its per-read
        stepping: what a Monte Carlo of a read schedule needs, at the cost of a small matrix."""
        w, v = np.linalg.eigh(self.covariance(ages_s))
        root = v * np.sqrt(np.maximum(w, 0.0))  # C = root·rootᵀ; eigh tolerates repeated ages
        return rng.standard_normal((n, root.shape[0])) @ root.T

    def _var_of(self, cols: np.ndarray, age: np.ndarray) -> np.ndarray:
        """Variance of components ``cols`` (m, w) at ``age`` (m,) since the reset."""
        return self.var_k * -np.expm1(-2 * self.lam[cols] * np.maximum(age, 0.0)[:, None])

    def reset(self, idx: np.ndarray, t_s: np.ndarray | float) -> None:
        """Programming pulse on ``idx`` at ``t_s``: the 1/f state restarts from zero."""
        self.t_reset[idx] = t_s
        self.t_last[idx] = t_s
        self.lump_lo[idx] = 0
        self.lump_hi[idx] = 0
        self.lump[idx] = 0.0
        self.lump_var[idx] = 0.0
        self.xsum[idx] = 0.0

    def n_renewed(self, dt_s: np.ndarray) -> np.ndarray:
        """Number of (fastest) components with λ·Δt ≥ renew."""
        return self.lam.size - np.searchsorted(self._lam_asc, self.renew / dt_s, side="left")

    def sample(self, idx: np.ndarray, t_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Advance devices ``idx`` to times ``t_s`` (≥ their last read) and return η there."""
        t = np.broadcast_to(np.asarray(t_s, dtype=float), idx.shape)
        parts = [self._sample(idx[c], t[c], rng) for c in _chunks(idx.size)]
        return np.concatenate(parts) if parts else np.empty(0)

    def sample_run(
        self,
        idx: np.ndarray,
        t_first_s: np.ndarray,
        n_reads: int,
        spacing_s: float,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """``n_reads`` consecutive reads ``spacing_s`` apart (verify reads): η of shape (m, n_reads)."""
        t = np.broadcast_to(np.asarray(t_first_s, dtype=float), idx.shape)
        out = np.empty((idx.size, n_reads))
        if n_reads == 1 or self.n_renewed(np.array([spacing_s]))[0] > 0:
            for j in range(n_reads):  # reads too slow for a shared band: one at a time
                out[:, j] = self.sample(idx, t + j * spacing_s, rng)
            return out
        fast = int(np.count_nonzero(self.lam * (n_reads - 1) * spacing_s >= self.freeze))
        fresh = self.t_last[idx] == self.t_reset[idx]
        for sel, run in ((fresh, self._run_fresh), (~fresh, self._run)):
            rows = np.flatnonzero(sel)
            for c in _chunks(rows.size):
                r = rows[c]
                out[r] = run(idx[r], t[r], n_reads, spacing_s, fast, rng)
        return out

    # -- one chunk -----------------------------------------------------------------------------
    def _sample(self, idx: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        k = self.lam.size
        o = self.n_renewed(np.maximum(t - self.t_last[idx], 1e-12))
        lo = self.lump_lo[idx].astype(np.int64)
        hi = self.lump_hi[idx].astype(np.int64)
        xsum = self.xsum[idx]
        # individual components renewed now leave the running sum
        xsum -= self._live_sum(idx, np.zeros_like(o), np.minimum(lo, o))
        xsum -= self._live_sum(idx, np.maximum(hi, np.minimum(lo, o)), o)
        # lump members still needed become individual; the renewed ones are discarded
        xsum += self._extract(idx, np.maximum(lo, o), hi, rng)[0]
        # renewed members have λ·age ≥ λ·Δt ≥ renew: variance v to within e^(−2·renew)
        lump_var = o * self.var_k
        lump = np.sqrt(lump_var) * rng.standard_normal(idx.size)
        xsum += self._advance(idx, t, o, np.minimum(o + self.band, k), rng)
        self._set_lump(idx, 0, o, lump, lump_var, t)
        self.xsum[idx] = xsum
        self.t_last[idx] = t
        return lump + xsum

    def _run_fresh(self, idx, t_first, n_reads, spacing_s, fast, rng) -> np.ndarray:
        """Consecutive reads of devices not read since their last reset (every verify read).

        Since the reset every component is independent, N(0, v·(1 − e^{−2λ·age})): the components
        that move during the run ([0, fast)) are drawn individually and all others lumped.
        """
        m, k = idx.size, self.lam.size
        age = t_first - self.t_reset[idx]
        var_fast = self._var_of(np.broadcast_to(np.arange(fast), (m, fast)), age)
        x = (np.sqrt(var_fast) * rng.standard_normal((m, fast))).astype(np.float32)
        lump_var = np.maximum(np.interp(np.log(np.maximum(age, 1e-10)), self._ln_age,
                                        self._var_tab) - var_fast.sum(1), 0.0)
        lump = np.sqrt(lump_var) * rng.standard_normal(m)
        out = np.empty((m, n_reads))
        out[:, 0] = lump + x.sum(1, dtype=np.float64)
        lam = self.lam[:fast]
        d = np.exp(-lam * spacing_s).astype(np.float32)
        s = np.sqrt(self.var_k * -np.expm1(-2 * lam * spacing_s)).astype(np.float32)
        for j in range(1, n_reads):
            x = x * d + s * rng.standard_normal(x.shape, dtype=np.float32)
            out[:, j] = lump + x.sum(1, dtype=np.float64)
        t_last = t_first + (n_reads - 1) * spacing_s
        self.x[idx, :fast] = x
        self.tu[idx, :fast] = t_last[:, None]
        self.xsum[idx] = out[:, -1] - lump
        self._set_lump(idx, fast, k, lump, lump_var, t_first)
        self.t_last[idx] = t_last
        return out

    def _run(self, idx, t_first, n_reads, spacing_s, fast, rng) -> np.ndarray:
        """Consecutive reads of devices with history: the first read takes the general path."""
        m = idx.size
        out = np.empty((m, n_reads))
        out[:, 0] = self._sample(idx, t_first, rng)
        # the lump [0, o1) of the first read: members that move during the run become individual
        o1 = self.lump_hi[idx].astype(np.int64)
        xsum = self.xsum[idx]
        got, rest, rest_var = self._extract(idx, np.zeros(m, np.int64), np.minimum(o1, fast), rng)
        xsum += got
        lam = self.lam[:fast]
        xb = self.x[idx, :fast].astype(np.float64)
        tub = self.tu[idx, :fast]
        t_reset = self.t_reset[idx][:, None]
        xb[tub < t_reset] = 0.0
        other = xsum - xb.sum(1) + rest
        d_common = np.exp(-lam * spacing_s)
        s_common = np.sqrt(self.var_k * -np.expm1(-2 * lam * spacing_s))
        for j in range(1, n_reads):
            if j == 1:
                d = np.exp(-lam * (t_first[:, None] + spacing_s - np.maximum(tub, t_reset)))
                s = np.sqrt(self.var_k * (1 - d * d))
            else:
                d, s = d_common, s_common
            xb = xb * d + s * rng.standard_normal(xb.shape, dtype=np.float32)
            out[:, j] = other + xb.sum(1)
        t_last = t_first + (n_reads - 1) * spacing_s
        self.x[idx, :fast] = xb
        self.tu[idx, :fast] = t_last[:, None]
        self.xsum[idx] = other - rest + xb.sum(1)
        keep = o1 > fast
        self._set_lump(idx, np.where(keep, fast, 0), np.where(keep, o1, 0),
                       np.where(keep, rest, 0.0), np.where(keep, rest_var, 0.0),
                       self.lump_t[idx])
        self.t_last[idx] = t_last
        return out

    # -- building blocks -----------------------------------------------------------------------
    def _set_lump(self, idx, lo, hi, total, var, t) -> None:
        self.lump_lo[idx] = lo
        self.lump_hi[idx] = hi
        self.lump[idx] = total
        self.lump_var[idx] = var
        self.lump_t[idx] = t

    def _cols(self, idx, first, last):
        """Flat indices of components first..last-1 per device (ragged → padded) and their mask."""
        width = max(int((last - first).max(initial=0)), 0)
        cols = first[:, None] + np.arange(width)
        ok = cols < last[:, None]
        cols = np.minimum(cols, self.lam.size - 1)
        return idx[:, None] * self.lam.size + cols, cols, ok

    def _live_sum(self, idx, first, last) -> np.ndarray:
        """Sum of the individual components first..last-1 touched since each device's reset."""
        flat, _, ok = self._cols(idx, first, last)
        if flat.shape[1] == 0:
            return np.zeros(idx.size)
        live = ok & (np.take(self.tu.ravel(), flat) >= self.t_reset[idx][:, None])
        return np.where(live, np.take(self.x.ravel(), flat), 0.0).sum(1)

    def _extract(self, idx, first, last, rng):
        """Draw lump members first..last-1 given the lump sum and store them as individual.

        Members are independent N(0, v_i) with v_i set by the age at which the lump was drawn; given
        their sum L (variance V): y_i ~ N(0, v_i) for the drawn ones, one N(0, V − Σv_i) for the
        others, and x_i = y_i + v_i·(L − Σy)/V. Returns (sum drawn, sum left, variance left).
        """
        lump, lump_var = self.lump[idx], self.lump_var[idx]
        flat, cols, ok = self._cols(idx, first, np.maximum(last, first))
        if flat.shape[1] == 0 or not ok.any():
            return np.zeros(idx.size), lump, lump_var
        t_lump = self.lump_t[idx]
        v = np.where(ok, self._var_of(cols, t_lump - self.t_reset[idx]), 0.0)
        v_sel = v.sum(1)
        y = np.sqrt(v) * rng.standard_normal(v.shape)
        others = np.sqrt(np.maximum(lump_var - v_sel, 0.0)) * rng.standard_normal(idx.size)
        gain = np.divide(lump - y.sum(1) - others, lump_var, out=np.zeros(idx.size),
                         where=lump_var > 0)
        x = y + v * gain[:, None]
        got = x.sum(1)
        self.x.ravel()[flat[ok]] = x[ok]
        self.tu.ravel()[flat[ok]] = np.broadcast_to(t_lump[:, None], flat.shape)[ok]
        return got, lump - got, np.maximum(lump_var - v_sel, 0.0)

    def _advance(self, idx, t, first, last, rng) -> np.ndarray:
        """Exact OU transition of components first..last-1 to time t; returns the change of sum."""
        flat, cols, ok = self._cols(idx, first, last)
        tu = np.take(self.tu.ravel(), flat)
        t_reset = self.t_reset[idx][:, None]
        live = tu >= t_reset
        x_old = np.where(live, np.take(self.x.ravel(), flat), np.float32(0.0))
        lam_e = (self.lam[cols] * (t[:, None] - np.maximum(tu, t_reset))).astype(np.float32)
        upd = ok & (lam_e >= self.freeze)
        decay = np.exp(-lam_e)
        z = rng.standard_normal(cols.shape, dtype=np.float32)
        x_new = x_old * decay + np.sqrt(np.float32(self.var_k) * (1 - decay * decay)) * z
        self.x.ravel()[flat[upd]] = x_new[upd]
        self.tu.ravel()[flat[upd]] = np.broadcast_to(t[:, None], cols.shape)[upd]
        return np.where(upd, x_new - x_old, np.float32(0.0)).sum(1, dtype=np.float64)
