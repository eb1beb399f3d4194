"""simulate_batch: small healing solves stay on the calling thread, larger ones use the thread
pool, and the outputs are the same bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from microneedling.course.model import Course
from microneedling.engine import batch
from microneedling.engine.batch import THREADS_FROM, simulate_batch
from microneedling.physics import healing
from tests.paths import EXAMPLES


def _same(a: Any, b: Any) -> None:
    assert np.array_equal(a.t, b.t) and np.array_equal(a.n_steps, b.n_steps)
    for name in a.observables:
        assert np.array_equal(a.observables[name], b.observables[name], equal_nan=True), name
    for name in a.per_session:
        assert np.array_equal(a.per_session[name], b.per_session[name], equal_nan=True), name


@pytest.mark.parametrize("n_courses", [1, 2])
def test_threads_only_for_batches_large_enough(
    n_courses: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = Course.from_file(EXAMPLES / "acne-scars-rolling-cheek.toml")  # a case and its floor
    seen: list[tuple[int, bool]] = []
    solve = healing.solve

    def spy(params: np.ndarray, *args: Any, **kw: Any) -> healing.HealingSolution:
        seen.append((params.shape[0], kw["parallel"]))
        return solve(params, *args, **kw)

    monkeypatch.setattr(batch.healing, "solve", spy)
    threaded = simulate_batch([course] * n_courses)
    serial = simulate_batch([course] * n_courses, parallel=False)
    rows = 2 * n_courses
    assert seen == [(rows, rows >= THREADS_FROM), (rows, False)]
    _same(threaded, serial)


def test_a_large_batch_on_threads_equals_one_thread() -> None:
    courses = [
        Course.from_file(EXAMPLES / f"{name}.toml")
        for name in ("acne-scars-rolling-cheek", "neck-rejuvenation", "forehead-fine-lines")
    ]
    assert sum(len(c.sites) for c in courses) + 2 >= THREADS_FROM  # floors: scar, wrinkle
    _same(simulate_batch(courses), simulate_batch(courses, parallel=False))
