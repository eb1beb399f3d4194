"""The shared schema base of every input file: the wording of refusals and the reading of files."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pytest
from pydantic import Field, model_validator

from microneedling.errors import InputError, InputFileError, InputFileFieldError
from microneedling.schema import (
    INT64_MAX,
    MISSING,
    Allowed,
    Flag,
    InputModel,
    Integer,
    Number,
    Text,
    Unit,
)


class ToyError(InputFileError):
    """The toy file's refusals."""


class _Toy(InputModel):
    file_kind: ClassVar[str] = "toy file"
    error_class: ClassVar[type[InputFileError]] = ToyError
    literal_aliases: ClassVar[Mapping[tuple[str, ...], Mapping[str, str]]] = {
        ("left", "right"): {"port": "left", "starboard": "right"}
    }


class Part(_Toy):
    length_mm: Annotated[Number, Field(gt=0, le=3), Unit("mm")]
    count: Annotated[Integer, Field(ge=1, le=10_000_000)] = 1


class Shape(_Toy):
    """A flat table in the file: its ``part`` fields sit beside ``colour``."""

    colour: Literal["red", "green"] = "red"
    part: Part
    flattened_fields: ClassVar[frozenset[str]] = frozenset({"part"})

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "part" not in data:
            out = {"part": {k: v for k, v in data.items() if k != "colour"}}
            return out | ({"colour": data["colour"]} if "colour" in data else {})
        return data


class Toy(_Toy):
    name: Text
    side: Literal["left", "right"]
    seed: Annotated[Integer, Field(ge=0, le=INT64_MAX)] = 0
    ratio: Annotated[Number, Field(ge=0.1, le=2.5)] = 1.0
    level: Annotated[Number, Field(gt=0)] = 1.0
    on: Flag = False
    note: Annotated[Text, Allowed("a short note")] = ""
    parts: tuple[Part, ...] = ()
    shapes: tuple[Shape, ...] = ()
    weights: dict[str, Annotated[Number, Field(ge=0)]] = Field(default_factory=dict)
    tables: dict[str, Part] = Field(default_factory=dict)
    hidden: Text = Field(default="", alias="_hidden")


def _problems(data: Any, **kw: Any) -> list[InputError]:
    with pytest.raises(ToyError) as info:
        Toy.from_dict(data, **kw)
    return info.value.problems


def _one(data: Any) -> InputError:
    (problem,) = _problems(data)
    return problem


GOOD: dict[str, Any] = {"name": "t", "side": "left"}


# ----------------------------------------------------------------------------- wording
def test_bounds_are_written_out_with_units() -> None:
    p = _one({**GOOD, "parts": [{"length_mm": 4}]})
    assert (p.field, p.value) == ("parts[0].length_mm", 4)
    assert p.allowed == "a number > 0 and ≤ 3 mm"
    assert _one({**GOOD, "ratio": 3}).allowed == "a number from 0.1 to 2.5"
    assert _one({**GOOD, "level": 0}).allowed == "a number > 0"
    # integer bounds in full, never 1e+07 or 9.22337e+18
    assert _one({**GOOD, "parts": [{"length_mm": 1, "count": 0}]}).allowed == (
        "an integer from 1 to 10000000"
    )
    assert _one({**GOOD, "seed": -1}).allowed == f"an integer from 0 to {INT64_MAX}"


def test_strict_types() -> None:
    assert _one({**GOOD, "seed": 8.0}).allowed.startswith("an integer")
    assert _one({**GOOD, "seed": "8"}).value == "8"
    assert _one({**GOOD, "ratio": True}).allowed.startswith("a number")
    assert _one({**GOOD, "on": "yes"}).allowed == "true or false"
    assert _one({**GOOD, "name": 5}).allowed == "text"
    assert _one({**GOOD, "note": 5}).allowed == "a short note"  # Allowed replaces the words
    assert _one({**GOOD, "ratio": float("nan")}).field == "ratio"


