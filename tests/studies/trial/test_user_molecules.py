"""Trials whose arms name user molecules: the spec keeps the molecules it names, every chunk runs
inside them (in this process and on Dask workers), they enter the resume fingerprint and the
output directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from microneedling.parameters.molecules import (
    molecules_from_tables,
    user_molecules,
    using_molecules,
)
from microneedling.reports.trial import write_trial
from microneedling.studies.trial.run import plan_chunks, run_chunk, run_trial
from microneedling.studies.trial.spec import TrialSpec, TrialSpecError
from tests.user_molecules import COPY, SHIPPED, copy_table, protocol, trial_data


@pytest.fixture(scope="module")
def mine() -> dict[str, Any]:
    return molecules_from_tables({COPY: copy_table()})


@pytest.fixture(scope="module")
def spec(mine: dict[str, Any]) -> TrialSpec:
    with using_molecules(mine):
        return TrialSpec.from_dict(trial_data(), source="trial")


def test_the_spec_keeps_the_user_molecules_its_arms_name(
    spec: TrialSpec, mine: dict[str, Any]
) -> None:
    assert list(spec.molecules) == [COPY] and spec.molecules[COPY] is mine[COPY]
    with pytest.raises(TrialSpecError) as e:  # outside the scope: an unknown product
        TrialSpec.from_dict(trial_data(), source="trial")
    assert e.value.problems[0].field == "arms[1].protocol" and COPY in str(e.value)
    # another molecule under the same name is another trial (resume never mixes their chunks)
    other = dataclasses.replace(spec, molecules=molecules_from_tables({COPY: copy_table("egf")}))
    assert other.fingerprint(3) != spec.fingerprint(3)
    assert dataclasses.replace(spec).fingerprint(3) == spec.fingerprint(3)


def test_chunks_run_inside_the_specs_molecules_and_match_the_shipped_arm(spec: TrialSpec) -> None:
    # outside any scope: the spec carries its molecules to every chunk
    chunks = [run_chunk(t) for t in plan_chunks(spec, 3, parallel=False)]
    assert len(chunks) == 4
    res = run_trial(spec)  # in-process executor
    assert np.isfinite(res.values).all()
    assert (res.values[:, :, 0] > 0).all()  # absorbed amounts
    # the copy's arm equals that arm of a trial whose second arm names the shipped product (the
    # same patients: each arm has its own stream of the trial's seed)
    data = trial_data()
    data["arms"][1]["protocol"] = protocol(SHIPPED)
    shipped_only = run_trial(TrialSpec.from_dict(data, source="trial"))
    assert np.array_equal(res.values, shipped_only.values, equal_nan=True)


def test_a_local_cluster_gives_the_in_process_numbers(spec: TrialSpec) -> None:
    here = run_trial(spec, chunk_size=3)
    dask = run_trial(spec, chunk_size=3, workers=1)
    np.testing.assert_allclose(dask.values, here.values, rtol=1e-12, atol=0)


def test_the_output_directory_holds_the_molecules(spec: TrialSpec, tmp_path: Path) -> None:
    res = run_trial(dataclasses.replace(spec, n_per_arm=3), chunk_size=3)
    write_trial(res, tmp_path / "out")
    back = user_molecules(tmp_path / "out" / "molecules.toml")
    assert repr(back) == repr(dict(spec.molecules))
    with using_molecules(back):  # trial.toml and molecules.toml reproduce the spec
        again = TrialSpec.from_toml(tmp_path / "out" / "trial.toml")
    assert again.fingerprint(3) == dataclasses.replace(spec, n_per_arm=3).fingerprint(3)
