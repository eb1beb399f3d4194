"""Qualitative behaviours the model was not fitted to (the credibility report's section of them):
each is asserted here on the nominal model, with its source."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from microneedling.studies.credibility.literature import load_references_all
from microneedling.studies.credibility.report import qualitative_behaviours


@pytest.fixture(scope="module")
def behaviours() -> dict[str, dict[str, Any]]:
    return {b["test"].rsplit("::", 1)[1]: b for b in qualitative_behaviours()}


def test_pih_risk_rises_with_skin_type(behaviours: dict[str, dict[str, Any]]) -> None:
    risk = behaviours["test_pih_risk_rises_with_skin_type"]["measured"]["pih_risk_by_type"]
    assert len(risk) == 6
    assert all(b > a for a, b in itertools.pairwise(risk)), risk


def test_thickening_regresses(behaviours: dict[str, dict[str, Any]]) -> None:
    m = behaviours["test_thickening_regresses"]["measured"]
    assert m["at_8_weeks_percent"] > 0
    assert m["at_1_year_percent"] < m["at_8_weeks_percent"]


def test_pretreatment_enhances(behaviours: dict[str, dict[str, Any]]) -> None:
    b = behaviours.get("test_pretreatment_enhances")
    if b is None:
        pytest.skip("the Mohammed 2014 row is not evaluable")
    assert b["measured"]["enhancement_ratio"] > 1.0


def test_every_behaviour_names_a_known_source_and_its_test(
    behaviours: dict[str, dict[str, Any]],
) -> None:
    refs = load_references_all()
    for name, b in behaviours.items():
        assert b["source"] in refs, b["source"]
        assert b["passed"] is True, b
        assert b["test"] == f"tests/studies/credibility/test_behaviours.py::{name}"
        assert name in globals()


@pytest.fixture(scope="module")
def claims() -> list[dict[str, Any]]:
    from microneedling.studies.credibility.report import claim_checks

    return claim_checks()


def test_each_claim_check_is_its_test_and_a_missed_one_a_strict_expected_failure(
    claims: list[dict[str, Any]],
) -> None:
    """Every claim the report checks at the shipped set names an existing test and a source; the
    claims it misses are exactly those whose test is a strict expected failure (so a fix that makes
    a claim hold, or a change that breaks one, shows in both places)."""
    import importlib

    refs = load_references_all()
    assert len(claims) == 4
    for c in claims:
        assert c["source"] in refs, c["source"]
        path, name = c["test"].split("::")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        func = getattr(module, name)
        marks = [m for m in getattr(func, "pytestmark", []) if m.name == "xfail"]
        assert bool(marks) is (not c["passed"]), (name, c["measured"])
        assert all(m.kwargs.get("strict") is True for m in marks), name


def test_a_missed_claim_is_a_known_limit_with_its_numbers(claims: list[dict[str, Any]]) -> None:
    from microneedling.studies.credibility.report import LIMITS, known_limits

    missed = [c for c in claims if not c["passed"]]
    lines = known_limits({"claims": claims})
    assert len(lines) == len(LIMITS) + len(missed)
    for c, line in zip(missed, lines[len(LIMITS) :], strict=True):
        assert c["test"] in line and c["claim"] in line
        assert f"{next(iter(c['measured'].values())):.3g}" in line or "[" in line
