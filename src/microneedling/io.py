"""Files: where the package data lives, the one TOML reader and writer, and atomic output.

Atomic output: a reader sees either the old file/directory, or the complete new one. Every writer
of this package goes through these helpers, so an interrupted run (an exception, a full disk,
Ctrl-C, SIGTERM) never leaves a half-written ``result.nc`` or run directory behind. A process killed
outright (SIGKILL, power loss) can leave its hidden temporary (``.NAME.tmp-PID-…``) next to the
target; the next write of that target removes it once its process is gone
(:func:`remove_stale_temporaries`).

Output directories carry a hidden marker file, :data:`RUN_MARKER`, naming the kind of run that
wrote them (``simulate``, ``trial``, ...). With ``overwrite``, :func:`atomic_directory` replaces
only an empty directory or one whose marker names the same kind: never a directory of the user's
own files (:func:`check_replaceable`, the one guard of every command that writes).

Package data (parameter files, references, literature, molecules, populations, calibrations) is
found through :func:`data_path` only; TOML is read with :func:`read_toml` / :func:`loads_toml` and
written with :func:`dumps_toml` (``tomli-w``). The parsed contents of the package's own data files
are kept in a cache keyed by their bytes (:func:`cache_dir`; ~40 ms of every command's start-up):
a user's files are always parsed, never copied there.

>>> from microneedling.io import atomic_directory, write_text_atomic
>>> with atomic_directory("runs/acne") as tmp:          # doctest: +SKIP
...     write_text_atomic("hello", tmp / "note.txt")
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import marshal
import os
import re
import secrets
import shutil
import sys
import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from microneedling import interrupts
from microneedling.about import __version__
from microneedling.errors import InputError, MicroneedlingError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr

__all__ = [
    "RUN_MARKER",
    "OutputExistsError",
    "OutputNotWritableError",
    "atomic_directory",
    "atomic_path",
    "cache_dir",
    "check_replaceable",
    "check_writable",
    "data_path",
    "dumps_toml",
    "loads_toml",
    "normalize_target",
    "output_kind",
    "read_marker",
    "read_toml",
    "remove_stale_temporaries",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_netcdf_atomic",
    "write_text_atomic",
]

#: hidden file in every output directory this package writes: ``kind = "<kind of run>"``
RUN_MARKER = ".microneedling-run"
#: the kind written when a writer names none (matches any kind when replacing)
ANY_KIND = "output"

_KIND: contextvars.ContextVar[str | None] = contextvars.ContextVar("output_kind", default=None)

#: hidden temporaries of this module: ``.NAME.tmp-PID-HEX`` / ``.NAME.old-PID-HEX``
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<tag>tmp|old|probe)-(?P<pid>\d+)-[0-9a-f]{12}$")


class OutputExistsError(MicroneedlingError, FileExistsError):
    """The output path exists and replacing it was not allowed."""


class OutputNotWritableError(MicroneedlingError, PermissionError):
    """The output path cannot be written (read-only file system, no permission, not a directory)."""


# ----------------------------------------------------------------------------- package data
def data_path(*parts: str) -> Path:
    """Path of the package data ``src/microneedling/data/<parts>`` (the one place that knows)."""
    return _package_dir().joinpath("data", *parts)


@functools.lru_cache(maxsize=1)
def _package_dir() -> Path:
    """The installed package's directory, found once (``importlib.resources``: ~16 us a call)."""
    return Path(str(resources.files("microneedling")))


