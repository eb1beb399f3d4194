"""Files: where the package data lives, the one TOML reader and writer, and atomic output.

Atomic output: a reader sees either the old file/directory, or the complete new one. Every writer
of this package goes through these helpers, so an interrupted run (an exception, a full disk,
Ctrl-C) never leaves a half-written ``result.nc`` or run directory behind.

Package data (parameter files, references, literature, molecules, populations, calibrations) is
found through :func:`data_path` only; TOML is read with :func:`read_toml` / :func:`loads_toml` and
written with :func:`dumps_toml` (``tomli-w``).

>>> from microneedling.io import atomic_directory, write_text_atomic
>>> with atomic_directory("runs/acne") as tmp:          # doctest: +SKIP
...     write_text_atomic("hello", tmp / "note.txt")
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tomllib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from microneedling.errors import InputError, MicroneedlingError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "OutputExistsError",
    "atomic_directory",
    "atomic_path",
    "data_path",
    "dumps_toml",
    "loads_toml",
    "read_toml",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_text_atomic",
]


class OutputExistsError(MicroneedlingError, FileExistsError):
    """The output path exists and replacing it was not allowed."""


# ----------------------------------------------------------------------------- package data
def data_path(*parts: str) -> Path:
    """Path of the package data ``src/microneedling/data/<parts>`` (the one place that knows)."""
    return Path(str(resources.files("microneedling"))).joinpath("data", *parts)


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
    return loads_toml(text, str(p))


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
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {target}")
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _make_dir(path: Path) -> Path:
    """Create a fresh hidden sibling directory of ``path`` (mode from the umask, unlike mkdtemp)."""
    for _ in range(100):
        tmp = _sibling(path, "tmp")
        try:
            tmp.mkdir()
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        return tmp
    raise FileExistsError(
        f"could not create a temporary directory next to {path}"
    )  # pragma: no cover


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputExistsError(f"{path} exists and is not a directory; refusing to replace it")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists (use overwrite to replace it)")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; on success move it into place.

    If ``path`` exists, :class:`OutputExistsError` is raised (before anything is written) unless
    ``overwrite`` is true; then the old directory is renamed aside, the new one renamed into place,
    and only then is the old one deleted, so ``path`` never holds a mixture of old and new files.
    Only an existing *directory* is ever replaced, never a file or a symbolic link.

    On an exception (including ``KeyboardInterrupt``) the temporary directory is removed, ``path``
    is left untouched and the exception propagates.
    """
    target = Path(path)
    _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_dir(target)
    try:
        yield tmp
        _commit(tmp, target, overwrite)
    except BaseException:
        _remove(tmp)
        raise


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished directory ``tmp`` to ``target`` (see :func:`atomic_directory`)."""
    _check_target(target, overwrite)  # it may have appeared while we were writing
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
