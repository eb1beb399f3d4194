"""The applicability map (studies/credibility/applicability.py -> data/applicability.toml): the
shipped file is what the validation rows give, and it holds only rows that test the model."""

from __future__ import annotations

from pathlib import Path

from microneedling.io import data_path, read_toml
from microneedling.studies.credibility import applicability
from microneedling.studies.credibility.literature import load_protocols, rows


def test_regenerating_the_map_reproduces_the_shipped_file() -> None:
    shipped = data_path("applicability.toml").read_text(encoding="utf-8")
    assert applicability.map_toml() == shipped, (
        "data/applicability.toml is stale: run python -m "
        "microneedling.studies.credibility.applicability --write"
    )


def test_the_map_holds_validation_rows_that_test_the_model() -> None:
    data = applicability.build()
    protocols = load_protocols()
    val = {r.key: r for r in rows("validation")}
    listed = set()
    for name, entry in data["outputs"].items():
        assert entry["rows"] == sorted(entry["rows"])
        for key in entry["rows"]:
            r = val[key]  # a validation row, never a calibration row
            assert r.observable == name
            p = protocols[key]
            assert p.evaluable or p.awaiting, key  # rows that cannot test the model are left out
            listed.add(key)
        assert entry["studies"] == len({val[k].study for k in entry["rows"]})
        for axis in ("needle_length_mm", "fitzpatrick", "sessions", "interval_days"):
            if axis in entry:
                lo, hi = entry[axis]
                assert lo <= hi, (name, axis)
    # every evaluable or awaiting validation row is in the map; the others are not
    testing = {k for k, r in val.items() if protocols[k].evaluable or protocols[k].awaiting}
    assert listed == testing
    assert "asif2016_mn_prp" not in listed  # PRP is not modelled


def test_stand_in_ranges_and_comparator_arms_widen_the_map() -> None:
    out = applicability.build()["outputs"]
    scar = out["scar_depth"]
    # the Garg rows report no needle length: their stand-in range 1.0-2.0 mm is covered
    assert scar["needle_length_mm"][0] <= 1.0 and scar["needle_length_mm"][1] >= 2.0
    assert {"garg_boxcar_reduction", "garg_icepick_reduction"} <= set(scar["rows"])
    down = out["downtime_days"]
    assert {"pen", "roller"} <= set(down["devices"])  # Chu 2012: pen arm and roller comparator


def test_write_replaces_the_file_atomically(tmp_path: Path) -> None:
    target = applicability.write(tmp_path / "applicability.toml")
    assert target.read_text(encoding="utf-8") == applicability.map_toml()
    assert read_toml(target)["outputs"].keys() == applicability.build()["outputs"].keys()
    assert [p.name for p in tmp_path.iterdir()] == ["applicability.toml"]
