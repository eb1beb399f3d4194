"""Parameter sets: every number has units, an interval consistent with it, and resolvable sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from microneedling.errors import ParameterError
from microneedling.parameters.parameter_set import load_parameters


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
    )
    with pytest.raises(ParameterError, match=r"bad.x: low 2.0 > value 1.0"):
        load_parameters(tmp_path)
    (tmp_path / "bad.toml").write_text(
        '[x]\nvalue = 1.0\nunits = "1/d"\nsource = "nosuchref"\nkind = "estimate"\n'
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
