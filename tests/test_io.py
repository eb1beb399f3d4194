"""Atomic output helpers: a reader sees the old state or the complete new one, never a mixture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from microneedling import io as mio
from microneedling.errors import MicroneedlingError
from microneedling.io import (
    RUN_MARKER,
    OutputExistsError,
    OutputNotWritableError,
    atomic_directory,
    atomic_path,
    check_writable,
    normalize_target,
    output_kind,
    read_marker,
    remove_stale_temporaries,
    write_bytes_atomic,
    write_csv_atomic,
    write_text_atomic,
)
from tests.snippets import run_python


class Boom(Exception):
    pass


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def _earlier_run(target: Path, kind: str = "simulate") -> None:
    """An earlier run of ``kind`` in ``target``: keep.txt = "precious" and the package marker."""
    with atomic_directory(target, kind=kind) as tmp:
        (tmp / "keep.txt").write_text("precious")


def _dead_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- atomic_path
def test_atomic_path_writes_in_same_directory_then_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp != target and not tmp.exists()
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible until the block ends
    assert target.read_text() == "new"
    assert _listing(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_atomic_path_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path, exc: type) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(exc), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise exc()
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["out.txt"]


def test_atomic_path_failure_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "new.bin"
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        raise Boom
    assert not target.exists()
    assert _listing(target.parent) == []


def test_atomic_path_refuses_when_nothing_was_written(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    with pytest.raises(FileNotFoundError), atomic_path(target):
        pass
    assert not target.exists()


def test_write_text_bytes_csv_round_trip(tmp_path: Path) -> None:
    p = write_text_atomic("a\nb – µ\n", tmp_path / "t.txt")
    assert p.read_bytes() == "a\nb – µ\n".encode()
    assert write_bytes_atomic(b"\x00\x01", tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    df = pd.DataFrame({"site": ["cheek", "nose"], "value": [1.5, float("nan")]})
    c = write_csv_atomic(df, tmp_path / "d.csv")
    assert c.read_text().splitlines()[0] == "site,value"  # no index column
    back = pd.read_csv(c)
    pd.testing.assert_frame_equal(back, df)
    assert _listing(tmp_path) == ["b.bin", "d.csv", "t.txt"]


def test_write_csv_atomic_failure_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "d.csv"
    target.write_text("old\n")

    class Bad:
        def to_csv(self, path: Path, **kw: object) -> None:
            Path(path).write_text("partial")
            raise Boom

    with pytest.raises(Boom):
        write_csv_atomic(Bad(), target)  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert _listing(tmp_path) == ["d.csv"]


# ------------------------------------------------------------------------ atomic_directory
def test_atomic_directory_creates_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with atomic_directory(target) as tmp:
        assert tmp.is_dir() and tmp.parent == tmp_path and tmp != target
        (tmp / "a.txt").write_text("a")
        (tmp / "figs").mkdir()
        (tmp / "figs" / "f.png").write_bytes(b"png")
        assert not target.exists()  # nothing visible while writing
    assert _listing(target) == [RUN_MARKER, "a.txt", "figs"]
    assert read_marker(target) == "output"  # no kind named
    assert (target / "figs" / "f.png").read_bytes() == b"png"
    assert _listing(tmp_path) == ["run"]


def test_atomic_directory_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "run") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0o700


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_atomic_directory_failure_mid_write_leaves_nothing(tmp_path: Path, exc: type) -> None:
    target = tmp_path / "run"
    with pytest.raises(exc), atomic_directory(target) as tmp:
        (tmp / "result.nc").write_text("half")
        raise exc()
    assert not target.exists()
    assert _listing(tmp_path) == []


def test_atomic_directory_refuses_existing_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    entered = False
    with pytest.raises(OutputExistsError, match="already exists") as info:
        with atomic_directory(target):
            entered = True
    assert not entered  # refused before any work was done
    assert isinstance(info.value, MicroneedlingError)
    assert _listing(target) == ["keep.txt"]
    assert _listing(tmp_path) == ["run"]


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_atomic_directory_failure_leaves_existing_dir_untouched(tmp_path: Path, exc: type) -> None:
    target = tmp_path / "run"
    _earlier_run(target)
    with pytest.raises(exc), atomic_directory(target, overwrite=True, kind="simulate") as tmp:
        (tmp / "new.txt").write_text("new")
        raise exc()
    assert _listing(target) == [RUN_MARKER, "keep.txt"]
    assert (target / "keep.txt").read_text() == "precious"
    assert _listing(tmp_path) == ["run"]


def test_atomic_directory_overwrite_replaces_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with atomic_directory(target, kind="trial") as tmp:
        (tmp / "old_only.txt").write_text("old")
        (tmp / "shared.txt").write_text("old")
    with atomic_directory(target, overwrite=True, kind="trial") as tmp:
        (tmp / "shared.txt").write_text("new")
        assert (target / "old_only.txt").exists()  # old run intact while writing
    assert _listing(target) == [RUN_MARKER, "shared.txt"]  # no mixture of old and new files
    assert (target / "shared.txt").read_text() == "new"
    assert _listing(tmp_path) == ["run"]  # the renamed-aside old directory is gone


def test_atomic_directory_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.write_text("a file, not a run")
    with pytest.raises(OutputExistsError, match="not a directory"):
        with atomic_directory(target, overwrite=True):
            pass
    assert target.read_text() == "a file, not a run"
    assert _listing(tmp_path) == ["run"]


def test_atomic_directory_target_appearing_while_writing_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with pytest.raises(OutputExistsError):
        with atomic_directory(target) as tmp:
            (tmp / "new.txt").write_text("new")
            target.mkdir()  # someone else created it meanwhile
            (target / "theirs.txt").write_text("theirs")
    assert _listing(target) == ["theirs.txt"]
    assert _listing(tmp_path) == ["run"]


def test_atomic_directory_failed_swap_restores_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run"
    _earlier_run(target)
    real_rename = os.rename
    calls: list[tuple[str, str]] = []

    def flaky_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the move of the new directory into place
            raise OSError("disk on fire")
        real_rename(src, dst)

    monkeypatch.setattr(mio.os, "rename", flaky_rename)
    with pytest.raises(OSError, match="disk on fire"):
        with atomic_directory(target, overwrite=True, kind="simulate") as tmp:
            (tmp / "new.txt").write_text("new")
    monkeypatch.undo()
    assert len(calls) == 3  # aside, (failed) into place, back
    assert _listing(target) == [RUN_MARKER, "keep.txt"]
    assert _listing(tmp_path) == ["run"]


# --------------------------------------------------------- the one guard: the run marker
def test_overwrite_never_replaces_a_directory_of_the_users_own_files(tmp_path: Path) -> None:
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "chapter1.tex").write_text("precious")
    for kind in ("simulate", "trial", "validate", "calibrate", None):
        entered = False
        with pytest.raises(OutputExistsError, match="not written by microneedling"):
            with atomic_directory(target, overwrite=True, kind=kind):
                entered = True
        assert not entered
    assert _listing(target) == ["chapter1.tex"]


def test_overwrite_replaces_only_a_run_of_the_same_kind(tmp_path: Path) -> None:
    target = tmp_path / "run"
    _earlier_run(target, kind="trial")
    with pytest.raises(OutputExistsError, match="holds a microneedling trial run, not a simulate"):
        with atomic_directory(target, overwrite=True, kind="simulate"):
            pass
    assert (target / "keep.txt").read_text() == "precious"
    with output_kind("trial"), atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")  # the kind comes from the command's context
    assert _listing(target) == [RUN_MARKER, "new.txt"]
    assert read_marker(target) == "trial"


def test_overwrite_replaces_an_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    with atomic_directory(target, overwrite=True, kind="plan") as tmp:
        (tmp / "a").write_text("a")
    assert read_marker(target) == "plan"


def test_a_removed_or_foreign_marker_protects_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "run"
    _earlier_run(target)
    (target / RUN_MARKER).write_text("not toml [")
    with pytest.raises(OutputExistsError, match=r"no \.microneedling-run marker"):
        with atomic_directory(target, overwrite=True, kind="simulate"):
            pass
    assert read_marker(target) is None


# ------------------------------------------------------------------ paths and parents
def test_dot_dot_in_the_target_creates_no_stray_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_target("a/../b/../c") == tmp_path / "c"
    with atomic_directory("a/../b/../c") as tmp:
        (tmp / "x").write_text("x")
    assert _listing(tmp_path) == ["c"]  # no a, no b


def test_parents_created_for_a_failed_directory_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "x" / "y" / "run"
    with pytest.raises(Boom), atomic_directory(target) as tmp:
        (tmp / "half").write_text("half")
        raise Boom
    assert _listing(tmp_path) == []


def test_check_writable_refuses_before_anything_is_written(tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(OutputNotWritableError, match="is not a directory"):
        check_writable(a_file / "run")
    with pytest.raises(OutputNotWritableError, match="cannot write /proc/"):
        check_writable(Path("/proc/microneedling-test/run"))
    assert check_writable(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert _listing(tmp_path) == ["file.txt"]  # the probe left nothing


# ------------------------------------------------------- temporaries of killed writers
def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getppid()
    stale_dir = tmp_path / f".run.tmp-{dead}-0123456789ab"
    stale_dir.mkdir()
    (stale_dir / "result.nc").write_bytes(b"half")
    stale_file = tmp_path / f".run.tmp-{dead}-ba9876543210"
    stale_file.write_bytes(b"half")
    other = tmp_path / f".other.tmp-{dead}-0123456789ab"
    other.write_bytes(b"half")
    busy = tmp_path / f".run.tmp-{live}-0123456789ab"
    busy.mkdir()
    lookalike = tmp_path / ".run.tmp-notapid"
    lookalike.write_text("user file")
    assert remove_stale_temporaries(tmp_path, "run") == 2
    assert _listing(tmp_path) == sorted([other.name, busy.name, lookalike.name])
    assert remove_stale_temporaries(tmp_path) == 1  # any name: .other goes too
    assert _listing(tmp_path) == sorted([busy.name, lookalike.name])


def test_next_write_cleans_what_a_killed_writer_left(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / f".run.tmp-{dead}-0123456789ab").mkdir()
    (tmp_path / f".out.txt.tmp-{dead}-0123456789ab").write_text("half")
    with atomic_directory(tmp_path / "run") as tmp:
        (tmp / "a").write_text("a")
    write_text_atomic("whole", tmp_path / "out.txt")
    assert _listing(tmp_path) == ["out.txt", "run"]


def test_a_run_renamed_aside_by_a_killed_writer_is_put_back(tmp_path: Path) -> None:
    """Killed between moving the old run aside and the new one in: the old run comes back."""
    dead = _dead_pid()
    aside = tmp_path / f".run.old-{dead}-0123456789ab"
    _earlier_run(aside)
    assert remove_stale_temporaries(tmp_path, "run") == 1
    assert _listing(tmp_path) == ["run"]
    assert (tmp_path / "run" / "keep.txt").read_text() == "precious"


def test_a_signal_right_after_the_temporary_is_made_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst moment for SIGTERM: the temporary directory exists and the writer has not yet
    seen its name (found by the kill test under load). Nothing may be left behind."""
    real_mkdir = Path.mkdir

    def mkdir_then_interrupted(self: Path, *args: Any, **kwargs: Any) -> None:
        real_mkdir(self, *args, **kwargs)
        if self.name.startswith(".out.tmp-"):
            raise KeyboardInterrupt  # what the SIGTERM handler raises (Terminated)

    monkeypatch.setattr(Path, "mkdir", mkdir_then_interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "out"):
        pass  # pragma: no cover - never reached
    assert sorted(p.name for p in tmp_path.iterdir()) == []


