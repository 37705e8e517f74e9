"""Exceptions raised at the toolkit's boundaries.

Every error a user can provoke (bad arguments, files, instrument replies, limits) is a
``DevmodelError`` whose message is one sentence naming the file, field or command; the CLI prints it
and exits non-zero without a traceback.
"""

import contextlib


class DevmodelError(Exception):
    """A user-facing error: the message is the whole story."""


class LimitError(DevmodelError):
    """A request that would exceed a declared safety limit of the chip; nothing was sent."""


class SessionFileError(DevmodelError):
    """A session file that is missing, foreign, truncated or from an unknown schema version."""


class ChipURLError(DevmodelError):
    """A chip URL that names no known backend or carries invalid options."""


class ConfigError(DevmodelError):
    """A configuration value outside its declared constraint (see :mod:`devmodel.validation`)."""


class UnknownNameError(DevmodelError):
    """A name that no registry holds (a technology, chip scheme, export target, training method)."""


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 to /dev/null for the block: C libraries (HDF5 freeing the ids of a file it
    could not close on a full disk) print there directly, after or before the one sentence."""
    import os
    import sys

    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _release(e: BaseException) -> None:
    """Free the failed work's objects now, quietly: its traceback holds them."""
    import gc

    with quiet_stderr():
        e.__traceback__ = None
        e.__context__ = None
        gc.collect()


#: Packages some commands need and an instruments-only install may lack (import name → pip name).
_OPTIONAL_PACKAGES = {"torch": "torch", "xarray": "xarray", "h5netcdf": "h5netcdf", "sklearn": "scikit-learn",
                      "matplotlib": "matplotlib", "lmfit": "lmfit"}


def friendly(os_error: str | None = None):
    """Decorator for CLI commands: a DevmodelError becomes one sentence on stderr and exit status
    2 (never a traceback), Ctrl-C exit status 130; with ``os_error``, an OSError too (prefixed by
    it, e.g. "serve-chip could not listen")."""
    import functools
    import sys

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            import click

            try:
                return fn(*args, **kwargs)
            except DevmodelError as e:
                message = f"devmodel: error: {e}"
                _release(e)
            except OSError as e:
                if os_error is None:
                    raise
                message = f"devmodel: error: {os_error}: {e.strerror or e}"
                _release(e)
            except ModuleNotFoundError as e:
                if (e.name or "").split(".")[0] not in _OPTIONAL_PACKAGES:
                    raise
                pkg = _OPTIONAL_PACKAGES[e.name.split(".")[0]]
                message = (f"devmodel: error: this command needs {pkg}, which is not installed here "
                           f"(pip install {pkg}; an instruments-only install runs the lab commands)")
            except KeyboardInterrupt:
                click.echo("devmodel: interrupted", err=True)
                sys.exit(130)
            click.echo(message, err=True)
            sys.exit(2)

        return wrapper

    return decorate
