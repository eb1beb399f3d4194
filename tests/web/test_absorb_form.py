"""The absorption study's form (no browser: the app in process, as tests/web/test_account.py)."""

from __future__ import annotations

from tests.web.test_account import Env, csrf, env, post

__all__ = ["env"]  # the module's fixture, shared with the account tests


def test_an_emptied_absorption_field_is_refused_not_filled_from_the_preset(env: Env) -> None:
    """The absorption study's form starts from a preset; a field the user empties was silently
    replaced by the preset's value (6 h of contact time while the form showed none). It is now
    refused under its input, naming what the form started with, and no run is made."""
    c = env.browser(env.a.email)
    runs_before = len(env.api(env.a).get("/api/v1/runs").json())
    form = {
        "sessions[0].topical.product": "niacinamide",
        "sessions[0].topical.concentration_mg_ml": "50",
        "sessions[0].topical.volume_ul_cm2": "10",
        "sessions[0].topical.contact_hours": "",  # emptied
        "sessions[0].needle_length_mm": "0.5",
        "sessions[0].passes": "15",
        "draws": "4",
    }
    r = post(c, "/web/absorb", form, token=csrf(c, "/web/absorb"))
    assert r.status_code == 200, r.status_code
    assert "sessions[0].topical.contact_hours" in r.text and "the form started with 6.0" in r.text
    assert len(env.api(env.a).get("/api/v1/runs").json()) == runs_before
