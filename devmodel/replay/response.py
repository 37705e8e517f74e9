"""The empirical conditional model of one pulse kind and width: the next verify reading given the
pulse amplitude, the reading before it and the compliance, with per-device persistence.

* **Location and scale** (µS): penalised least squares on a bilinear (amplitude × reading before)
  surface of hat functions, plus a compliance slope per amplitude knot where the compliance varies.
  Whether the reading before matters is decided per amplitude knot from the data: by the slope of the
  next reading on the reading before *within* devices (between devices the two are correlated through
  the device itself — a device with a high threshold reads high before and after — which says nothing
  about history). At history-free knots (PCM partial RESET) the surface is tied flat along the reading
  before; where it matters (sub-melt creep, ReRAM SET/RESET) it is not.
* **Residual shape**: empirical quantiles of the standardised residual per (amplitude, reading
  before, compliance) cell, pooled with neighbouring cells until each pool holds enough pulses.
* **Devices**: each recorded residual becomes a normal score ``z``; a device's scores share a
  standardised device effect ``η`` with a loading ``λ(A)`` that depends on the amplitude,
  ``z = λ(A)·η + √(1−λ(A)²)·ε`` (``λ²``, the device's share of the residual variance, is estimated
  per amplitude knot by maximum likelihood over the pulses each device received near it). A device's
  effect at amplitude ``A`` has a Gaussian posterior given its recorded pulses weighted by
  ``exp(−|ΔA|/memory)``; ``memory`` is chosen by leave-one-out prediction of the recorded scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import ndtr, ndtri

MAX_DISCRETE = 64  # at most this many distinct amplitudes: one knot each
N_AMPLITUDE_KNOTS = 64  # knots of a continuous amplitude (quantiles)
N_STATE_KNOTS = 12  # knots of the reading before the pulse (quantiles)
MAX_COMPLIANCE_BINS = 16
MIN_CELL_PULSES = 200  # residual quantiles of a cell: a pool of at least this many pulses
MIN_ICC_DEVICES = 300  # devices with two or more pulses behind each amplitude's device share
MAX_ICC = 0.95
HISTORY_SLOPE = 0.2  # within-device slope on the reading before above which history matters
N_QUANTILES = 257
SMOOTHING = 1e-3  # roughness penalty, relative to the mean information per coefficient
TIE = 1e4  # weight that makes the surface flat along the reading before where history does not matter
MIN_SLOPE_DEVICES = 100  # devices with two or more pulses near a knot to judge its history
MEMORY_DEVICES = 4000  # devices (those with the most pulses) behind the device-memory estimate


def locate(knots: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left knot index and weight of the right knot (values clamped to the knot range)."""
    v = np.asarray(v, float)
    if knots.size == 1:
        return np.zeros(v.size, np.int64), np.zeros(v.size)
    c = np.clip(v, knots[0], knots[-1])
    i = np.clip(np.searchsorted(knots, c, side="right") - 1, 0, knots.size - 2)
    return i, (c - knots[i]) / (knots[i + 1] - knots[i])


