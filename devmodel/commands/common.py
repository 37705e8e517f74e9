"""What the ``devmodel`` commands share: one-line errors, number lists, atomic writes, the
extrapolation note, networks by name. Imports only click and the core at module level, so
``devmodel --help`` stays fast."""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path

import click

from devmodel.errors import DevmodelError, friendly

one_line = friendly()  # one sentence and exit status 2 for a user error (devmodel.errors)


class OneLineErrors(click.Group):
    """click's usage errors (a wrong type, a missing argument, an unknown command) as one line on
    stderr and exit status 2, like every other devmodel error, instead of usage + blank + error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _terminate_like_ctrl_c()
        _no_floating_point_warnings()
        sys.unraisablehook = _quiet_h5py_dealloc
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `devmodel`: the help is the answer
                e.show()
                sys.exit(e.exit_code)
            path = e.ctx.command_path if e.ctx is not None else "devmodel"
            msg = e.format_message().rstrip(".")
            click.echo(f"devmodel: error: {msg[:1].lower() + msg[1:]} (see '{path} --help').",
                       err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("devmodel: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class Finite(click.FloatRange):
    """A float option that must be finite (and within the given bounds): NaN passes every
    ``x < bound`` test of click's FloatRange, so it is refused here, where the number enters."""

    name = "finite float"

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return "finite"  # click's own text would read "x<=None"
        return super()._describe_range()

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


def _quiet_h5py_dealloc(unraisable) -> None:
    """After a write failed (a full disk) an HDF5 file that could not close reports again when
    Python frees it, after the command's one sentence: that report is dropped, any other kept."""
    if "h5py" in repr(getattr(unraisable, "object", "")) or "_dealloc" in str(unraisable.err_msg or ""):
        return
    sys.__unraisablehook__(unraisable)


def _no_floating_point_warnings() -> None:
    """NumPy's floating-point RuntimeWarnings (overflow, invalid value, empty slices) are internal:
    a command gives its results, or one sentence saying what is wrong with the input (the checks
    at entry refuse what would overflow), never a warning printed before that sentence."""
    import warnings

    for text in (r"(overflow|invalid value|divide by zero|underflow) encountered", r"Mean of empty slice",
                 r"Degrees of freedom <= 0", r"All-NaN slice encountered"):
        warnings.filterwarnings("ignore", message=text, category=RuntimeWarning)


def _terminate_like_ctrl_c() -> None:
    """SIGTERM (a scheduler or `kill` stopping the command) runs the same clean-up as Ctrl-C:
    temporary files removed, a session marked interrupted (docs/reliability.md)."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


def floats(name: str, text: str | None) -> tuple[float, ...] | None:
    """``--name 1,2,3`` as finite numbers (None when not given)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DevmodelError(f"--{name}: expected comma-separated numbers, got {text!r}") from None
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise DevmodelError(f"--{name}: {bad[0]!r} is not a finite number")
    return values


def times(text: str) -> list[float]:
    """--times: positive inference times in seconds, comma-separated."""
    times_s = list(floats("times", text) or ())
    if not times_s or any(not 0 < t < float("inf") for t in times_s):
        raise DevmodelError("--times: inference times must be positive, finite seconds")
    return times_s


def sem(acc):
    """Standard error of the mean over programming trials (axis 0); 0 for a single trial."""
    import numpy as np

    n = acc.shape[0]
    return acc.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(acc.shape[1:])


def explicit(name: str) -> bool:
    """Whether the current command's parameter ``name`` was given on the command line."""
    src = click.get_current_context().get_parameter_source(name)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


