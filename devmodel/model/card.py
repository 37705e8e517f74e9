"""The device model (DESIGN.md seam 3): dataclasses and the model card JSON ``devmodel.model/1``.

Exporters and the simulator read nothing else. The card carries, like an lmfit report, every value
with its standard error, which parameters were held fixed (not identifiable from the data), the fit
statistics and the data it came from. Forms (physics.md):

* PCM programming noise σ_prog(x) = Σ c_i·x^i µS with x = G_T/g_ref (1/f noise accumulated until t0
  excluded and added on top); the mean programmed conductance at t0 is G_T + Σ d_i·x^i, clamped at 0;
* drift G(t) = G_prog·(t/t0)^−ν, ν = |N(μ_ν(x), σ_ν(x))| at x = G_T/g_max with μ_ν, σ_ν =
  clip(a·ln x + b, lo, hi) (σ_ν intrinsic: the estimator variance from read noise is removed), also
  kept as a table;
* optional drift–programming coupling ``verify_age_s`` = τ_v: ν already acted between the last
  verify read and t0, so G_prog ∝ (τ_v/t0)^(ν − E ν) around its mean (absent: independent, as in
  the published model);
* 1/f read noise Q_s(x) = min(amp / x^exp, max) at x = |G_prog|/g_max (aihwkit's convention),
  accumulated σ_G(t) = G·Q_s·sqrt(ln((t+t_read)/(2 t_read))), plus white read noise;
* ReRAM: σ(x, t) = Σ c_i(t)·x^i at snapshot times, mean shift per snapshot, read noise constant;
  between snapshots the coefficients are interpolated linearly in ln t.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jsonschema
import numpy as np

from devmodel import __version__
from devmodel.errors import DevmodelError
from devmodel.physics.published import (
    RERAM_G_MAX_US,
    RERAM_READ_NOISE_REL,
    RERAM_WAN2022_COEFFS_US,
    ClippedLog,
    PcmStatModel,
    PowerLawCap,
    poly_us,
    sqrt_log_term,
)

SCHEMA = "devmodel.model/1"
SCHEMA_MAJOR = 1


class ModelCardError(DevmodelError):
    """A model card that does not validate, or from an unknown major schema version."""


@dataclass
class ClippedLogForm:
    """``clip(a·ln x + b, lo, hi)`` with standard errors and the parameters held fixed."""

    a: float
    b: float
    lo: float
    hi: float
    stderr: dict[str, float | None] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    form: str = "clipped_log"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ClippedLog(self.a, self.b, self.lo, self.hi)(x)


@dataclass
class Programming:
    poly_coeffs_us: list[float]
    g_ref_us: float
    poly_coeffs_stderr_us: list[float | None] = field(default_factory=list)
    mean_offset_coeffs_us: list[float] = field(default_factory=lambda: [0.0])
    censored_levels_us: list[float] = field(default_factory=list)
    verify_age_s: float | None = None
    mean_offset_stderr_us: list[float | None] = field(default_factory=list)
    verify_age_stderr_s: float | None = None

    def sigma_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """σ_prog(G_T) ≥ 0 in µS."""
        x = np.asarray(g_target_us, dtype=float) / self.g_ref_us
        return np.maximum(poly_us(self.poly_coeffs_us, x), 0.0)

    def mean_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """Mean programmed conductance at t0 (G_T plus the fitted offset)."""
        g = np.asarray(g_target_us, dtype=float)
        return g + poly_us(self.mean_offset_coeffs_us, g / self.g_ref_us)


@dataclass
class DriftTable:
    g_us: list[float]
    nu_mean: list[float]
    nu_std: list[float]
    nu_std_apparent: list[float] = field(default_factory=list)
    n: list[int] = field(default_factory=list)


@dataclass
class Drift:
    nu_mean: ClippedLogForm
    nu_std: ClippedLogForm
    table: DriftTable
    nu_std_convention: str = "intrinsic"
    nu_distribution: str = "folded_normal"  # ν = |N(μ_ν, σ_ν)|


@dataclass
class ReadNoise:
    q_s_amp: float
    q_s_exp: float
    q_s_max: float
    t_read_s: float
    white_noise_us: float = 0.0
    stderr: dict[str, float | None] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def q_s(self, x: np.ndarray) -> np.ndarray:
        return PowerLawCap(self.q_s_amp, self.q_s_exp, self.q_s_max)(x)

    def sqrt_log_term(self, t_s: np.ndarray) -> np.ndarray:
        return sqrt_log_term(t_s, self.t_read_s)


@dataclass
class Snapshot:
    t_s: float
    poly_coeffs_us: list[float]
    mean_shift_us: float = 0.0
    poly_coeffs_stderr_us: list[float | None] = field(default_factory=list)
    mean_shift_stderr_us: float | None = None


@dataclass
class DeviceModel:
    """A fitted (or published) device model; ``to_json``/``from_json`` give the model card."""

    technology: str
    g_max_us: float
    t0_s: float
    programming: Programming | None = None
    drift: Drift | None = None
    read_noise: ReadNoise | None = None
    snapshots: list[Snapshot] = field(default_factory=list)
    read_noise_us: float | None = None
    read_noise_stderr_us: float | None = None
    fit_quality: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d = {k: v for k, v in d.items() if v is not None and v != []}
        return _plain(d)

    def to_json(self, indent: int | None = 2) -> str:
        d = self.to_dict()
        validate_card(d)
        return json.dumps(d, indent=indent, sort_keys=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> DeviceModel:
        def no_constant(name: str):
            # json accepts NaN/Infinity, which no card field may hold (they passed the schema's bounds)
            raise ModelCardError(f"{source} holds {name}, which is not a number a model card may contain")

        try:
            d = json.loads(text, parse_constant=no_constant)
        except json.JSONDecodeError as e:
            raise ModelCardError(f"{source} is not valid JSON ({e.msg} at line {e.lineno})") from None
        except RecursionError:
            raise ModelCardError(f"{source} is nested too deeply to be a model card") from None
        return cls.from_dict(d, source)

    @classmethod
    def from_dict(cls, d: dict, source: str = "model card") -> DeviceModel:
        validate_card(d, source)
        pg = d.get("programming")
        dr = d.get("drift")
        rn = d.get("read_noise")
        return cls(
            technology=d["technology"], g_max_us=float(d["g_max_us"]), t0_s=float(d["t0_s"]),
            programming=Programming(**pg) if pg else None,
            drift=Drift(
                nu_mean=ClippedLogForm(**dr["nu_mean"]), nu_std=ClippedLogForm(**dr["nu_std"]),
                table=DriftTable(**dr["table"]),
                **{k: v for k, v in dr.items() if k not in ("nu_mean", "nu_std", "table")},
            ) if dr else None,
            read_noise=ReadNoise(**rn) if rn else None,
            snapshots=[Snapshot(**s) for s in d.get("snapshots", [])],
            read_noise_us=d.get("read_noise_us"),
            read_noise_stderr_us=d.get("read_noise_stderr_us"),
            fit_quality=d.get("fit_quality", {}), provenance=d.get("provenance", {}),
            schema=d["schema"],
        )

    @classmethod
    def load(cls, path) -> DeviceModel:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise ModelCardError(f"cannot read model card {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ModelCardError(f"model card {path} is not UTF-8 text") from None
        return cls.from_json(text, source=str(path))

    # -- published defaults --------------------------------------------------------------------
    @classmethod
    def published_pcm(cls, model: PcmStatModel | None = None) -> DeviceModel:
        """The published PCM statistical model of physics.md as a card."""
        m = model or PcmStatModel()
        table_g = [0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0]
        x = np.asarray(table_g) / m.g_max_us
        return cls(
            technology="pcm", g_max_us=m.g_max_us, t0_s=m.t0_s,
            programming=Programming(list(m.prog_coeffs_us), m.g_max_us),
            drift=Drift(
                nu_mean=ClippedLogForm(**m.nu_mean.__dict__),
                nu_std=ClippedLogForm(**m.nu_std.__dict__),
                table=DriftTable(table_g, m.nu_mean(x).tolist(), m.nu_std(x).tolist()),
            ),
            read_noise=ReadNoise(m.q_s.amp, m.q_s.exp, m.q_s.cap, m.t_read_s),
            provenance={"source": "published PCM statistical model (physics.md; aihwkit defaults)",
                        "toolkit_version": __version__},
        )

    @classmethod
    def published_reram(cls) -> DeviceModel:
        """The NeuRRAM ReRAM table (Wan 2022 as fitted in seed 000_…) as a card."""
        return cls(
            technology="reram", g_max_us=RERAM_G_MAX_US, t0_s=1.0,
            snapshots=[Snapshot(t, list(c)) for t, c in sorted(RERAM_WAN2022_COEFFS_US.items())],
            read_noise_us=RERAM_READ_NOISE_REL * RERAM_G_MAX_US,
            provenance={"source": "NeuRRAM table (Wan 2022, seed 000_… supplement)",
                        "toolkit_version": __version__},
        )

    # -- evaluation ----------------------------------------------------------------------------
    def snapshot_coeffs(self, t_s: float, extrapolate: bool = False) -> tuple[np.ndarray, float]:
        """ReRAM σ(x) coefficients and mean shift at ``t_s``, interpolated linearly in ln t.

        Outside the fitted snapshot range the nearest snapshot is used only when ``extrapolate``.
        """
        snaps = sorted(self.snapshots, key=lambda s: s.t_s)
        ts = np.array([s.t_s for s in snaps])
        if not snaps:
            raise ModelCardError("this card has no ReRAM snapshots")
        if (t_s < ts[0] * (1 - 1e-9) or t_s > ts[-1] * (1 + 1e-9)) and not extrapolate:
            raise ModelCardError(
                f"t = {t_s:g} s is outside the fitted snapshots {ts[0]:g}–{ts[-1]:g} s; "
                "allow extrapolation explicitly"
            )
        width = max(len(s.poly_coeffs_us) for s in snaps)
        c = np.array([np.pad(s.poly_coeffs_us, (0, width - len(s.poly_coeffs_us))) for s in snaps])
        shift = np.array([s.mean_shift_us for s in snaps])
        if len(snaps) == 1:
            return c[0], float(shift[0])
        u = np.clip(np.log(t_s), np.log(ts[0]), np.log(ts[-1]))
        j = int(np.clip(np.searchsorted(np.log(ts), u) - 1, 0, len(ts) - 2))
        w = (u - np.log(ts[j])) / (np.log(ts[j + 1]) - np.log(ts[j]))
        return (1 - w) * c[j] + w * c[j + 1], float((1 - w) * shift[j] + w * shift[j + 1])


def _plain(o: Any) -> Any:
    """NumPy scalars/arrays → plain Python; NaN → None (JSON has no NaN)."""
    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return _plain(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def _schema() -> dict:
    text = resources.files("devmodel").joinpath("schemas/model-card-1.json").read_text("utf-8")
    return json.loads(text)


def validate_card(d: Any, source: str = "model card") -> None:
    """Validate against the JSON Schema; refuse unknown major versions (one sentence)."""
    if not isinstance(d, dict):
        raise ModelCardError(f"{source} must be a JSON object")
    schema = d.get("schema")
    if not isinstance(schema, str) or not schema.startswith("devmodel.model/"):
        raise ModelCardError(f"{source} is not a devmodel model card (no 'devmodel.model/N' schema)")
    try:
        major = int(schema.split("/", 1)[1].split(".")[0])
    except ValueError:
        raise ModelCardError(f"{source} has an unreadable schema {schema!r}") from None
    if major != SCHEMA_MAJOR:
        raise ModelCardError(
            f"{source} uses model card schema {schema}; this devmodel {__version__} reads "
            f"devmodel.model/{SCHEMA_MAJOR}: upgrade devmodel"
        )
    errors = sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(d),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ModelCardError(f"{source}: field {where}: {e.message}")


def created_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
