"""What the commands share (microneedling.cli.common): the collector pause of ``simulate``."""

from __future__ import annotations

import gc

import pytest

from microneedling.cli import common


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    monkeypatch.setitem(common.STATE, "main", False)
    return common.STATE


def test_the_collector_is_paused_in_the_block_and_back_after_it(state: dict[str, bool]) -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with common.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # not the command's own process: nothing frozen
    with pytest.raises(KeyError), common.collector_paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled(state: dict[str, bool]) -> None:
    gc.disable()
    try:
        with common.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_in_its_own_process_what_the_block_made_is_frozen(state: dict[str, bool]) -> None:
    state["main"] = True
    try:
        with common.collector_paused():
            kept = [[i] for i in range(1000)]  # containers the collector tracks
        assert gc.isenabled() and gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
