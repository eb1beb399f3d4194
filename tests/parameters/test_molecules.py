"""The molecule library in scope (microneedling.parameters.molecules): shipped molecules plus the
user molecules of ``using_molecules`` blocks, visible inside, gone after, nestable, never a shipped
key; user files and stored tables read as the library's file is."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from microneedling.errors import InputError, ParameterError
from microneedling.io import dumps_toml
from microneedling.parameters.molecules import (
    in_scope,
    molecule_extras,
    molecule_library,
    molecule_names,
    molecules_from_tables,
    molecules_toml,
    shipped_molecules,
    used_extras,
    user_molecules,
    using_molecules,
)
from tests.user_molecules import COPY, SHIPPED, copy_table, write_copy


def _mine(key: str = COPY, shipped: str = SHIPPED) -> dict:  # type: ignore[type-arg]
    return molecules_from_tables({key: copy_table(shipped)})


def test_outside_any_scope_the_library_is_the_shipped_one() -> None:
    assert molecule_library() is shipped_molecules()  # the same objects: shipped numbers unchanged
    assert molecule_names() == tuple(shipped_molecules())
    assert dict(molecule_extras()) == {}


def test_user_molecules_are_visible_inside_the_block_and_gone_after() -> None:
    mine = _mine()
    with using_molecules(mine) as lib:
        assert COPY in lib and lib[COPY] is mine[COPY]
        assert molecule_names() == (*shipped_molecules(), COPY)
        assert dict(molecule_extras()) == mine
        assert in_scope([COPY, SHIPPED]) == {
            COPY: mine[COPY],
            SHIPPED: shipped_molecules()[SHIPPED],
        }
        assert used_extras([SHIPPED, COPY, COPY]) == mine  # shipped products left out
    assert COPY not in molecule_names() and molecule_library() is shipped_molecules()
    with pytest.raises(InputError) as e:
        in_scope([COPY])
    assert e.value.field == "topical.product" and "using_molecules" in e.value.allowed


def test_the_scope_is_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), using_molecules(_mine()):
        raise RuntimeError("boom")
    assert COPY not in molecule_names()


def test_scopes_nest_and_the_inner_definition_wins_inside() -> None:
    outer = _mine()
    other = _mine("house_niacinamide", "niacinamide")
    redefined = molecules_from_tables({COPY: copy_table("egf")})
    with using_molecules(outer):
        with using_molecules(other):
            assert set(molecule_extras()) == {COPY, "house_niacinamide"}
            assert molecule_library()[COPY] is outer[COPY]
        assert set(molecule_extras()) == {COPY}
        with using_molecules(redefined):
            assert molecule_library()[COPY] is redefined[COPY]
            assert molecule_library()[COPY].mw_g_per_mol == shipped_molecules()["egf"].mw_g_per_mol
        assert molecule_library()[COPY] is outer[COPY]
    assert dict(molecule_extras()) == {}


def test_a_shipped_key_is_refused_naming_it() -> None:
    fake = molecules_from_tables({COPY: copy_table()})[COPY]
    clash = {"niacinamide": dataclasses.replace(fake, key="niacinamide")}
    with pytest.raises(ParameterError) as e, using_molecules(clash):
        pass
    assert "['niacinamide']" in str(e.value) and "shipped library" in str(e.value)
    with pytest.raises(ParameterError) as e:
        molecules_from_tables({"caffeine": copy_table()}, source="molecule")
    assert str(e.value).startswith("molecule: molecule(s) ['caffeine'] already in the shipped")
    assert molecule_library() is shipped_molecules()


def test_a_value_that_is_not_the_molecule_of_its_key_is_refused() -> None:
    mine = _mine()
    with pytest.raises(ParameterError, match="must map to a Molecule with key 'other'"):
        with using_molecules({"other": mine[COPY]}):
            pass
    with pytest.raises(ParameterError, match="got dict"):
        with using_molecules({COPY: copy_table()}):  # type: ignore[dict-item]
            pass


def test_empty_or_none_changes_nothing() -> None:
    for extra in (None, {}):
        with using_molecules(extra) as lib:
            assert lib is shipped_molecules()


def test_a_thread_started_inside_a_block_does_not_see_its_molecules() -> None:
    # a context variable: each request of the service (a thread, a task) has its own scope
    seen: list[tuple[str, ...]] = []
    with using_molecules(_mine()):
        t = threading.Thread(target=lambda: seen.append(molecule_names()))
        t.start()
        t.join()
        assert COPY in molecule_names()
    assert seen == [tuple(shipped_molecules())]


def test_user_molecules_reads_only_the_files_molecules(tmp_path: Path) -> None:
    f1 = write_copy(tmp_path / "one.toml")
    f2 = write_copy(tmp_path / "two.toml", "house_egf", "egf")
    got = user_molecules([f1, f2])
    assert set(got) == {COPY, "house_egf"}
    ship = shipped_molecules()
    for key, base in ((COPY, SHIPPED), ("house_egf", "egf")):
        a, b = got[key], ship[base]
        # every property the same (NaN where the shipped one has none): only key and label differ
        assert repr(dataclasses.replace(a, key=base, label=b.label)) == repr(b)
    assert set(user_molecules(f1)) == {COPY}


def test_a_user_file_reusing_a_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "mine.toml"
    bad.write_text(dumps_toml({"caffeine": copy_table()}), encoding="utf-8")
    with pytest.raises(ParameterError) as e:
        user_molecules(bad)
    assert str(bad) in str(e.value) and "['caffeine']" in str(e.value)
    twice = write_copy(tmp_path / "again.toml")
    with pytest.raises(ParameterError, match=r"\['house_caffeine'\] already defined"):
        user_molecules([write_copy(tmp_path / "first.toml"), twice])


def test_molecules_toml_reads_back_with_the_same_numbers(tmp_path: Path) -> None:
    mine = {**_mine(), **_mine("house_peptide", "palmitoyl_pentapeptide_4")}
    path = tmp_path / "molecules.toml"
    path.write_text(molecules_toml(mine), encoding="utf-8")
    back = user_molecules(path)
    assert set(back) == set(mine)
    for k, m in mine.items():
        b = back[k]
        assert repr(b) == repr(m)  # every field, NaN included
        assert repr(b.table) == repr(m.table)


@pytest.mark.parametrize(
    ("change", "field", "value", "words"),
    [
        ({"mw": {"value": -5.0}}, "mw.value", -5.0, "a positive number"),
        ({"mw": {"value": "heavy"}}, "mw.value", "heavy", "a number"),
        ({"mw": {"units": "cm/s"}}, "mw.units", "cm/s", "convertible to 'g/mol'"),
        ({"mw": {"kind": "guess"}}, "mw.kind", "guess", "one of literature"),
        ({"colour": "blue"}, "colour", "blue", "a field of"),
        ({"ionisation": "salt"}, "ionisation", "salt", "one of"),
    ],
)
def test_a_bad_molecule_table_names_the_field_the_value_and_what_is_allowed(
    change: dict, field: str, value: object, words: str
) -> None:
    """The service reports these parts as a 422 naming ``molecule.<field>``; the message keeps
    the file, the molecule and the field for the command line."""
    from microneedling.parameters.molecules import MoleculeTableError

    table = copy_table()
    for k, v in change.items():
        table[k] = {**table[k], **v} if isinstance(v, dict) and k in table else v
    with pytest.raises(MoleculeTableError) as e:
        molecules_from_tables({"house_test": table}, source="mine.toml")
    assert (e.value.key, e.value.field, e.value.value) == ("house_test", field, value)
    assert words in e.value.allowed
    assert str(e.value).startswith(f"mine.toml: molecule 'house_test'.{field}: ")


def test_naloxone_loads_with_its_sources() -> None:
    """Naloxone (the naloxone2021_drpen calibration rows): the free base, a weak base protonated
    at skin pH, every property with a reference that resolves."""
    from microneedling.parameters.parameter_set import load_references
    from microneedling.physics.transport import BASE, Solute, neutral_fraction

    m = shipped_molecules()["naloxone"]
    assert m.mw_g_per_mol == pytest.approx(327.38)  # C19H21NO4 (the HCl salt is 363.84)
    assert m.ionisation == "base" and m.pka == pytest.approx(8.12) and m.charge == 1.0
    assert m.log_kow == pytest.approx(2.1) and m.vehicle_ph == pytest.approx(4.0)
    assert m.d_aq == pytest.approx(5.0e-10)  # Hayduk-Laudie, Le Bas 327.5 cm3/mol
    refs = load_references()
    assert {"ncats_naloxone", "drugmap_naloxone", "ptwiki_naloxona", "hayduk1974"} <= set(m.sources)
    assert all(s in refs for s in m.sources), set(m.sources) - set(refs)
    assert m.kinds["log_kow"] == "estimate" and m.kinds["pka"] == "literature"
    sol = Solute.from_molecules([m])
    assert sol.ionisation is not None and int(sol.ionisation[0]) == BASE
    # Henderson-Hasselbalch at pH 5.5: 1/(1 + 10^(8.12 - 5.5)) = 0.0024
    assert float(neutral_fraction(BASE, m.pka, 5.5)) == pytest.approx(0.0024, rel=0.01)
