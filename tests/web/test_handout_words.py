"""The patient handout in the patient's words (no browser: the handout's lines of the synthetic
Result of tests/conftest.py): plain labels from ``Variable.plain_label``, the range as "most likely
between", every number kept; the practitioner's words stay on the result page."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from microneedling.engine.result import Result
from microneedling.engine.variables import VARIABLES, by_name
from microneedling.reports import run as run_report
from microneedling.web.pages import _handout

JARGON = ("R2-like", "Worst-session", "PIH risk", "10–90%", "Atrophic", "Sa)")


def _lines(result: Result) -> dict[str, Any]:
    return _handout(result, SimpleNamespace(request={}))  # type: ignore[arg-type]


def test_every_handout_label_is_a_plain_label_of_its_variable() -> None:
    """One place for the words: the handout's label is the variable's ``plain_label``; the
    practitioner's ``label`` is unchanged, and differs where it is a practitioner's term."""
    v = by_name()
    assert v["elasticity_index"].label == "Elasticity index (R2-like)"
    assert "R2" not in v["elasticity_index"].plain_label
    assert v["pih_risk"].label == "Post-inflammatory hyperpigmentation risk"
    assert v["wrinkle_depth"].plain_label == v["wrinkle_depth"].label  # plain already
    for var in VARIABLES:
        if var.figure == "claims" or var.name == "pih_risk":
            assert not any(j in var.plain_label for j in JARGON), var.name


def test_handout_reads_in_plain_words_and_keeps_every_number(synthetic_result: Result) -> None:
    out = _lines(synthetic_result)
    text = " ".join(out["expected"] + out["pih"])
    assert out["expected"] and out["pih"]
    for j in JARGON:
        assert j not in text, j
    assert "most likely between" in text
    # the same numbers as the practitioner's PIH line: nominal and both ends of its interval
    for (_, pract), line in zip(run_report.pih_summary(synthetic_result), out["pih"], strict=True):
        for number in re.findall(r"[\d.]+%", pract.replace("10–90%", "")):
            assert number in line, (number, line)
    plain = {by_name()[n].plain_label.lower() for n in run_report.claim_variables()}
    for line in out["expected"]:
        assert line.split(", ", 1)[1].split(": ", 1)[0].lower() in plain, line
    assert out["disclaimer_text"]


def test_result_page_keeps_the_practitioners_words(synthetic_result: Result) -> None:
    pract = run_report.pih_summary(synthetic_result)
    assert pract and all(k.startswith("Worst-session PIH risk") for k, _ in pract)
    assert all("10–90%" in v for _, v in pract)