def key_values(option: str, items: tuple[str, ...]) -> dict[str, str]:
    """``--set KEY=VALUE`` items as a dict (one sentence for a malformed one)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DevmodelError(f"{option} {item!r}: expected FIELD=VALUE")
        out[key.strip()] = value.strip()
    return out


def _typed(option: str, key: str, text: str, kinds: list[str], default: object):
    """``text`` as a value of a field declared ``kinds`` (its annotation's alternatives)."""
    try:
        if text.lower() == "none" and "None" in kinds:
            return None
        if isinstance(default, bool) or kinds[0] == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(default, tuple):
            return tuple(type(default[0])(v) if default else float(v) for v in text.split(",") if v.strip())
        if kinds[0] == "int" or (isinstance(default, int) and kinds[0] != "float"):
            return int(text)
        if kinds[0] == "str":
            return text
        return float(text)
    except ValueError:
        raise DevmodelError(f"{option} {key}={text!r}: not a value of that field's type") from None


def typed_values(option: str, values: dict[str, str], defaults: object) -> dict:
    """``key_values`` converted to the types of the fields of the dataclass instance ``defaults``
    (numbers, flags, comma-separated tuples); unknown fields refused."""
    from dataclasses import fields

    kinds = {f.name: str(f.type).replace(" ", "").split("|") for f in fields(defaults)}
    out: dict = {}
    for key, text in values.items():
        if key not in kinds:
            raise DevmodelError(f"{option}: no field {key!r}; known: {', '.join(sorted(kinds)) or 'none'}")
        out[key] = _typed(option, key, text, kinds[key], getattr(defaults, key))
    return out


def write_atomically(path: Path, text: str, overwrite: bool, inputs=()) -> None:
    """Write ``text`` to ``path`` safely (devmodel.store.output): no half-written file, no input
    overwritten."""
    from devmodel.store.output import write_text_atomically

    write_text_atomically(path, text, overwrite, inputs)


def check_times(model, times_s: list[float], extrapolate: bool) -> list[bool]:
    """Which inference times lie outside the card's fitted ages, found before any training starts.
    Refused without ``extrapolate``; otherwise one note on stderr (the rows are marked '*') and the
    noise model's per-call warnings are silenced by the caller (``quiet_extrapolation``)."""
    outside = [model.outside_fitted_ages(model.inference_age_s(t)) for t in times_s]
    if any(outside):
        lo, hi = model.fitted_time_range()
        shown = ", ".join(f"{t:g}" for t, o in zip(times_s, outside, strict=True) if o)
        age = f" ({model.age_note()})" if model.age_note() else ""
        where = f"t = {shown} s{age} lies outside the ages this card was fitted on ({lo:g}–{hi:g} s)"
        if not extrapolate:
            raise DevmodelError(f"{where}; drop --no-extrapolate to extrapolate")
        click.echo(f"devmodel: note: {where}; {model.extrapolation()} (rows marked *)", err=True)
    return outside


@contextlib.contextmanager
def quiet_extrapolation():
    """The note of ``check_times`` replaces the noise model's per-call warnings."""
    import warnings

    from devmodel.model.noise import ExtrapolationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        yield


def load_network(name: str, epochs: int, seed: int, quiet: bool):
    """A digits network trained in floating point here, or a saved torch module (path.pt)."""
    import torch

    from devmodel.sim.data import digits
    from devmodel.sim.networks import NETWORKS, build, train_fp

    data = digits(seed=seed, image=True)
    if name in NETWORKS:
        net = train_fp(build(name, seed), data, epochs=epochs, seed=seed, progress=not quiet)
        return net, data
    path = Path(name)
    if not path.exists():
        raise DevmodelError(f"--network: {name!r} is neither {', '.join(NETWORKS)} nor a file")
    try:
        net = torch.load(path, weights_only=False)  # a whole module saved with torch.save
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the user's file
        raise DevmodelError(f"--network: {path} is not a saved torch module ({e})") from None
    if not isinstance(net, torch.nn.Module):
        raise DevmodelError(f"--network: {path} holds a {type(net).__name__}, not a torch module")
    return net.eval(), data


def fault_options(command):
    """``--faults`` and ``--retries`` (visa:// chips), shared by characterize and deploy."""
    command = click.option("--retries", type=click.IntRange(0, 100), default=None,
                           help="Attempts after a failed instrument command (visa:// chips) "
                           "[station file, or 0].")(command)
    return click.option("--faults", default=None,
                        help="Rehearse instrument faults on a visa:// chip, e.g. timeout=0.01,drop=0.005,"
                        "garble=0.002,short=0.002,slow=0.01,seed=1 (fractions of commands).")(command)


def report_faults(faults: dict) -> None:
    """Faults an instrument met and recovered from: one line on stderr."""
    if not faults:
        return
    injected = faults.get("faults_injected") or {}
    retries = faults.get("instrument_retries", 0)
    if retries or injected:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(injected.items())) or "none injected"
        click.echo(f"instrument: {retries} operations retried after faults ({kinds}); "
                   f"{faults.get('instrument_reconnects', 0)} reconnects; "
                   f"{faults.get('instrument_recovered', 0)} commands found by the chip clock to have "
                   f"run although their answer was lost", err=True)


def with_visa_options(url: str, faults: str | None, retries: int | None) -> str:
    """``--faults``/``--retries`` travel in a visa:// URL's options (so a resume repeats them)."""
    if faults is None and retries is None:
        return url
    if not url.lower().startswith("visa:"):
        raise DevmodelError("--faults and --retries apply to visa:// chips (start `devmodel serve-chip` "
                            "to rehearse faults with a simulated chip)")
    from urllib.parse import urlencode

    opts = {k: v for k, v in (("faults", faults), ("retries", retries)) if v is not None}
    return url + ("&" if "?" in url else "?") + urlencode(opts)


def verify_settings(items: tuple[str, ...], technology_name: str, info, station: str | None = None):
    """The technology's program-and-verify configuration with the station file's ``verify:`` and then
    the ``--verify FIELD=VALUE`` items applied, checked against its declared constraints and the
    chip's limits before anything is written or sent (docs/instruments.md)."""
    from dataclasses import fields

    from devmodel.procedures.program_verify import check_limits, verify_parts

    cls, _ = verify_parts(technology_name)
    values: dict = {}
    if station is not None:
        from instruments.station import load_station

        known = {f.name for f in fields(cls)}
        for key, value in load_station(station).verify.items():
            if key not in known:
                raise DevmodelError(f"station file {station}: verify.{key}: {technology_name} program-and-"
                                    f"verify has no such setting; known: {', '.join(sorted(known))}")
            values[key] = value
    values.update(typed_values("--verify", key_values("--verify", items), cls()))
    cfg = cls(**values)
    cfg.validate()
    check_limits(cfg, info, [])
    return cfg


def continue_on_recorded_chip(path, chip_url: str | None, station: str | None, bars, resume,
                              adapt=lambda url: url):
    """``--resume``: open the chip the file records (``--chip`` when given, ``adapt``-ed) and continue
    the file with ``resume(path, chip)``; the progress bars and the chip are closed either way."""
    from devmodel.chips import open_chip
    from devmodel.procedures.session import recorded_chip

    url, seed = recorded_chip(path)
    url = chip_url if explicit("chip_url") else url
    if not url:
        raise DevmodelError(f"{path} records no chip URL; name the chip with --chip")
    chip = open_chip(adapt(url), seed, station)
    try:
        return resume(path, chip)
    finally:
        bars.close()
        chip.close()