# ------------------------------------------------------------------------------------ TOML
def loads_toml(text: str, source: str = "<text>") -> dict[str, Any]:
    """Parse TOML text; a syntax error is an :class:`InputError` naming ``source`` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(source, "TOML text", f"valid TOML ({exc})") from None


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file; a missing, unreadable or malformed file is an :class:`InputError` that names
    the path (never a traceback from the parser)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(str(p), "missing", "an existing TOML file") from None
    except IsADirectoryError:
        raise InputError(str(p), "a directory", "a TOML file") from None
    except OSError as exc:
        raise InputError(str(p), "unreadable", f"a readable file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(str(p), "binary content", "a UTF-8 text file") from None
    if p.is_absolute() and p.is_relative_to(_package_dir() / "data"):
        return _cached_toml(raw, text, str(p))
    return loads_toml(text, str(p))


# ------------------------------------------------------------------ parsed package data (cache)
#: what a cache entry's key covers besides the file's bytes: the parser (tomllib is the
#: interpreter's) and the entry format (marshal's version; this module's layout, ``v1``)
_CACHE_SALT = f"tomllib {sys.implementation.cache_tag} {sys.version} marshal {marshal.version} v1\n"


def cache_dir(kind: str) -> Path | None:
    """The user's cache of the package's own files, one folder per ``kind`` (not created here):
    ``MICRONEEDLING_CACHE_DIR/<kind>`` (the variable set but empty: no cache), else
    ``$XDG_CACHE_HOME/microneedling/<kind>`` (default ``~/.cache/microneedling/<kind>``); ``None``
    when no absolute directory is known. Everything there is derived from the package's files
    and checked against their contents when read, so removing it only costs time.

    ``toml``: parsed data files. An entry is named by the SHA-256 of the file's bytes and
    :data:`_CACHE_SALT`, so an edited or upgraded data file is parsed again; it holds ``marshal``
    data (plain values, never code that runs) behind its own SHA-256, so a truncated or damaged
    entry is ignored and written again. ``jinja2``: compiled report templates
    (:func:`microneedling.reports.page.environment`).
    """
    env = os.environ.get("MICRONEEDLING_CACHE_DIR")
    if env is not None:
        return Path(env, kind) if env else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "microneedling", kind) if os.path.isabs(base) else None


def _cached_toml(raw: bytes, text: str, source: str) -> dict[str, Any]:
    """``loads_toml(text, source)``, from the cache entry of ``raw`` when there is a sound one;
    otherwise parsed and stored (best effort: a cache that cannot be written is no error, and a
    document with dates or times, which marshal cannot hold, is not stored)."""
    directory = cache_dir("toml")
    if directory is None:
        return loads_toml(text, source)
    key = hashlib.sha256(_CACHE_SALT.encode() + raw).hexdigest()
    entry = directory / f"{key}.marshal"
    try:
        blob = entry.read_bytes()
    except OSError:
        pass
    else:
        digest, body = blob[:32], blob[32:]
        if hashlib.sha256(body).digest() == digest:
            with contextlib.suppress(EOFError, ValueError, TypeError):
                value = marshal.loads(body)
                if isinstance(value, dict):
                    return value
    value = loads_toml(text, source)
    try:
        body = marshal.dumps(value)
    except ValueError:  # a date or time
        return value
    tmp = directory / f".{key}.tmp-{os.getpid()}-{secrets.token_hex(6)}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(hashlib.sha256(body).digest() + body)
        os.replace(tmp, entry)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return value


def dumps_toml(table: Mapping[str, Any], header: str | None = None) -> str:
    """A mapping as TOML text (``tomli-w``), with an optional comment line at the top.

    Key/values come before sub-tables (TOML requires it); within a table a ``type`` key is written
    first (the course schema's discriminator reads best on top). Round-trips through
    :func:`loads_toml`.
    """
    text = tomli_w.dumps(_type_first(table))
    return (f"# {header}\n" if header else "") + text


def _type_first(value: Any) -> Any:
    if isinstance(value, Mapping):
        keys = sorted(value, key=lambda k: k != "type")  # stable: only moves "type" forward
        return {k: _type_first(value[k]) for k in keys}
    if isinstance(value, list | tuple):
        return [_type_first(v) for v in value]
    return value


def _sibling(path: Path, tag: str) -> Path:
    """A hidden, unique, not-yet-existing name next to ``path`` (same file system)."""
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(6)}")


def normalize_target(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``..``, ``.`` and symbolic links of its parent resolved, its last part kept.

    ``a/../b/../c`` is ``<cwd>/c``: creating it must not create ``a`` or ``b`` on the way. The last
    part is kept as written (a symbolic link there is refused by the writers, never followed).
    """
    p = Path(path)
    if p.name in ("", ".", ".."):
        return Path(os.path.realpath(p))
    return Path(os.path.realpath(p.parent)) / p.name


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike[str], name: str | None = None) -> int:
    """Remove the hidden temporaries of writers that were killed (their process is gone).

    Only names this module makes are touched (``.NAME.tmp-PID-HEX``, ``.NAME.old-PID-HEX``), only
    of ``name`` when given. An ``.old`` directory (a previous run renamed aside while its
    replacement was moved in) is put back when the target is missing, else removed. Returns how many
    entries were removed or restored. Never raises.
    """
    d = Path(directory)
    count = 0
    try:
        entries = list(d.iterdir())
    except OSError:
        return 0
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or (name is not None and m.group("name") != name):
            continue
        if _alive(int(m.group("pid"))):
            continue
        target = d / m.group("name")
        if m.group("tag") == "old" and not (target.exists() or target.is_symlink()):
            with contextlib.suppress(OSError):
                os.rename(entry, target)
                count += 1
                continue
        _remove(entry)
        count += 1
    return count


