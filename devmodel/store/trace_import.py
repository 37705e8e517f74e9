"""Import continuous read traces (one device read at a fixed sample rate) as a session of bursts.

One trace per line: a level label, ``skip_columns`` cells that are not samples, then the samples
(conductances; tab, comma or blank separated; optionally gzipped) — the layout of the measured
time series in calibration_data's source (range, 0, samples…). Each trace becomes a device whose
target is its mean (a trace records no target) and one burst of equally spaced reads at
1/``sample_rate_hz``; traces sharing a label form a level. The session has no drift-schedule reads:
it is for read noise (``devmodel read-noise``, docs/physics.md "Read noise from traces"). Errors
name the file, the line and the cell; the output is written to a temporary file and renamed only when
complete.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import numpy as np

from devmodel.errors import DevmodelError, UnknownNameError
from devmodel.store.output import atomic_output, check_output
from devmodel.store.schema import StopReason, sha256_of
from devmodel.store.table_import import UNITS_TO_US, is_number
from devmodel.store.writer import SessionWriter
from devmodel.technologies import technology as lookup_technology

#: Fewer samples than this give no spectrum worth fitting (docs/physics.md).
MIN_SAMPLES = 128


class TraceImportError(DevmodelError):
    """A trace file that cannot be imported (one sentence naming file, line and cell)."""


def _lines(src: Path) -> list[str]:
    try:
        raw = src.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return io.StringIO(raw.decode("utf-8-sig")).read().splitlines()
    except OSError as e:
        raise TraceImportError(f"{src} cannot be read ({type(e).__name__}: {e})") from None
    except (UnicodeDecodeError, EOFError) as e:
        raise TraceImportError(f"{src} is not a text table of traces ({type(e).__name__})") from None


def read_traces(src: Path, skip_columns: int, unit_scale: float) -> tuple[list[str], list[np.ndarray]]:
    """(labels, traces in µS) of the file; one sentence for the first bad line or cell."""
    labels, traces = [], []
    for i, line in enumerate(_lines(src), start=1):
        if not line.strip():
            continue
        cells = [c for c in re.split(r"[\t, ]+", line.strip()) if c]
        samples = cells[1 + skip_columns:]
        if len(samples) < MIN_SAMPLES:
            raise TraceImportError(f"{src} line {i}: {len(samples)} samples; a trace needs at least "
                                   f"{MIN_SAMPLES} (is --skip-columns {skip_columns} right?)")
        try:
            values = np.array(samples, dtype=float) * unit_scale
        except ValueError:
            bad = next(j for j, c in enumerate(samples) if not is_number(c))
            raise TraceImportError(f"{src} line {i}, cell {bad + 2 + skip_columns}: "
                                   f"{samples[bad]!r} is not a number") from None
        if not np.all(np.isfinite(values)):
            j = int(np.argmin(np.isfinite(values)))
            raise TraceImportError(f"{src} line {i}, cell {j + 2 + skip_columns}: {samples[j]!r} is "
                                   "not a finite number")
        labels.append(cells[0])
        traces.append(values)
    if not traces:
        raise TraceImportError(f"{src} holds no traces")
    return labels, traces


def import_traces(src_path: str | Path, out_path: str | Path, technology: str, g_max_us: float,
                  sample_rate_hz: float, conductance_unit: str = "uS", skip_columns: int = 1,
                  age_s: float = 1.0, overwrite: bool = False) -> Path:
    """Convert a file of read traces into a session of bursts; returns the output path."""
    src, out = Path(src_path), Path(out_path)
    try:
        lookup_technology(technology)
    except UnknownNameError as e:
        raise TraceImportError(f"--technology: {e}") from None
    if not (np.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise TraceImportError(f"--sample-rate-hz must be > 0, not {sample_rate_hz:g}")
    if not (np.isfinite(g_max_us) and g_max_us > 0):
        raise TraceImportError(f"--g-max-us must be > 0, not {g_max_us:g}")
    if conductance_unit not in UNITS_TO_US:
        raise TraceImportError(f"--conductance-unit must be one of {', '.join(UNITS_TO_US)}")
    check_output(out, overwrite, [src])
    labels, traces = read_traces(src, skip_columns, UNITS_TO_US[conductance_unit])
    with atomic_output(out, overwrite, [src]) as tmp:
        _write(tmp, src, labels, traces, technology, g_max_us, sample_rate_hz, age_s, skip_columns)
    return out


def _write(tmp: Path, src: Path, labels, traces, technology, g_max_us, fs_hz, age_s, skip) -> None:
    names, level = np.unique(np.asarray(labels), return_inverse=True)
    means = np.array([t.mean() for t in traces])
    levels = np.array([means[level == j].mean() for j in range(names.size)])
    order = np.argsort(levels, kind="stable")  # levels ascending, as sessions keep them
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    n = len(traces)
    cfg = {"import": {"source": str(src), "kind": "read traces", "sample_rate_hz": fs_hz,
                      "labels": names[order].tolist(), "skip_columns": skip,
                      "verify_recorded": False, "convergence_recorded": False},
           "sweep": {"levels_us": levels[order].tolist()}}
    with SessionWriter(tmp, technology=technology, g_max_us=g_max_us, t0_s=age_s,
                       chip={"identity": f"read traces from {src.name}", "technology": technology},
                       config=cfg, seed=None, overwrite=True) as w:
        w.write_levels(levels[order])
        w.write_devices({"address": np.arange(n), "level": rank[level], "target_us": means,
                         "converged": np.ones(n, np.int64), "iterations": np.full(n, -1),
                         "pulses": np.full(n, -1), "g_verify_us": np.full(n, np.nan),
                         "t_last_pulse_s": np.zeros(n),
                         "stop_reason": np.full(n, int(StopReason.CONVERGED))})
        lengths = np.array([t.size for t in traces])
        w.write_bursts({"burst": np.arange(n), "device": np.arange(n), "n_reads": lengths,
                        "interval_s": np.full(n, 1 / fs_hz), "t_start_s": np.full(n, age_s)})
        t = np.concatenate([age_s + np.arange(k) / fs_hz for k in lengths])
        w.append("reads", {"device": np.repeat(np.arange(n), lengths), "t_s": t, "age_s": t,
                           "g_us": np.concatenate(traces), "burst": np.repeat(np.arange(n), lengths),
                           "nominal_age_s": np.full(t.size, np.nan)})
        g = w.f.create_group("import")
        g.attrs["source"] = str(src)
        g.attrs["source_sha256"] = sha256_of(src)
        w.finish()