def test_literal_with_did_you_mean_and_aliases() -> None:
    p = _one({**GOOD, "side": "lefft"})
    assert p.field == "side" and p.value == "lefft"
    assert p.allowed == "one of 'left', 'right'; did you mean 'left'?"
    assert _one({**GOOD, "side": "starboard"}).allowed.endswith("did you mean 'right'?")
    assert "did you mean" not in _one({**GOOD, "side": "up"}).allowed


def test_unknown_fields_are_named_with_the_allowed_ones() -> None:
    p = _one({**GOOD, "nmae": "x"})
    assert (p.field, p.value) == ("nmae", "x")
    assert p.allowed.startswith("no field 'nmae' in the toy file; allowed fields: name, side,")
    assert p.allowed.endswith("did you mean 'name'?")
    nested = _one({**GOOD, "parts": [{"length_mm": 1, "colour": "red"}]})
    assert nested.field == "parts[0].colour"
    assert nested.allowed.startswith("no field 'colour' in parts[0]; allowed fields: length_mm")
    # an alias is the name the file uses, in the list of allowed fields too
    assert "_hidden" in p.allowed and "hidden" not in p.allowed.replace("_hidden", "")
    assert Toy.from_dict({**GOOD, "_hidden": "h"}).hidden == "h"
    hidden = _one({**GOOD, "_hidden": 1})
    assert (hidden.field, hidden.allowed) == ("_hidden", "text")


def test_missing_fields() -> None:
    problems = _problems({})
    assert [(p.field, p.value) for p in problems] == [("name", MISSING), ("side", MISSING)]
    assert problems[0].allowed == "required field: text"
    assert problems[1].allowed == "required field: one of 'left', 'right'"
    assert repr(MISSING) == "<missing>"
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems({"side": "up", "ratio": 9, "colour": "red"})
    assert {p.field for p in problems} == {"name", "side", "ratio", "colour"}


def test_flattened_fields_never_appear_in_a_path() -> None:
    p = _one({**GOOD, "shapes": [{"colour": "red", "length_mm": 0}]})
    assert p.field == "shapes[0].length_mm"
    p = _one({**GOOD, "shapes": [{"colour": "blue", "length_mm": 1}]})
    assert p.field == "shapes[0].colour"
    shape = Toy.from_dict({**GOOD, "shapes": [{"length_mm": 2}]}).shapes[0]
    assert shape.part.length_mm == 2.0


def test_tables_keyed_by_name_keep_the_value_type() -> None:
    p = _one({**GOOD, "weights": {"a": 1, "b": -1}})
    assert (p.field, p.value, p.allowed) == ("weights.b", -1, "a number ≥ 0")
    p = _one({**GOOD, "tables": {"x": {"length_mm": 9}}})
    assert (p.field, p.allowed) == ("tables.x.length_mm", "a number > 0 and ≤ 3 mm")


def test_prefix_names_a_part_of_a_larger_file() -> None:
    with pytest.raises(ToyError) as info:
        Toy.from_dict({**GOOD, "seed": -1}, source="big.toml", prefix="toys[3]")
    assert info.value.problems[0].field == "toys[3].seed"
    assert info.value.source == "big.toml"
    with pytest.raises(ToyError) as info:
        Toy.from_dict([1], prefix="toys[3]")
    assert info.value.problems[0].field == "toys[3]"
    with pytest.raises(ToyError) as info:
        Toy.from_dict([1])
    assert info.value.problems[0].field == "<toy file>"


def test_validator_errors_keep_their_field() -> None:
    class Checked(_Toy):
        low: Number
        high: Number

        @model_validator(mode="after")
        def _order(self) -> Checked:
            if self.high <= self.low:
                raise InputError("high", self.high, f"a number > low ({self.low:g})")
            return self

    class Outer(_Toy):
        ranges: tuple[Checked, ...]

    with pytest.raises(ToyError) as info:
        Outer.from_dict({"ranges": [{"low": 1, "high": 2}, {"low": 3, "high": 2}]})
    (p,) = info.value.problems
    assert (p.field, p.value, p.allowed) == ("ranges[1].high", 2, "a number > low (3)")