def _nearest_existing(path: Path) -> Path:
    p = path
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        p = p.parent
    return p


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Refuse early an output ``path`` whose directory cannot be written; returns the normalised
    path. The nearest existing ancestor must be a directory in which this process can create an
    entry: a real probe (a hidden directory made and removed at once), because permission bits do
    not tell about read-only mounts, immutable directories or ``/proc``.
    """
    target = normalize_target(path)
    parent = _nearest_existing(target.parent)
    if not parent.is_dir():
        raise OutputNotWritableError(f"cannot write {target}: {parent} is not a directory")
    probe = parent / f".{target.name}.probe-{os.getpid()}-{secrets.token_hex(6)}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot write {target}: {parent}: {exc.strerror or exc}"
        ) from None
    with contextlib.suppress(OSError):
        probe.rmdir()
    return target


def read_marker(directory: str | os.PathLike[str]) -> str | None:
    """The kind named by ``directory``'s :data:`RUN_MARKER`, or ``None`` when there is none (or it
    is not this package's)."""
    try:
        raw = (Path(directory) / RUN_MARKER).read_text(encoding="utf-8")
        kind = tomllib.loads(raw).get("kind")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return kind if isinstance(kind, str) and kind else None


def _write_marker(directory: Path, kind: str) -> None:
    text = (
        "# Written by microneedling: this directory holds one of its runs, which it may replace\n"
        "# with --overwrite. Remove this file to protect the directory from that.\n"
        + tomli_w.dumps({"kind": kind, "version": __version__})
    )
    (directory / RUN_MARKER).write_text(text, encoding="utf-8")


@contextlib.contextmanager
def output_kind(kind: str) -> Iterator[None]:
    """Within the block, :func:`atomic_directory` calls that name no kind use ``kind`` (a command
    names the kind of run once for every writer it calls)."""
    token = _KIND.set(kind)
    try:
        yield
    finally:
        _KIND.reset(token)


def _kind(kind: str | None) -> str:
    return kind or _KIND.get() or ANY_KIND