_PROBE = """
import sys
import xarray as xr
from xarray.backends import locks
from microneedling.io import write_netcdf_atomic
ds = xr.Dataset({"a": ("x", [1.0, 2.0])})
write_netcdf_atomic(ds, sys.argv[1])
wrapped = locks.get_dask_scheduler
assert getattr(wrapped, "_microneedling", False)
print("quiet", wrapped(), "distributed" in sys.modules)
import dask
with dask.config.set(scheduler="processes"):
    print("configured", wrapped(), "distributed" in sys.modules)
from distributed import Client
with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None):
    print("client", wrapped())
    write_netcdf_atomic(ds.chunk({"x": 1}), sys.argv[1])
print("read", xr.open_dataset(sys.argv[1])["a"].values.tolist())
"""


@pytest.mark.slow
def test_netcdf_writer_asks_for_the_scheduler_without_importing_distributed(
    tmp_path: Path,
) -> None:
    """xarray's scheduler probe answers as xarray would: "threaded" with no scheduler (without
    importing distributed), the configured one when dask is configured, "distributed" with a
    Client (a chunked dataset is then written through it)."""
    assert run_python(_PROBE, str(tmp_path / "a.nc")) == [
        "quiet threaded False",
        "configured multiprocessing True",  # configured: xarray's own probe
        "client distributed",
        "read [1.0, 2.0]",
    ]