def knots_of(v: np.ndarray, n_max: int, discrete_max: int = 0) -> np.ndarray:
    """Knots of a covariate: its distinct values when there are few, else quantiles of the values
    plus every value that holds 1 % of them or more (a clipped amplitude, say), so the surface is
    not interpolated from such a crowd across a wide gap."""
    distinct, counts = np.unique(np.round(v, 9), return_counts=True)
    if distinct.size <= max(discrete_max, 1):
        return distinct
    crowd = distinct[counts >= 0.01 * v.size]
    rest = v[~np.isin(np.round(v, 9), crowd)]
    n = int(np.clip(v.size // MIN_CELL_PULSES, 2, n_max))
    q = np.quantile(rest, np.linspace(0, 1, n)) if rest.size else np.empty(0)
    return np.unique(np.concatenate([q, crowd]))


@dataclass
class GroupModel:
    """Conditional model of the next verify reading for one recorded pulse kind and width."""

    kind: int
    width_ns: float
    n_pulses: int
    a_knots: np.ndarray  # (Ka,) amplitude knots
    x_knots: np.ndarray  # (Kx,) reading-before knots; one knot: history-free
    c_bins: np.ndarray  # (Kc,) compliance bin centres; one bin: compliance not used
    use_compliance: bool
    y_range: tuple[float, float]
    history: np.ndarray = None  # (Ka,) bool: the reading before matters at this amplitude knot
    within_slope: np.ndarray = None  # (Ka,) slope on the reading before, within devices
    loc: np.ndarray = None  # coefficients: (Ka·Kx) surface, then Ka compliance slopes
    scale: np.ndarray = None
    quantiles: np.ndarray = None  # (Ka, Kx, Kc, N_QUANTILES)
    loading: np.ndarray = None  # (Ka,) λ: √(device share of the residual variance)
    memory: float = np.inf  # amplitude scale over which a device's effect stays the same
    rec_start: np.ndarray = None  # (n_devices+1,) each recorded device's slice of the rec_* arrays
    rec_amp: np.ndarray = None  # recorded pulses sorted by device: amplitude,
    rec_q: np.ndarray = None  # λz/(1−λ²) and
    rec_p: np.ndarray = None  # λ²/(1−λ²): the evidence each recorded pulse gives about η

    @property
    def n_coef(self) -> int:
        return self.a_knots.size * self.x_knots.size + self.a_knots.size

    def design(self, amplitude, g_before, compliance) -> sparse.csr_matrix:
        """Sparse design matrix of the location/scale coefficients."""
        ia, wa = locate(self.a_knots, amplitude)
        ix, wx = locate(self.x_knots, g_before)
        Ka, Kx = self.a_knots.size, self.x_knots.size
        r = np.arange(ia.size)
        ia2, ix2 = np.minimum(ia + 1, Ka - 1), np.minimum(ix + 1, Kx - 1)
        rows = [r] * 4
        cols = [ia * Kx + ix, ia2 * Kx + ix, ia * Kx + ix2, ia2 * Kx + ix2]
        vals = [(1 - wa) * (1 - wx), wa * (1 - wx), (1 - wa) * wx, wa * wx]
        if self.use_compliance:
            c = np.where(np.isfinite(compliance), compliance, 0.0)
            rows += [r, r]
            cols += [Ka * Kx + ia, Ka * Kx + ia2]
            vals += [(1 - wa) * c, wa * c]
        return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(ia.size, self.n_coef))

    def location_scale(self, amplitude, g_before, compliance) -> tuple[np.ndarray, np.ndarray]:
        X = self.design(amplitude, g_before, compliance)
        floor = 1e-3 * max(self.y_range[1] - self.y_range[0], 1e-6)
        return X @ self.loc, np.maximum(X @ self.scale, floor)

    def c_bin(self, compliance) -> np.ndarray:
        c = np.asarray(compliance, float)
        if not self.use_compliance:
            return np.zeros(c.size, np.int64)
        i = np.clip(np.searchsorted(self.c_bins, np.where(np.isfinite(c), c, 0.0)), 1,
                    self.c_bins.size - 1)
        left = self.c_bins[i - 1]
        return np.where(np.abs(c - left) <= np.abs(self.c_bins[i] - c), i - 1, i)

    def residual_quantile(self, amplitude, g_before, compliance, u: np.ndarray) -> np.ndarray:
        """Standardised residual at probability ``u``: bilinear between the four nearest
        (amplitude, reading before) cells of the nearest compliance bin."""
        ia, wa = locate(self.a_knots, amplitude)
        ix, wx = locate(self.x_knots, g_before)
        ic = self.c_bin(compliance)
        Ka, Kx = self.a_knots.size, self.x_knots.size
        pos = np.clip(u, 0.0, 1.0) * (N_QUANTILES - 1)
        j = np.minimum(pos.astype(np.int64), N_QUANTILES - 2)
        f = pos - j
        q = self.quantiles
        out = np.zeros(ia.size)
        for da, w_a in ((0, 1 - wa), (1, wa)):
            for dx, w_x in ((0, 1 - wx), (1, wx)):
                a_, x_ = np.minimum(ia + da, Ka - 1), np.minimum(ix + dx, Kx - 1)
                out += w_a * w_x * (q[a_, x_, ic, j] * (1 - f) + q[a_, x_, ic, j + 1] * f)
        return out

    def loading_at(self, amplitude) -> np.ndarray:
        ia, wa = locate(self.a_knots, amplitude)
        lam = self.loading
        return lam[ia] * (1 - wa) + lam[np.minimum(ia + 1, lam.size - 1)] * wa

    def device_effect(self, rows: np.ndarray, amplitude: np.ndarray, xi: np.ndarray) -> np.ndarray:
        """Effect η of recorded devices ``rows`` (−1: unrecorded) at these amplitudes: its posterior
        given the device's recorded pulses, weighted by exp(−|ΔA|/memory), at the device's fixed
        posterior quantile ``xi`` (a standard normal drawn once per device, so it stays itself)."""
        mean, sd = _local_posterior(self.rec_start, self.rec_amp, self.rec_q, self.rec_p, self.memory,
                                    rows, np.asarray(amplitude, float))
        return mean + sd * xi

    def draw(self, amplitude, g_before, compliance, eta, rng: np.random.Generator) -> np.ndarray:
        """Next verify readings for these pulses on devices with standardised effects ``eta``."""
        loc, scale = self.location_scale(amplitude, g_before, compliance)
        lam = self.loading_at(amplitude)
        z = lam * eta + np.sqrt(1 - lam**2) * rng.standard_normal(lam.size)
        e = self.residual_quantile(amplitude, g_before, compliance, ndtr(z))
        return np.clip(loc + scale * e, *self.y_range)


# -- fitting -----------------------------------------------------------------------------------
def typical_next(amp: np.ndarray, c: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The mean next reading at each pulse's amplitude (and compliance), over all devices."""
    use_c = bool(np.all(np.isfinite(c)) and np.ptp(c) > 0)
    g = GroupModel(kind=0, width_ns=0.0, n_pulses=y.size,
                   a_knots=knots_of(amp, N_AMPLITUDE_KNOTS, MAX_DISCRETE), x_knots=np.zeros(1),
                   c_bins=np.zeros(1), use_compliance=use_c, y_range=(float(y.min()), float(y.max())),
                   history=np.zeros(1, bool))
    X = g.design(amp, np.zeros_like(amp), c)
    return X @ _solve(X, y, _penalty(g))


def fit_group(kind: int, width_ns: float, amp: np.ndarray, x: np.ndarray, c: np.ndarray,
              y: np.ndarray, dev: np.ndarray, n_devices: int) -> GroupModel:
    """Fit the conditional model of one pulse kind and width (module docstring)."""
    use_c = bool(np.all(np.isfinite(c)) and np.ptp(c) > 0)
    c_bins = knots_of(c, MAX_COMPLIANCE_BINS, MAX_COMPLIANCE_BINS) if use_c else np.zeros(1)
    g = GroupModel(kind=kind, width_ns=width_ns, n_pulses=y.size,
                   a_knots=knots_of(amp, N_AMPLITUDE_KNOTS, MAX_DISCRETE),
                   x_knots=np.array([float(np.median(x))]), c_bins=c_bins, use_compliance=use_c,
                   y_range=(float(y.min()), float(y.max())))
    # does the reading before matter? judged per amplitude knot, within devices, on the residual of
    # an amplitude-only fit
    g.history = np.ones(g.a_knots.size, bool)
    X0 = g.design(amp, x, c)
    g.loc = _solve(X0, y, _penalty(g))
    g.within_slope = _within_slopes(g, amp, y - X0 @ g.loc, x, dev, n_devices)
    g.history = ~(np.abs(g.within_slope) < HISTORY_SLOPE)  # NaN (too few devices): keep history
    if g.history.any():
        g.x_knots = knots_of(x, N_STATE_KNOTS)
    X, P = g.design(amp, x, c), _penalty(g)
    g.loc = _solve(X, y, P)
    resid = y - X @ g.loc
    g.scale = _solve(X, np.abs(resid), P)
    _, s = g.location_scale(amp, x, c)
    z = _quantile_tables(g, amp, x, c, resid / s)
    _device_loadings(g, amp, z, dev, n_devices)
    return g


def _penalty(g: GroupModel) -> sparse.csr_matrix:
    """Second differences of the surface along both axes (and of the compliance slopes along the
    amplitude), so coefficients the data do not pin follow their neighbours linearly."""
    Ka, Kx = g.a_knots.size, g.x_knots.size

    def d2(k: int) -> sparse.csr_matrix:
        if k < 3:
            return sparse.csr_matrix((0, k))
        return sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(k - 2, k)).tocsr()

    blocks = [sparse.kron(d2(Ka), sparse.eye(Kx)), sparse.kron(sparse.eye(Ka), d2(Kx))]
    flat = np.flatnonzero(~g.history) if Kx > 1 else np.empty(0, np.int64)
    if flat.size:  # history-free amplitudes: the surface is flat along the reading before
        d1 = sparse.diags([-1.0, 1.0], [0, 1], shape=(Kx - 1, Kx))
        pick = sparse.csr_matrix((np.ones(flat.size), (np.arange(flat.size), flat)), shape=(flat.size, Ka))
        blocks.append(TIE * sparse.kron(pick, d1))
    P = sparse.vstack(blocks)
    P = sparse.hstack([P, sparse.csr_matrix((P.shape[0], Ka))]).tocsr()
    if g.use_compliance:
        Pc = sparse.hstack([sparse.csr_matrix((max(Ka - 2, 0), Ka * Kx)), d2(Ka)])
        P = sparse.vstack([P, Pc]).tocsr()
    return P


def _solve(X: sparse.csr_matrix, y: np.ndarray, P: sparse.csr_matrix) -> np.ndarray:
    """Penalised least squares through the normal equations (a tiny ridge keeps them regular)."""
    A = (X.T @ X).toarray()
    scale = max(np.trace(A) / A.shape[0], 1e-12)
    A += SMOOTHING * scale * (P.T @ P).toarray() + 1e-9 * scale * np.eye(A.shape[0])
    return np.linalg.solve(A, X.T @ y)


def _within_slopes(g: GroupModel, amp, resid, x, dev, n_devices) -> np.ndarray:
    """Per amplitude knot, the slope of the residual on the reading before after removing each
    device's mean of both, over the pulses nearest that knot (pooled with neighbouring knots until
    MIN_SLOPE_DEVICES devices have two or more); NaN where even two neighbours do not suffice."""
    Ka = g.a_knots.size
    ia, wa = locate(g.a_knots, amp)
    near = np.where(wa > 0.5, np.minimum(ia + 1, Ka - 1), ia)
    out = np.full(Ka, np.nan)
    for k in range(Ka):
        for r in range(3):
            sel = np.abs(near - k) <= r
            d = dev[sel]
            n = np.bincount(d, minlength=n_devices)
            if np.count_nonzero(n >= 2) >= MIN_SLOPE_DEVICES:
                keep = n[d] >= 2
                d, rr, xx = d[keep], resid[sel][keep], x[sel][keep]
                cnt = np.maximum(n, 1)
                r_c = rr - (np.bincount(d, rr, n_devices) / cnt)[d]
                x_c = xx - (np.bincount(d, xx, n_devices) / cnt)[d]
                den = float(x_c @ x_c)
                out[k] = float(r_c @ x_c) / den if den > 0 else 0.0
                break
    return out


def _quantile_tables(g: GroupModel, amp, x, c, e) -> np.ndarray:
    """Residual quantiles per cell (pooled with neighbours up to MIN_CELL_PULSES); returns each
    pulse's normal score within its cell's pool."""
    Ka, Kx, Kc = g.a_knots.size, g.x_knots.size, g.c_bins.size
    ia, wa = locate(g.a_knots, amp)
    ix, wx = locate(g.x_knots, x)
    ca = np.where(wa > 0.5, np.minimum(ia + 1, Ka - 1), ia)
    cx = np.where(wx > 0.5, np.minimum(ix + 1, Kx - 1), ix)
    cx = np.where(g.history[ca], cx, 0)  # history-free amplitudes: one pool over all readings
    cc = g.c_bin(c)
    cell = (ca * Kx + cx) * Kc + cc
    counts = np.bincount(cell, minlength=Ka * Kx * Kc)
    order = np.argsort(cell, kind="stable")
    start = np.concatenate([[0], np.cumsum(counts)])
    box = np.pad(counts.reshape(Ka, Kx, Kc).cumsum(0).cumsum(1).cumsum(2), ((1, 0), (1, 0), (1, 0)))
    g.quantiles = np.empty((Ka, Kx, Kc, N_QUANTILES))
    u, n_pool = np.empty(e.size), np.empty(e.size)
    probs = np.linspace(0, 1, N_QUANTILES)
    need = min(MIN_CELL_PULSES, e.size)
    for i in range(Ka):
        for j in range(Kx if g.history[i] else 1):
            for k in range(Kc):
                r = 0
                while True:
                    lo = (max(i - r, 0), max(j - r, 0) if g.history[i] else 0, max(k - r, 0))
                    hi = (min(i + r + 1, Ka), min(j + r + 1, Kx) if g.history[i] else Kx,
                          min(k + r + 1, Kc))
                    if _box_sum(box, lo, hi) >= need or (lo == (0, 0, 0) and hi == (Ka, Kx, Kc)):
                        break
                    r += 1
                parts = [order[start[(a * Kx + b) * Kc + lo[2]]:start[(a * Kx + b) * Kc + hi[2]]]
                         for a in range(lo[0], hi[0]) for b in range(lo[1], hi[1])]
                pool = np.sort(e[np.concatenate(parts)])
                g.quantiles[i, j if g.history[i] else slice(None), k] = np.quantile(pool, probs)
                own = order[start[(i * Kx + j) * Kc + k]:start[(i * Kx + j) * Kc + k + 1]]
                if own.size:
                    left = np.searchsorted(pool, e[own], side="left")
                    right = np.searchsorted(pool, e[own], side="right")
                    u[own] = (left + right) / (2.0 * pool.size)
                    n_pool[own] = pool.size
    return ndtri(np.clip(u, 0.5 / n_pool, 1 - 0.5 / n_pool))


def _box_sum(box: np.ndarray, lo: tuple, hi: tuple) -> int:
    (a0, b0, c0), (a1, b1, c1) = lo, hi
    return int(box[a1, b1, c1] - box[a0, b1, c1] - box[a1, b0, c1] - box[a1, b1, c0]
               + box[a0, b0, c1] + box[a0, b1, c0] + box[a1, b0, c0] - box[a0, b0, c0])


def _device_loadings(g: GroupModel, amp, z, dev, n_devices) -> None:
    """Per amplitude knot, the device share of the score variance (one-way ANOVA over the pulses
    each device received near that knot, pooled with neighbouring knots until enough devices have
    two or more); then each recorded device's posterior for its standardised effect η."""
    Ka = g.a_knots.size
    ia, wa = locate(g.a_knots, amp)
    near = np.where(wa > 0.5, np.minimum(ia + 1, Ka - 1), ia)
    icc = np.zeros(Ka)
    for k in range(Ka):
        r = 0
        while True:
            sel = np.abs(near - k) <= r
            d = dev[sel]
            n = np.bincount(d, minlength=n_devices)
            if np.count_nonzero(n >= 2) >= MIN_ICC_DEVICES or r >= Ka:
                break
            r += 1
        icc[k] = _icc(z[sel], d, n)
    g.loading = np.sqrt(np.clip(icc, 0.0, MAX_ICC))
    lam = g.loading_at(amp)
    order = np.argsort(dev, kind="stable")
    g.rec_start = np.concatenate([[0], np.cumsum(np.bincount(dev, minlength=n_devices))])
    g.rec_amp = amp[order]
    g.rec_q = (lam * z / (1 - lam**2))[order]
    g.rec_p = (lam**2 / (1 - lam**2))[order]
    g.memory = _memory(g, z[order], lam[order])


def _local_posterior(start, amp_rec, q, p, memory, rows, amplitude):
    """Gaussian posterior of η for each (device row, amplitude) query from the device's recorded
    pulses, each weighted by exp(−|ΔA|/memory); rows −1 get the prior N(0, 1)."""
    rows = np.asarray(rows, np.int64)
    known = rows >= 0
    n = np.where(known, start[np.maximum(rows, 0) + 1] - start[np.maximum(rows, 0)], 0)
    owner = np.repeat(np.arange(rows.size), n)
    first = np.repeat(start[np.maximum(rows, 0)] - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    idx = first + np.arange(owner.size)
    w = np.exp(-np.abs(amp_rec[idx] - amplitude[owner]) / memory) if np.isfinite(memory) else 1.0
    precision = 1.0 + np.bincount(owner, w * p[idx], minlength=rows.size)
    mean = np.bincount(owner, w * q[idx], minlength=rows.size) / precision
    return mean, 1.0 / np.sqrt(precision)


def _memory(g: GroupModel, z_sorted: np.ndarray, lam_sorted: np.ndarray) -> float:
    """The amplitude scale of a device's memory of itself: the kernel length whose leave-one-out
    prediction of each recorded score from the same device's other pulses is most likely (on a
    grid of fractions of the amplitude range, and infinity: one effect at every amplitude)."""
    start, amp, q, p = g.rec_start, g.rec_amp, g.rec_q, g.rec_p
    n = np.diff(start)
    devices = np.flatnonzero(n >= 2)
    if devices.size == 0:
        return np.inf
    devices = devices[np.argsort(-n[devices], kind="stable")][:MEMORY_DEVICES]
    # all ordered pairs (i, k), i ≠ k, of pulses of the same device
    m = n[devices]
    i_dev = np.repeat(np.arange(devices.size), m * m)
    base = np.repeat(start[devices], m * m)
    local = np.arange(i_dev.size) - np.repeat(np.concatenate([[0], np.cumsum(m * m)[:-1]]), m * m)
    mm = m[i_dev]
    i, k = base + local // mm, base + local % mm
    keep = i != k
    i, k = i[keep], k[keep]
    span = float(np.ptp(amp)) or 1.0
    best, best_ll = np.inf, -np.inf
    for ell in (*(span * f for f in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)), np.inf):
        w = np.exp(-np.abs(amp[i] - amp[k]) / ell) if np.isfinite(ell) else np.ones(i.size)
        precision = 1.0 + np.bincount(i, w * p[k], minlength=amp.size)
        mean = np.bincount(i, w * q[k], minlength=amp.size) / precision
        used = np.unique(i)
        lam = lam_sorted[used]
        var = lam**2 / precision[used] + 1 - lam**2
        ll = float(np.sum(-0.5 * np.log(var) - 0.5 * (z_sorted[used] - lam * mean[used]) ** 2 / var))
        if ll > best_ll:
            best, best_ll = ell, ll
    return best


def _icc(z: np.ndarray, dev: np.ndarray, n: np.ndarray) -> float:
    """Device share of the variance of the (unit-variance) scores ``z`` grouped by ``dev``, by
    maximum likelihood of the random-effects model z = λ·η_d + √(1−λ²)·ε.

    A moment (ANOVA) estimate would be biased low here: a verify loop pulses a device again only
    after a miss, so all but its last reading are selected for being off target, which inflates the
    within-device spread. The likelihood of each device's readings does not depend on that stopping
    rule (it only looks at the past), so maximum likelihood is not misled by it (on the sessions
    tried, the two differ little).
    """
    has = n >= 1
    if np.count_nonzero(n >= 2) == 0:
        return 0.0
    nn = n[has].astype(float)
    S = np.bincount(dev, z, n.size)[has]
    Q = np.bincount(dev, z * z, n.size)[has]
    b = np.linspace(0.0, MAX_ICC, 96)[:, None]  # λ² grid
    a = 1.0 - b
    big = a + nn * b
    nll = (nn - 1) * np.log(a) + np.log(big) + (Q - b * S**2 / big) / a
    return float(b[np.argmin(nll.sum(axis=1)), 0])