# ------------------------------------------------------------------------------ files
def test_files_are_read_and_validated(tmp_path: Path) -> None:
    t = tmp_path / "toy.toml"
    t.write_text('name = "t"\nside = "right"\n[[parts]]\nlength_mm = 0.5\n', encoding="utf-8")
    j = tmp_path / "toy.json"
    j.write_text(json.dumps({"name": "t", "side": "right", "parts": [{"length_mm": 0.5}]}))
    assert Toy.from_toml(t) == Toy.from_file(t) == Toy.from_json(j) == Toy.from_file(j)
    assert Toy.read_toml_data(t)["parts"] == [{"length_mm": 0.5}]
    with pytest.raises(ToyError) as info:
        Toy.from_toml_text('name = "t"\nside = "up"\n', source="inline.toml")
    assert info.value.source == "inline.toml" and info.value.problems[0].field == "side"


def _file_problem(path: Path, reader: str = "from_file") -> InputError:
    with pytest.raises(ToyError) as info:
        getattr(Toy, reader)(path)
    assert info.value.source == str(path)
    (p,) = info.value.problems
    assert (p.field, p.value) == ("<file>", str(path))
    return p


def test_missing_file(tmp_path: Path) -> None:
    for name in ("nope.toml", "nope.json"):
        assert _file_problem(tmp_path / name).allowed == "an existing toy file (no such file)"
    assert "no such file" in _file_problem(tmp_path / "nope.toml", "read_toml_data").allowed


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "dir.toml"
    d.mkdir()
    assert _file_problem(d).allowed == "a toy file, not a directory"
    assert "ending in .toml or .json" in _file_problem(tmp_path).allowed


def test_binary_file(tmp_path: Path) -> None:
    for name in ("bin.toml", "bin.json"):
        p = tmp_path / name
        p.write_bytes(b'name = "\xff\xfe"\n')
        assert _file_problem(p).allowed.startswith("UTF-8 encoded text (")


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('name = "t"\nside = = "left"\n', encoding="utf-8")
    allowed = _file_problem(p).allowed
    assert allowed.startswith("valid TOML") and "line 2" in allowed


def test_bad_json(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text("{'name': 1}", encoding="utf-8")
    assert _file_problem(p).allowed.startswith("valid UTF-8 JSON; the parser said:")
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ToyError) as info:
        Toy.from_json(arr)
    assert info.value.problems[0].field == "<toy file>"


def test_other_suffix(tmp_path: Path) -> None:
    p = tmp_path / "toy.yaml"
    p.write_text("name: t\n", encoding="utf-8")
    assert _file_problem(p).allowed == "a toy file ending in .toml or .json"


# ------------------------------------------------------------------------------ errors
def test_file_errors_pickle_with_their_problems() -> None:
    err = ToyError([InputError("a.b", 1, "x"), InputError("c", MISSING, "y")], source="f.toml")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ToyError and str(again) == str(err)
    assert [(p.field, p.value, p.allowed) for p in again.problems] == [
        ("a.b", 1, "x"),
        ("c", MISSING, "y"),
    ]
    single = pickle.loads(pickle.dumps(InputError("f", [1], "z")))
    assert (single.field, single.value, single.allowed) == ("f", [1], "z")


def test_a_field_error_is_both_kinds() -> None:
    err = InputFileFieldError(
        [InputError("trial.seed", -1, "≥ 0"), InputError("arms", [], "two")], "t.toml"
    )
    assert isinstance(err, InputError) and isinstance(err, InputFileError)
    assert (err.field, err.value, err.allowed) == ("trial.seed", -1, "≥ 0")
    assert str(err).splitlines() == [
        "t.toml: 2 problem(s)",
        "  - trial.seed: got -1; allowed: ≥ 0",
        "  - arms: got []; allowed: two",
    ]
    assert err.one_line() == "t.toml: trial.seed: got -1; allowed: ≥ 0 (+1 more)"
    again = pickle.loads(pickle.dumps(err))
    assert (
        type(again) is InputFileFieldError
        and again.field == "trial.seed"
        and len(again.problems) == 2
    )
