"""The app's start-up: the heap of a starting process is frozen out of the collector's way."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from microneedling.service import app as app_module
from microneedling.service.app import create_app, freeze_startup_heap
from microneedling.service.config import Settings
from tests.service.helpers import settings_for


class _Cyclic:
    """An object in a reference cycle (weak-referenceable, unlike a list)."""

    def __init__(self, other: Any) -> None:
        self.me = self
        self.other = other


def test_freeze_startup_heap_freezes_what_is_alive_and_not_garbage() -> None:
    gc.unfreeze()
    try:
        kept: list[list[int]] = [[i] for i in range(1000)]  # containers: tracked by the collector
        ids = {id(o) for o in kept}
        cycle: list[object] = []
        cycle.append(cycle)  # garbage with a cycle: collected first, never frozen
        ref = weakref.ref(_Cyclic(cycle))
        del cycle
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() >= len(kept)
        assert ref() is None  # the cycle was collected before the freeze
        # no collection walks them now: they are in none of the three generations
        walked = {id(o) for g in range(3) for o in gc.get_objects(generation=g)}
        assert not ids & walked
        made_after = [[0]]  # and what is made after the freeze is collected as usual
        assert id(made_after[0]) in {id(o) for g in range(3) for o in gc.get_objects(generation=g)}
    finally:
        gc.unfreeze()


def test_each_process_freezes_its_heap_as_it_starts_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(app_module, "freeze_startup_heap", lambda: calls.append(1) or 0)
    app = create_app(settings_for(tmp_path, None, freeze_heap=True))
    assert calls == []  # not when the app is made (a test or a script may never serve it)
    with TestClient(app) as client:
        assert client.get("/api/v1/health").status_code == 200
        assert calls == [1]
    with TestClient(app):
        assert calls == [1, 1]
    # off (MICRONEEDLING_FREEZE_HEAP=0; the tests' apps): never
    with TestClient(create_app(settings_for(tmp_path / "off", None))):
        assert calls == [1, 1]


def test_freezing_is_on_by_default_and_off_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MICRONEEDLING_FREEZE_HEAP", raising=False)
    assert Settings.from_env().freeze_heap
    monkeypatch.setenv("MICRONEEDLING_FREEZE_HEAP", "0")
    assert not Settings.from_env().freeze_heap
