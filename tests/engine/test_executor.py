"""Executor: in-process and Dask LocalCluster give the same ordered results; skip/resume; refusals."""

from __future__ import annotations

import math

import pytest

from microneedling.engine.executor import ChunkStore, map_chunks, validate_executor
from microneedling.errors import InputError


def test_in_process_is_ordered_and_skips() -> None:
    seen: list[tuple[int, float]] = []
    out = map_chunks(
        math.sqrt, [0.0, 1.0, 4.0, 9.0], skip={1}, on_result=lambda i, r: seen.append((i, r))
    )
    assert out == [0.0, None, 2.0, 3.0]
    assert sorted(seen) == [(0, 0.0), (2, 2.0), (3, 3.0)]


def test_local_cluster_matches_in_process() -> None:
    items = [(i, 3 * i + 1) for i in range(7)]
    serial = map_chunks(sum, items)
    got: dict[int, int] = {}
    parallel = map_chunks(sum, items, workers=2, on_result=got.__setitem__, progress=True)
    assert parallel == serial == [4 * i + 1 for i in range(7)]
    assert got == dict(enumerate(serial))


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_error_propagates(workers: int) -> None:
    with pytest.raises(ValueError, match="math domain"):
        map_chunks(math.sqrt, [1.0, -1.0], workers=workers)


@pytest.mark.parametrize(
    ("workers", "scheduler", "field"),
    [(-1, None, "workers"), (2, "tcp://x:1", "scheduler"), (0, "localhost", "scheduler")],
)
def test_bad_executor_refused(workers: int, scheduler: str | None, field: str) -> None:
    with pytest.raises(InputError) as e:
        validate_executor(workers, scheduler)
    assert e.value.field == field


def test_unreachable_scheduler_refused() -> None:
    with pytest.raises(InputError) as e:
        map_chunks(abs, [1], scheduler="tcp://127.0.0.1:9")
    assert e.value.field == "scheduler"


def test_chunk_store_roundtrip_and_fingerprint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ChunkStore(tmp_path / "chunks", "abc")
    assert store.done() == set()
    store.save(3, {"x": [1, 2]})
    assert ChunkStore(tmp_path / "chunks", "abc").done() == {3}
    assert store.load(3) == {"x": [1, 2]}
    assert not [p for p in (tmp_path / "chunks").iterdir() if p.name.startswith(".")]
    with pytest.raises(InputError):
        ChunkStore(tmp_path / "chunks", "other")