_UNCHUNKED_WRITE = """
import sys
from microneedling.engine.quiet_xarray import import_xarray
from microneedling.io import write_netcdf_atomic
xr = import_xarray()
ds = xr.Dataset({"a": ("x", [1.0, 2.0])}, attrs={"seed": 7})
write_netcdf_atomic(ds, sys.argv[1])
print("written", "dask" in sys.modules, "distributed" in sys.modules)
from xarray.backends import locks
print("outside a write", locks.get_dask_scheduler(), "dask" in sys.modules)
import dask.array as da
write_netcdf_atomic(ds.chunk({"x": 1}), sys.argv[2])
for path in sys.argv[1:]:
    with xr.open_dataset(path) as back:
        print("read", back["a"].values.tolist(), back.attrs["seed"], back.identical(ds))
"""


@pytest.mark.slow
def test_an_unchunked_dataset_is_written_without_importing_dask(tmp_path: Path) -> None:
    """While nothing has imported dask, a dataset without chunked variables is written without
    importing it (the scheduler probe answers "threaded"); outside such a write the probe is
    xarray's, and a chunked dataset is written through dask, to the same content."""
    assert run_python(_UNCHUNKED_WRITE, str(tmp_path / "a.nc"), str(tmp_path / "b.nc")) == [
        "written False False",
        "outside a write threaded True",
        "read [1.0, 2.0] 7 True",
        "read [1.0, 2.0] 7 True",
    ]


