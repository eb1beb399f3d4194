"""Atomic output helpers: a reader sees the old state or the complete new one, never a mixture."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from microneedling import io as mio
from microneedling.errors import MicroneedlingError
from microneedling.io import (
    OutputExistsError,
    atomic_directory,
    atomic_path,
    write_bytes_atomic,
    write_csv_atomic,
    write_text_atomic,
)


class Boom(Exception):
    pass


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


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
    assert _listing(target) == ["a.txt", "figs"]
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
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(exc), atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise exc()
    assert _listing(target) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "precious"
    assert _listing(tmp_path) == ["run"]


def test_atomic_directory_overwrite_replaces_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "old_only.txt").write_text("old")
    (target / "shared.txt").write_text("old")
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "shared.txt").write_text("new")
        assert (target / "old_only.txt").exists()  # old run intact while writing
    assert _listing(target) == ["shared.txt"]  # no mixture of old and new files
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
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    real_rename = os.rename
    calls: list[tuple[str, str]] = []

    def flaky_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the move of the new directory into place
            raise OSError("disk on fire")
        real_rename(src, dst)

    monkeypatch.setattr(mio.os, "rename", flaky_rename)
    with pytest.raises(OSError, match="disk on fire"):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    monkeypatch.undo()
    assert len(calls) == 3  # aside, (failed) into place, back
    assert _listing(target) == ["keep.txt"]
    assert _listing(tmp_path) == ["run"]