def check_replaceable(
    path: str | os.PathLike[str], overwrite: bool, kind: str | None = None
) -> None:
    """Refuse (:class:`OutputExistsError`) to write the directory ``path`` unless it is absent, or
    ``overwrite`` is true and it is empty or marked by this package as a run of the same ``kind``.

    Never a file, a symbolic link, or a directory holding anything else: a user's own files are
    never replaced.
    """
    target = Path(path)
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() or not target.is_dir():
        raise OutputExistsError(f"{target} exists and is not a directory; choose another --out")
    if not overwrite:
        raise OutputExistsError(f"{target} already exists; use --overwrite to replace it")
    try:
        empty = not any(target.iterdir())
    except OSError as exc:
        raise OutputNotWritableError(f"cannot read {target}: {exc.strerror or exc}") from None
    if empty:
        return
    want = _kind(kind)
    found = read_marker(target)
    if found is None:
        raise OutputExistsError(
            f"refusing to replace {target}: it is not empty and has no {RUN_MARKER} marker, so it "
            "was not written by microneedling (or the marker was removed); choose another --out"
        )
    if ANY_KIND not in (want, found) and found != want:
        raise OutputExistsError(
            f"refusing to replace {target}: it holds a microneedling {found} run, not a {want} "
            "run; choose another --out"
        )


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk (best effort: some platforms refuse fsync on a read-only fd)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    """Remove a file or directory tree if it exists; never raises."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:  # pragma: no cover - best-effort cleanup
        pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically.

    The temporary path does not exist yet (the writer creates it, so the usual permissions apply).
    On an exception (including ``KeyboardInterrupt``) the temporary file is removed and the
    exception propagates; ``path`` is left as it was.
    """
    target = normalize_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, target.name)
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {target}")
        _fsync_file(tmp)
        interrupts.raise_pending()  # an interrupt that a callback swallowed: publish nothing
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _make_parents(directory: Path) -> list[Path]:
    """``mkdir -p directory``; returns the directories it created, outermost first."""
    missing: list[Path] = []
    p = directory
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        missing.append(p)
        p = p.parent
    directory.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _remove_empty(created: list[Path]) -> None:
    """Remove the directories :func:`_make_parents` created, innermost first, if still empty."""
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def atomic_directory(
    path: str | os.PathLike[str], overwrite: bool = False, kind: str | None = None
) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; on success move it into place.

    The directory gets the marker :data:`RUN_MARKER` naming ``kind`` (default: the kind set by
    :func:`output_kind`, else ``"output"``). If ``path`` exists, :class:`OutputExistsError` is
    raised (before anything is written) unless ``overwrite`` is true and the directory is empty or
    carries this package's marker for the same kind (:func:`check_replaceable`); then the old
    directory is renamed aside, the new one renamed into place, and only then is the old one
    deleted, so ``path`` never holds a mixture of old and new files. A file, a symbolic link or a
    directory of other files is never replaced.

    On an exception (including ``KeyboardInterrupt``) the temporary directory and any parent
    directory created for it are removed, ``path`` is left untouched and the exception propagates.
    Temporaries left by killed writers of the same target are removed first.
    """
    target = normalize_target(path)
    run_kind = _kind(kind)
    check_replaceable(target, overwrite, run_kind)
    created = _make_parents(target.parent)
    remove_stale_temporaries(target.parent, target.name)
    tmp: Path | None = None
    try:
        # name the temporary before it exists, so a signal arriving between its creation and the
        # next line cannot leave it behind (the cleanup below removes it if it exists)
        while tmp is None:
            tmp = _sibling(target, "tmp")
            try:
                tmp.mkdir()
            except FileExistsError:  # pragma: no cover - 48 random bits: someone else's
                tmp = None
        _write_marker(tmp, run_kind)
        yield tmp
        _commit(tmp, target, overwrite, run_kind)
    except BaseException:
        if tmp is not None:
            _remove(tmp)
        _remove_empty(created)
        raise


def _commit(tmp: Path, target: Path, overwrite: bool, kind: str) -> None:
    """Move the finished directory ``tmp`` to ``target`` (see :func:`atomic_directory`)."""
    interrupts.raise_pending()  # an interrupt that a callback swallowed: publish nothing
    check_replaceable(target, overwrite, kind)  # it may have appeared while we were writing
    if not target.exists():
        os.rename(tmp, target)
        return
    old = _sibling(target, "old")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)  # put the previous run back
        raise
    _remove(old)


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target


def write_text_atomic(text: str, path: str | os.PathLike[str], encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``\\n`` line ends on every platform)."""
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "w", encoding=encoding, newline="\n") as fh:
        fh.write(text)
    return target


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike[str], index: bool = False) -> Path:
    """Write a DataFrame as CSV atomically (no index column by default)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=index, lineterminator="\n")
    return target


def write_netcdf_atomic(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write an ``xarray.Dataset`` as NetCDF-4 (netCDF4 engine) atomically.

    Before it writes, xarray asks dask which scheduler is active, and to recognise a distributed
    ``Client`` it imports ``distributed`` (0.15–0.25 s, most of a single course's start-up).
    A ``Client`` cannot exist while ``distributed`` has not been imported, so until it has been,
    :func:`_quiet_scheduler_probe` answers that question without importing it; once it has (a
    trial or a sensitivity run on Dask), xarray's own probe runs unchanged. Nor is ``dask``
    itself imported (0.08–0.1 s) to write a dataset none of whose variables is chunked while
    nothing else has imported it (see :func:`_quiet_scheduler_probe`).
    """
    _quiet_scheduler_probe()
    target = Path(path)
    token = _UNCHUNKED.set(all(v.chunks is None for v in ds.variables.values()))
    try:
        with atomic_path(target) as tmp:
            ds.to_netcdf(tmp, engine="netcdf4")
    finally:
        _UNCHUNKED.reset(token)
    return target


