"""A call counter for tests: wrap a function in place, keep what each call records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def count_calls(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    record: Callable[..., Any] = lambda *args, **kw: 1,
) -> list[Any]:
    """Replace ``owner.name`` (for the test) by a wrapper that calls the original and appends
    ``record(*args, **kw)`` to the list returned, once per call."""
    real = getattr(owner, name)
    calls: list[Any] = []

    def wrapper(*args: Any, **kw: Any) -> Any:
        calls.append(record(*args, **kw))
        return real(*args, **kw)

    monkeypatch.setattr(owner, name, wrapper)
    return calls
