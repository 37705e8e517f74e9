"""The device model (docs/architecture.md, seam 3): the model card JSON ``devmodel.model/1``.

Exporters and the simulator read nothing else. As an lmfit report, a card carries every value with
its standard error, which parameters were held fixed (not identifiable from the data), the fit
statistics and the data it came from (docs/model-card.md).

:class:`DeviceModel` holds what every card has (technology, g_max, reference age t0, fit quality,
provenance); each technology's ``card`` part subclasses it with its own section (PCM: programming,
drift and read noise; ReRAM: snapshots; …) and implements the hooks shared code calls —
:meth:`~DeviceModel.sample`, :meth:`~DeviceModel.noise_model`, :meth:`~DeviceModel.scalars`,
:meth:`~DeviceModel.inference_age_s` and the others below — so nothing outside the technology's own
modules reads its section. ``DeviceModel(technology=…, …)`` and :meth:`DeviceModel.from_dict` build
the technology's class, found through the registry (:mod:`devmodel.technologies`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema
import numpy as np

from devmodel import __version__
from devmodel.errors import DevmodelError, UnknownNameError
from devmodel.technologies import technology

if TYPE_CHECKING:
    import torch

    from devmodel.model.noise import NativeNoiseModel

SCHEMA = "devmodel.model/1"
SCHEMA_MAJOR = 1
#: Card keys every technology shares, in the order a card file lists them (its section goes between).
HEAD, TAIL = ("technology", "g_max_us", "t0_s"), ("fit_quality", "provenance", "schema")


#: Where a card is taken, ``published:<technology>`` names the technology's published model.
PRESET_PREFIX = "published:"


class ModelCardError(DevmodelError):
    """A model card that does not validate, or from an unknown major schema version."""


def card_class(technology_name: str) -> type[DeviceModel]:
    """The card class of a technology (its ``card`` part's ``CARD``)."""
    try:
        return technology(technology_name).part("card").CARD
    except UnknownNameError as e:
        raise ModelCardError(str(e)) from None


@dataclass(kw_only=True)
class DeviceModel:
    """A fitted (or published) device model; ``to_json``/``from_json`` give the model card."""

    technology: str
    g_max_us: float
    t0_s: float
    fit_quality: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    #: Whether the technology's conductances drift on average, so that global drift compensation
    #: has something to correct (PCM: yes; ReRAM: seed 000 expects no mean drift and uses none)
    MEAN_DRIFT: ClassVar[bool] = True

    def __new__(cls, *args, **kwargs):
        # DeviceModel(technology="pcm", …) builds the technology's card class (as pathlib.Path does)
        if cls is DeviceModel:
            cls = card_class(kwargs.get("technology", ""))
        return super().__new__(cls)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        names = [f.name for f in fields(self)]
        order = [*HEAD, *(n for n in names if n not in HEAD + TAIL), *TAIL]
        return _plain({k: d[k] for k in order if d[k] is not None and d[k] != []})

    def to_json(self, indent: int | None = 2) -> str:
        d = self.to_dict()
        validate_card(d)
        return json.dumps(d, indent=indent, sort_keys=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> DeviceModel:
        def no_constant(name: str):
            # json accepts NaN/Infinity, which no card field may hold (they passed the schema's bounds)
            raise ModelCardError(f"{source} holds {name}, which is not a number a model card may contain")

        def finite(literal: str) -> float:
            v = float(literal)
            if not np.isfinite(v):  # 1e400 overflows to inf, which the schema's bounds let through
                raise ModelCardError(f"{source} holds {literal[:30]}, which overflows a float")
            return v

        try:
            d = json.loads(text, parse_constant=no_constant, parse_float=finite)
        except json.JSONDecodeError as e:
            raise ModelCardError(f"{source} is not valid JSON ({e.msg} at line {e.lineno})") from None
        except RecursionError:
            raise ModelCardError(f"{source} is nested too deeply to be a model card") from None
        except ValueError:  # Python refuses integers of more than 4300 digits
            raise ModelCardError(f"{source} holds an integer too long to read (more than 4300 "
                                 "digits)") from None
        return cls.from_dict(d, source)

    @classmethod
    def from_dict(cls, d: dict, source: str = "model card", plausible: bool = True) -> DeviceModel:
        """A card from its dict: validated against the schema and, unless ``plausible=False`` (a
        card this version's fit has just made, as ``devmodel fit`` writes it unchecked), checked for
        physical sense by drawing from it (:func:`check_plausible`, which loads torch)."""
        validate_card(d, source)
        card = card_class(d["technology"])
        common = {k: d[k] for k in ("technology", "schema")} | {
            "g_max_us": float(d["g_max_us"]), "t0_s": float(d["t0_s"]),
            "fit_quality": d.get("fit_quality", {}), "provenance": d.get("provenance", {})}
        try:
            model = card(**common, **card.section_from_dict(d))
        except ModelCardError as e:  # a section's own consistency check: name the file
            raise ModelCardError(str(e).replace("model card", source, 1)) from None
        if plausible:
            check_plausible(model, source)
        return model

    @classmethod
    def load(cls, path) -> DeviceModel:
        """A card file, or a published preset: ``published:<technology>[?option=value&…]``
        (``published:pcm``, ``published:cmo?acceptance=0.002``; docs/model-card.md, "Presets")."""
        if str(path).startswith(PRESET_PREFIX):
            return cls.preset(str(path))
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise ModelCardError(f"cannot read model card {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ModelCardError(f"model card {path} is not UTF-8 text") from None
        return cls.from_json(text, source=str(path))

    @classmethod
    def preset(cls, name: str) -> DeviceModel:
        """``published:<technology>[?option=value&…]`` → :meth:`published` (options as numbers)."""
        from urllib.parse import parse_qsl

        tech, _, query = name[len(PRESET_PREFIX):].partition("?")
        try:
            options = {k: float(v) for k, v in parse_qsl(query, strict_parsing=bool(query))}
        except ValueError:
            raise ModelCardError(f"preset {name!r}: options must be name=number pairs") from None
        try:
            return cls.published(tech.strip().lower(), **options)
        except TypeError as e:  # an option the technology's published model does not take
            raise ModelCardError(f"preset {name!r}: {e}") from None

    @classmethod
    def published(cls, technology_name: str, **options) -> DeviceModel:
        """The technology's published model as a card (its ``card`` part's ``published(**options)``)."""
        try:
            return technology(technology_name).part("card").published(**options)
        except UnknownNameError as e:
            raise ModelCardError(str(e)) from None

    # -- what a technology's card implements -----------------------------------------------------
    @classmethod
    def section_from_dict(cls, d: dict) -> dict[str, Any]:
        """Constructor arguments of the technology's section, from a validated card dict."""
        raise NotImplementedError

    def sample(self, g_target_us: np.ndarray, t_s: float, rng: np.random.Generator,
               extrapolate: bool = False, read_noise: bool = True) -> np.ndarray:
        """One read per target at age ``t_s`` (s after programming), drawn from the card.

        The NumPy front of the one sampler: the card's torch noise model (:meth:`noise_model`, what
        analog inference, training and the aihwkit export use), with a torch generator seeded from
        ``rng``, so validation and reports judge the same distribution simulations draw from."""
        import warnings

        import torch

        from devmodel.model.noise import ExtrapolationWarning

        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        model = self.noise_model(gen, extrapolate)
        g = torch.as_tensor(np.asarray(g_target_us, dtype=float))
        with warnings.catch_warnings():  # asked for explicitly: not a surprise to warn about
            warnings.simplefilter("ignore", ExtrapolationWarning)
            coeff = model.drift_coefficients(g)
            out = model.at_time(model.program(g, coeff), coeff, float(t_s))
        return (model.read(out) if read_noise else out).numpy()

    def extrapolation(self) -> str:
        """How times beyond the fitted ages are treated when extrapolation is allowed (for notes)."""
        return "the fitted laws are used there"

    def noise_model(self, generator: torch.Generator | None = None,
                    extrapolate: bool = False) -> NativeNoiseModel:
        """The card as a torch noise model (the technology's ``noise`` part)."""
        return technology(self.technology).part("noise").NOISE_MODEL(self, generator, extrapolate)

    def scalars(self) -> dict[str, float]:
        """The fitted numbers by dotted name (bootstrap, reports)."""
        raise NotImplementedError

    def stderrs(self) -> dict[str, float | None]:
        """Standard errors of :meth:`scalars`, by the same names (None where not known)."""
        return {}

    def parameter_lines(self, intervals: dict[str, list[float]]) -> list[str]:
        """The fitted numbers as ``devmodel fit`` prints them: one line per scalar, with its standard
        error and its 95 % bootstrap interval (``intervals``) where known."""
        err = self.stderrs()
        lines = []
        for k, v in self.scalars().items():
            e, b = err.get(k), intervals.get(k)
            lines.append(f"  {k:28s} {v:12.6g}" + (f" ± {e:.3g}" if e else "")
                         + (f"   95 % bootstrap [{b[0]:.4g}, {b[1]:.4g}]" if b else ""))
        return lines

    def remedy(self, curve: str) -> str:
        """What to try when ``curve`` (a top-level name of fit_quality) fits poorly."""
        return ("try another degree or form of that curve (devmodel fit --set …), or look at the data "
                "for mixed populations")

    def notes(self) -> list[str]:
        """Lines a report adds about the card (parameters held fixed, …)."""
        return []

    @property
    def white_read_noise_us(self) -> float:
        """Short-term read noise redrawn at every read (µS)."""
        raise NotImplementedError

    @property
    def g_min_us(self) -> float:
        """The lowest conductance a device is programmed to (the floor of its window; 0: none)."""
        return 0.0

    def inference_age_s(self, t_s: float) -> float:
        """Device age at inference time ``t_s`` (default: counted from programming)."""
        return max(float(t_s), 1e-9)

    def age_note(self) -> str:
        """How inference times map to ages, for messages (empty when they are the same)."""
        return ""

    def fitted_time_range(self) -> tuple[float | None, float | None]:
        """Ages the card's data covered (None: a published card, no limit recorded)."""
        rng = self.provenance.get("age_range_s")
        return (rng[0], rng[1]) if rng else (None, None)

    def outside_fitted_ages(self, age_s: float) -> bool:
        """True for an age beyond the card's data (0.1 % slack for the reads' own timing)."""
        lo, hi = self.fitted_time_range()
        return lo is not None and not (lo * 0.999 <= age_s <= hi * 1.001)

    def spread_at_t0_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """Spread of G at the reference age t0 vs target (µS): what noise-injection training uses."""
        raise NotImplementedError

    def mean_shift_us(self) -> float:
        """The constant shift of every device from its target (µS; seed 002's μ_DS)."""
        return 0.0

    def summary(self) -> dict[str, float | str]:
        """The scalars simpler simulators take (``devmodel export --to summary``)."""
        raise NotImplementedError

    def _repr_html_(self) -> str:  # a notebook's summary (docs/notebook.md)
        from devmodel.model.summary import card_html

        return card_html(self)

    def implausible(self) -> str | None:
        """What the schema cannot judge field by field (a clip whose lower bound exceeds its upper,
        a spread negative everywhere): one sentence naming the field, or None. A technology adds
        its own; :func:`check_plausible` adds the checks every card shares."""
        return None


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


@cache
def _base_schema() -> dict:
    text = resources.files("devmodel").joinpath("schemas/model-card-1.json").read_text("utf-8")
    return json.loads(text)


@cache
def card_schema(technology_name: str) -> dict:
    """The whole JSON Schema of a technology's cards: the common one with the technology's section
    (its ``card.schema.json``: ``properties``, ``required`` and ``$defs``) merged in."""
    tech = technology(technology_name)
    folder = resources.files(tech.package)
    section = json.loads(folder.joinpath("card.schema.json").read_text("utf-8"))
    schema = copy.deepcopy(_base_schema())
    schema["title"] += f", technology {tech.name}"
    schema["properties"].update(section.get("properties", {}))
    schema["required"] = schema["required"] + section.get("required", [])
    schema["$defs"].update(section.get("$defs", {}))
    return schema


def validate_card(d: Any, source: str = "model card") -> None:
    """Validate against the JSON Schema; refuse unknown major versions and technologies (one
    sentence)."""
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
    tech = d.get("technology")
    if not isinstance(tech, str):
        raise ModelCardError(f"{source}: field technology must name a technology")
    try:
        full = card_schema(tech)
    except UnknownNameError as e:
        raise ModelCardError(f"{source}: field technology: {e}") from None
    errors = sorted(jsonschema.Draft202012Validator(full).iter_errors(d),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ModelCardError(f"{source}: field {where}: {e.message}")


def check_plausible(card: DeviceModel, source: str = "model card") -> None:
    """Refuse a card that passed its schema but makes no physical sense: its technology's own
    check, then what every card shares: the spread at t0 finite, ≥ 0 and below g_max across the
    range, and draws at t0 and one day finite and within 100 g_max (docs/model-card.md)."""
    problem = card.implausible()
    if problem:
        raise ModelCardError(f"{source}: {problem}")
    g = np.linspace(0.02, 1.0, 12) * card.g_max_us
    with np.errstate(all="ignore"):
        spread = np.asarray(card.spread_at_t0_us(g), dtype=float)
    bad = ~(np.isfinite(spread) & (spread >= 0) & (spread <= card.g_max_us))
    if bad.any():
        raise ModelCardError(f"{source}: its spread at t0 is {spread[bad][0]:.4g} µS at G = "
                             f"{g[bad][0]:.4g} µS, outside [0, g_max = {card.g_max_us:g} µS]")
    rng = np.random.default_rng(0)
    for age_s in (card.t0_s, 86400.0):
        try:
            with np.errstate(all="ignore"):
                x = card.sample(np.repeat(g, 16), age_s, rng, extrapolate=True)
        except (ValueError, RuntimeError, ArithmeticError) as e:
            raise ModelCardError(f"{source}: its model cannot be evaluated at age {age_s:g} s "
                                 f"({type(e).__name__}: {str(e)[:80]})") from None
        if not (np.isfinite(x).all() and np.abs(x).max() <= 100 * card.g_max_us):
            what = "non-finite" if not np.isfinite(x).all() else "absurd (beyond 100 × g_max)"
            raise ModelCardError(f"{source}: its model draws {what} conductances at age {age_s:g} s")


def created_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