_UNCHUNKED: contextvars.ContextVar[bool] = contextvars.ContextVar("_UNCHUNKED", default=False)
"""Set by :func:`write_netcdf_atomic` while it writes a dataset without chunked variables."""


def _quiet_scheduler_probe() -> None:
    """Wrap xarray's ``get_dask_scheduler`` (once) so that it imports ``distributed`` only when
    something else already has (see :func:`write_netcdf_atomic`). The answers are xarray's: the
    wrapper repeats its probe minus the ``Client`` check, which cannot succeed then. If xarray
    moves the function, nothing is wrapped and the import simply happens (the import test of the
    single-course path says so).

    Without ``distributed`` imported, with no scheduler in dask's configuration and none passed,
    ``dask.base.get_scheduler`` finds nothing (its only other source is ``distributed``'s
    ``get_client``) and xarray's probe answers ``"threaded"``; the wrapper answers the same
    without the imports. When ``dask`` has not been imported either and
    :func:`write_netcdf_atomic` is writing a dataset with no chunked variable, the wrapper answers
    ``"threaded"`` without reading dask's configuration: then xarray uses the answer only for
    ``autoclose`` (false whatever it is when nothing is chunked) and to choose the kind of lock
    that serialises the writes of this one process to the file (a thread lock; a configured
    ``processes`` scheduler would give a process lock, which serialises them the same way).
    In every other case it calls xarray's probe."""
    try:
        from xarray.backends import locks, writers
    except ImportError:  # pragma: no cover - xarray without its backends
        return
    original = getattr(locks, "get_dask_scheduler", None)
    if original is None or getattr(original, "_microneedling", False):
        return

    def get_dask_scheduler(get: Any = None, collection: Any = None) -> str | None:
        if "distributed" in sys.modules:
            return original(get, collection)
        if get is None and collection is None and "dask" not in sys.modules and _UNCHUNKED.get():
            return "threaded"  # nothing to schedule, and no Client possible
        try:
            import dask
        except ImportError:  # pragma: no cover - xarray's own answer without dask
            return None
        if (
            get is not None
            or collection is not None
            or dask.config.get("scheduler", None)
            or dask.config.get("get", None)
        ):
            return original(get, collection)
        # no scheduler configured and no Client possible: dask.base.get_scheduler returns None,
        # which xarray calls "threaded"
        return "threaded"

    get_dask_scheduler._microneedling = True  # type: ignore[attr-defined]
    for module in (locks, writers):
        if getattr(module, "get_dask_scheduler", None) is original:
            module.get_dask_scheduler = get_dask_scheduler  # type: ignore[attr-defined]