# ------------------------------------------------------------------ parsed package data (cache)
def test_package_data_is_parsed_once_then_read_from_a_cache_keyed_by_its_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_toml of a package data file stores the parsed file under the SHA-256 of its bytes;
    the next read returns the same values (types, key order, NaN) from there; a damaged or
    truncated entry is ignored and written again; a user's file is never stored."""
    import math
    import tomllib

    monkeypatch.setenv("MICRONEEDLING_CACHE_DIR", str(tmp_path / "cache"))
    cache = mio.cache_dir("toml")
    assert cache == tmp_path / "cache" / "toml"
    source = mio.data_path("parameters", "observe.toml")
    parsed = tomllib.loads(source.read_text(encoding="utf-8"))

    def same(x: Any, y: Any) -> bool:
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            return list(x) == list(y) and all(same(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y, strict=True))
        if isinstance(x, float) and math.isnan(x):
            return math.isnan(y)
        return bool(x == y)

    assert same(mio.read_toml(source), parsed)
    (entry,) = cache.glob("*.marshal")
    assert same(mio.read_toml(source), parsed)  # from the entry
    # the entry is what is returned: a forged entry (with a sound digest) is read as it is
    import hashlib
    import marshal

    body = marshal.dumps({"forged": 1.0})
    entry.write_bytes(hashlib.sha256(body).digest() + body)
    assert mio.read_toml(source) == {"forged": 1.0}
    for damaged in (entry.read_bytes()[:-3], b"\0" * 32 + body, b""):
        entry.write_bytes(damaged)
        assert same(mio.read_toml(source), parsed)  # parsed again ...
        assert same(marshal.loads(entry.read_bytes()[32:]), parsed)  # ... and stored again
    user = tmp_path / "course.toml"
    user.write_text('name = "mine"\n', encoding="utf-8")
    assert mio.read_toml(user) == {"name": "mine"}
    assert len(list(cache.glob("*.marshal"))) == 1  # the user's file was not stored


def test_the_toml_cache_is_optional_and_skips_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MICRONEEDLING_CACHE_DIR set but empty: no cache; a document with a date is parsed each
    time (marshal cannot hold it); an unwritable cache is no error."""
    monkeypatch.setenv("MICRONEEDLING_CACHE_DIR", "")
    assert mio.cache_dir("toml") is None
    source = mio.data_path("parameters", "skin.toml")
    assert mio.read_toml(source) == mio.loads_toml(source.read_text(encoding="utf-8"))
    monkeypatch.setenv("MICRONEEDLING_CACHE_DIR", str(tmp_path))
    dated = b"when = 2026-12-06\n"
    got = mio._cached_toml(dated, dated.decode(), "dated.toml")
    assert str(got["when"]) == "2026-12-06" and not list(tmp_path.rglob("*.marshal"))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("MICRONEEDLING_CACHE_DIR", str(blocker))
    assert mio.read_toml(source) == mio.loads_toml(source.read_text(encoding="utf-8"))
