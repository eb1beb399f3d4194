"""A server killed (SIGKILL) in the middle of a trial and started again finishes the trial without
recomputing the chunks it had finished, and gives the numbers of an uninterrupted run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from microneedling.client import Client
from microneedling.studies.trial.run import run_trial
from microneedling.studies.trial.spec import TrialSpec
from tests.service.helpers import PASSWORD, trial_spec
from tests.service.live import create_admin, serve, stop

ENV = {"MICRONEEDLING_STALE_AFTER_S": "1", "MICRONEEDLING_JOB_THREADS": "1"}


def test_killed_server_resumes_the_trial_from_its_chunks(tmp_path: Path) -> None:
    create_admin(tmp_path, "admin@resume.example", PASSWORD, "Resume clinic")
    spec = trial_spec(n_per_arm=40, chunk_size=2)  # 40 chunks
    proc, url = serve(tmp_path, ENV)
    try:
        client = Client.login(url, "admin@resume.example", PASSWORD)
        run = client.submit("trial", trial=spec)
        chunks = tmp_path / "work" / f"run-{run['id']}" / "chunks"
        end = time.monotonic() + 120
        while len(list(chunks.glob("chunk-*.pkl"))) < 6:
            assert time.monotonic() < end, client.run(run["id"])
            time.sleep(0.02)
        proc.kill()  # no clean-up, no goodbye: as a crash or a power cut
        proc.wait()
    finally:
        stop(proc)
    kept = sorted(chunks.glob("chunk-*.pkl"))
    assert 6 <= len(kept) < 40
    stamps = {p.name: p.stat().st_mtime_ns for p in kept}
    proc, url2 = serve(tmp_path, ENV)
    try:
        client = Client(url2, client.token)  # the token lives in the database: it still works
        # the chunks found on disk are not written again while the trial finishes
        seen_again: dict[str, int] = {}
        end = time.monotonic() + 180
        while True:
            state = client.run(run["id"])
            for name in list(stamps):
                p = chunks / name
                if p.exists():
                    seen_again[name] = p.stat().st_mtime_ns
            if state["status"] in ("done", "failed", "cancelled"):
                break
            assert time.monotonic() < end, state
            time.sleep(0.05)
        assert state["status"] == "done", state
        assert state["attempts"] == 2
        assert state["summary"]["chunks"] == 40
        assert state["summary"]["chunks_reused"] == len(kept)
        assert all(seen_again[n] == stamps[n] for n in seen_again)
        assert not chunks.exists()  # a finished trial leaves no chunks
        expected = run_trial(TrialSpec.from_dict(spec, source="trial"))
        got = pd.DataFrame(state["summary"]["summary"])
        np.testing.assert_allclose(got["mean"], expected.summary["mean"], rtol=1e-12)
        ds = client.dataset(run["id"], "trial.nc")
        np.testing.assert_array_equal(ds["value"].values, expected.values)
    finally:
        stop(proc)
