"""What the pages say in words (microneedling.web.pages.readable): output names and end points of
the library's warnings and explanations read as labels; everything else is left as it is."""

from __future__ import annotations

from microneedling.engine.variables import by_name
from microneedling.reports.format import endpoint_label
from microneedling.web.pages import readable


def test_outputs_and_endpoints_in_words() -> None:
    label = by_name()["scar_depth"].label or by_name()["scar_depth"].long_name
    text = "outside validation: scar_depth: needle length 0.5 mm (validated 1–2 mm)"
    assert (
        readable(text)
        == f"outside the validated settings: {label}: needle length 0.5 mm (validated 1–2 mm)"
    )
    ep = "scar_depth:reduction@last+90"
    out = readable(f"cheek: driven by {ep} (predicted 63.0)")
    assert out == f"cheek: driven by {endpoint_label(ep)} (predicted 63.0)"
    assert ep not in out


def test_other_text_unchanged() -> None:
    for text in ("usual depth safety.typical_needle_length = 1.5 mm", "at 10:30", "a:b",
                 "limits.allow_above_usual_depth = true", ""):  # fmt: skip
        assert readable(text) == text


def test_numbers_read_as_settings() -> None:
    """Validated ranges as settings are written; tiny risks and responder rules in words; a
    plan's passes named; a dimensionless output says what its number is."""
    from microneedling.reports.format import units_words
    from microneedling.web.pages import _plan_words, _rule_words, _small_percent, _span

    assert (
        _span(6.0, 6.0) == "6" and _span(14.0, 42.0) == "14–42" and _span(0.25, 1.5) == "0.25–1.5"
    )
    assert _small_percent(1.05e-12) == "< 0.01%" and _small_percent(0.00939) == "0.939%"
    assert _rule_words(">= 25 %") == "≥ 25%" and _rule_words("") == "—"
    assert _plan_words("pen: 4 session(s) every 42 d; cheek 1.5 mm × 4") == (
        "pen: 4 session(s) every 42 d; cheek 1.5 mm × 4 passes"
    )
    assert _plan_words("cheek 1.5 mm × 4 passes") == "cheek 1.5 mm × 4 passes"
    assert units_words("1", "pih_risk") == "probability"
    assert units_words("1", "scar_grade@last+90") == "grade, 1–4"
    assert units_words("1", "an_unknown_output") == "no unit"
    assert units_words("ug/cm^2", "pih_risk") == "µg/cm²"


def test_trial_problems_land_on_the_builders_inputs() -> None:
    """Every problem of the trial spec is shown: on the input it comes from (an arm's protocol
    problem on that arm's needle length or interval, a read-out day on the read-out), else above
    the button; sessions and interval the builder cannot use are refused, not replaced."""
    from microneedling.web.pages import _TRIAL_SLOTS, _arm_errors, _trial_field

    protocol = (
        "arms[1].protocol: got 'pen'; allowed: arm pen 1.0 mm: sessions[0].needle_length_mm: "
        "got 5.0; allowed: at most 2.5 mm for site 'cheek' (+2 more)"
    )
    slot, text = _trial_field("trial.arms[1].protocol", protocol)
    assert slot == "arms[1].needle_length_mm"
    assert text.startswith("sessions[0].needle_length_mm: got 5.0; allowed: at most 2.5 mm")
    slot, _ = _trial_field("trial.arms[0].protocol", protocol.replace("needle_length_mm", "day"))
    assert slot == "arms[0].interval_days"
    assert _trial_field("trial.trial.time_points[0]", "x")[0] == "trial.time_points"
    assert _trial_field("trial.arms[].name", "x")[0] not in _TRIAL_SLOTS  # shown above the button
    pairs = [("arms[0].sessions", "x"), ("arms[0].interval_days", "28"),
             ("arms[1].sessions", "3"), ("arms[1].interval_days", "-3"),
             ("arms[2].sessions", "1"), ("arms[2].interval_days", "")]  # fmt: skip
    errors = _arm_errors(pairs)
    assert set(errors) == {"arms[0].sessions", "arms[1].interval_days"}
    assert errors["arms[0].sessions"] == [
        "arms[0].sessions: got 'x'; allowed: an integer from 1 to 52"
    ]
    assert "got -3" in errors["arms[1].interval_days"][0]


def test_trial_page_shows_the_parameter_draws() -> None:
    """A trial run with parameter draws (its JSON summary) shows where each mean and difference
    falls across the parameter sets and the parameter share; the facts name the source."""
    from microneedling.web.pages import _draw_cells, _trial_facts

    row = {"epistemic80_low": 1.5, "epistemic80_high": 4.25, "epistemic_fraction": 0.375}
    assert _draw_cells(row) == ["1.50–4.25", "37.5%"]
    assert _draw_cells({"epistemic80_low": None, "epistemic_fraction": None}) == ["—", "—"]
    s = {"design": "parallel", "n_per_arm": 8, "arms": ["a", "b"], "parameter_draws": 32,
         "parameter_source": "32 parameter sets: ... shipped posterior ..."}  # fmt: skip
    facts = dict(_trial_facts(s, {}))
    assert "shipped posterior" in facts["Parameters"]
