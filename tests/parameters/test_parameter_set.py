"""Parameter sets: every number has units, an interval consistent with it, and resolvable sources."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from microneedling.errors import InputError, ParameterError
from microneedling.io import data_path
from microneedling.parameters.parameter_set import Domain, Parameter, load_parameters
from microneedling.parameters.sampling import sample_parameter_sets
from tests.paths import EXAMPLES


def test_default_set_loads_and_every_source_resolves() -> None:
    ps = load_parameters()
    assert len(ps) > 50
    keys = set(ps.references_)
    for n in ps.names():
        p = ps.parameters[n]
        assert p.sources, n
        assert set(p.sources) <= keys, n
        assert p.note, f"{n} has no note"


def test_unknown_name_suggests_close_match() -> None:
    ps = load_parameters()
    with pytest.raises(ParameterError, match=r"did you mean healing\.fibroblast_loop_gain"):
        ps.value("healing.fibroblast_loop_gian", "1")


def test_value_conversion_and_recording() -> None:
    ps = load_parameters()
    per_day = ps.value("healing.mu_I", "1/d")
    assert ps.value("healing.mu_I", "1/h") == pytest.approx(per_day / 24)
    assert ps.used == ["healing.mu_I"]
    assert load_parameters().used == []  # a fresh view records afresh


def test_with_values_changes_hash_and_refuses_unknown() -> None:
    ps = load_parameters()
    edited = ps.with_values({"healing.mu_I": 2.0})
    assert edited.hash != ps.hash
    assert edited.value("healing.mu_I", "1/d") == 2.0
    assert ps.value("healing.mu_I", "1/d") != 2.0  # original untouched (immutable)
    with pytest.raises(ParameterError):
        ps.with_values({"healing.nope": 1.0})


def test_bad_file_is_refused_with_the_parameter_named(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        '[x]\nvalue = 1.0\nunits = "1/d"\nlow = 2.0\nsource = "estimate"\nkind = "estimate"\n'
        'domain = "positive"\n'
    )
    with pytest.raises(ParameterError, match=r"bad.x: low 2.0 > value 1.0"):
        load_parameters(tmp_path)
    (tmp_path / "bad.toml").write_text(
        '[x]\nvalue = 1.0\nunits = "1/d"\nsource = "nosuchref"\nkind = "estimate"\n'
        'domain = "positive"\n'
    )
    with pytest.raises(ParameterError, match="unknown source 'nosuchref'"):
        load_parameters(tmp_path)


def test_references_listed_for_used_names_only() -> None:
    ps = load_parameters()
    ps.value("healing.mu_I", "1/d")
    keys = [r.key for r in ps.references(ps.used)]
    assert keys == ["cooper2015"]


def test_editing_does_not_count_as_use() -> None:
    ps = load_parameters()
    ps.with_values({"healing.mu_I": 1.1})
    assert ps.used == []


# ----------------------------------------------------------------------------- domains
def test_every_shipped_table_declares_a_domain_that_holds_its_numbers() -> None:
    n = 0
    for path in sorted(data_path("parameters").glob("*.toml")):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        for key, entry in raw.items():
            if key.startswith("_"):
                continue
            assert "domain" in entry, f"{path.stem}.{key} declares no domain"
            dom = Domain.parse(entry["domain"])
            for what in ("value", "low", "high"):
                v = entry.get(what)
                for x in v.values() if isinstance(v, dict) else [] if v is None else [v]:
                    assert dom.contains(float(x)), (f"{path.stem}.{key}", what, x)
            n += 1
    assert n == len(load_parameters())


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("real", [-1e300, 0.0, 3.5], [math.nan, math.inf, -math.inf]),
        ("positive", [1e-300, 2.0], [0.0, -1.0, math.nan, math.inf]),
        ("nonnegative", [0.0, 7.0], [-1e-300, math.nan]),
        ("unit_interval", [0.0, 0.5, 1.0], [-0.01, 1.0000001, math.nan]),
        ("integer>=1", [1.0, 192.0], [0.0, 2.5, -3.0, math.inf]),
        ("(1, inf)", [1.0000001, 1e9], [1.0, 0.0, math.inf]),
        ("[0, 100)", [0.0, 99.9], [100.0, -0.1]),
        ("(0, 1]", [1e-9, 1.0], [0.0, 1.1]),
    ],
)
def test_domain_membership(text: str, inside: list[float], outside: list[float]) -> None:
    d = Domain.parse(text)
    assert all(d.contains(x) for x in inside), text
    assert not any(d.contains(x) for x in outside), text
    for x in outside:
        if not math.isnan(x):
            assert d.contains(d.clip(x)), (text, x)  # clipping lands inside


@pytest.mark.parametrize("text", ["", "positiv", "(1, 0)", "[a, b]", "integer>=x", "(0 1)"])
def test_unknown_domain_is_refused(text: str) -> None:
    with pytest.raises(ParameterError, match="domain"):
        Domain.parse(text)


def test_loader_refuses_a_table_without_domain_or_a_value_outside_it(tmp_path: Path) -> None:
    base = '[x]\nvalue = -1.0\nunits = "1/d"\nsource = "physics_estimate"\nkind = "estimate"\n'
    (tmp_path / "bad.toml").write_text(base)
    with pytest.raises(ParameterError, match=r"bad.x: missing field\(s\) \['domain'\]"):
        load_parameters(tmp_path)
    (tmp_path / "bad.toml").write_text(base + 'domain = "positive"\n')
    with pytest.raises(ParameterError, match=r"bad.x: value -1.0 outside its domain 'positive'"):
        load_parameters(tmp_path)
    (tmp_path / "bad.toml").write_text(base + 'domain = "real"\nlow = -2.0\n')
    assert load_parameters(tmp_path).value("bad.x", "1/d") == -1.0


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"healing.mu_I": -1.0}, "healing.mu_I"),  # silent NaN trajectories before
        ({"healing.F_max": 0.0}, "healing.F_max"),
        ({"healing.F_max": 1.0}, "healing.F_max"),  # sigma_TF divides by 1 - 1/F_max
        ({"healing.k_1": -0.01}, "healing.k_1"),  # collagen -165% before
        ({"healing.mu_I": math.nan}, "healing.mu_I"),
        ({"healing.mu_I": math.inf}, "healing.mu_I"),
        ({"needles.roller_contact_fraction": 1.5}, "needles.roller_contact_fraction"),
        ({"needles.pen_needles": 2.5}, "needles.pen_needles"),
        ({"skin.sc_thickness": {"cheek": -1.0}}, "skin.sc_thickness"),
        ({"healing.mu_I": "1.0"}, "healing.mu_I"),
        ({"healing.mu_I": True}, "healing.mu_I"),
    ],
)
def test_with_values_refuses_values_outside_the_domain(edit: dict, field: str) -> None:
    ps = load_parameters()
    if field == "skin.sc_thickness":  # a keyed value: every key, one of them outside
        edit = {field: {**ps.table(field, "um"), **edit[field]}}
    with pytest.raises(InputError) as info:
        ps.with_values(edit)
    assert info.value.field.startswith(field)
    assert "domain" in info.value.allowed


def test_with_values_refuses_missing_keys_and_non_mappings() -> None:
    ps = load_parameters()
    with pytest.raises(InputError, match="the keys"):
        ps.with_values({"skin.sc_thickness": {"cheek": 15.0}})
    with pytest.raises(InputError, match="mapping"):
        ps.with_values([("healing.mu_I", 1.0)])  # type: ignore[arg-type]


def test_draws_stay_inside_every_domain() -> None:
    """A split normal around capillary_loop_fraction 0.5 with a 0-1 interval reaches below 0 at
    z < -1.645; draws stop at the physical bound instead of being refused or leaving it."""
    ps = load_parameters()
    draws = sample_parameter_sets(ps, 400, seed=3)
    lows = 0
    for d in draws:
        for n, p in d.parameters.items():
            vals = p.value.values() if isinstance(p.value, dict) else [p.value]
            assert all(p.domain.contains(v) for v in vals), n
        lows += d.parameters["needles.capillary_loop_fraction"].value == 0.0
    assert 0 < lows < 40  # about 5% of 400 draws fall at the bound


def test_with_validated_values_is_with_values_without_its_checks() -> None:
    """The ensemble's fast path builds the set ``with_values`` builds (values, kinds, intervals,
    label, hash), marked as a draw; editing a draw through ``with_values`` gives a set that is not
    one, and the public path still checks."""
    ps = load_parameters()
    edit = {"healing.mu_I": 1.25, "skin.sc_thickness": {**ps.table("skin.sc_thickness", "um")}}
    edit["skin.sc_thickness"]["cheek"] = 11.5  # type: ignore[index]
    want = ps.with_values(edit, label="x")
    got = ps.with_validated_values(edit, "x")
    assert got == want and got.hash == want.hash and got.label == "x"
    assert got.is_draw and got.recording().is_draw and not want.is_draw
    for n, p in want.parameters.items():
        assert got.parameters[n] == p and type(got.parameters[n]) is Parameter
    assert got.parameters["healing.mu_I"].kind == "user"
    assert got.parameters["healing.mu_I"].low is None
    assert ps.parameters["healing.mu_I"].kind != "user"  # the base set is untouched
    assert not got.with_values({"healing.mu_I": 1.5}).is_draw
    with pytest.raises(InputError, match=r"healing\.mu_I: got -1\.0; allowed: a finite positive"):
        got.with_values({"healing.mu_I": -1.0})


def test_with_user_value_is_replace_with_a_user_kind() -> None:
    ps = load_parameters()
    for name in ("healing.mu_I", "skin.sc_thickness"):
        p = ps.parameters[name]
        v = p.value if isinstance(p.value, dict) else 2.0 * p.value
        got = p.with_user_value(v)
        assert got == dataclasses.replace(p, value=v, kind="user", low=None, high=None)
        assert got.value is v and p.kind != "user" and p.low is not None


def test_the_acceptance_limits_change_the_hash_not_the_model_hash_nor_any_output() -> None:
    """The limits that decide what a course may hold (parameter_set.ACCEPTANCE_LIMITS) are read by
    no equation: a set with every one of them changed simulates every variable of a course
    identically, has another ``hash`` and the same ``model_hash``."""
    import numpy as np

    import microneedling as mn
    from microneedling.parameters.parameter_set import ACCEPTANCE_LIMITS

    ps = load_parameters()
    changed: dict[str, Any] = {}
    for name in sorted(ACCEPTANCE_LIMITS):
        v = ps.parameters[name].value
        changed[name] = {k: x * 1.1 for k, x in v.items()} if isinstance(v, dict) else v * 1.1
    other = ps.with_values(changed)
    assert other.hash != ps.hash and other.model_hash == ps.model_hash
    edited = ps.with_values({"healing.mu_I": ps.parameters["healing.mu_I"].value * 1.1})
    assert edited.model_hash != ps.model_hash
    course = mn.Course.from_toml(EXAMPLES / "melasma-tranexamic-acid.toml")
    a = mn.simulate(course, parameters=ps, draws=0).dataset
    b = mn.simulate(course, parameters=other, draws=0).dataset
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
