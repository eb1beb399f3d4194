"""The one schema base of every input file (course, patient, trial spec, population, literature).

Input files are pydantic models derived from :class:`InputModel`. It forbids unknown fields, is
immutable, refuses NaN and infinity, reads TOML/JSON files and text, and turns every pydantic
``ValidationError`` into the package's own :class:`~microneedling.errors.InputFileError`: one
:class:`~microneedling.errors.InputError` per problem, naming the field as a dotted path with list
indices (``sessions[2].needle_length_mm``), the value given and what is allowed, written from the
field's annotation (type, bounds, units, choices) with a did-you-mean hint for near misses.

Field annotations use the strict aliases below (an integer field refuses ``8.0`` and ``"8"``, a
number refuses ``true``) and two markers read by the error translation: :class:`Unit` (the unit
named in messages) and :class:`Allowed` (a hand-written description that replaces the automatic
one).

Limits where size is a cost: a file is at most :data:`MAX_FILE_BYTES`; free text (:data:`Text`) at
most :data:`MAX_TEXT` characters, a name (:data:`Line`) at most :data:`MAX_LINE` on one line.
Control characters (ANSI escapes, NUL, bidirectional overrides ...) are refused in every text
field: they would reach a terminal, a report title or a file name as they are.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

import annotated_types as at
from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, ValidationError
from pydantic.fields import FieldInfo

from microneedling.errors import MISSING, InputError, InputFileError
from microneedling.io import loads_toml

__all__ = [
    "INT64_MAX",
    "MAX_FILE_BYTES",
    "MAX_LINE",
    "MAX_TEXT",
    "MISSING",
    "Allowed",
    "Flag",
    "InputModel",
    "Integer",
    "Line",
    "Number",
    "Text",
    "Unit",
    "check_text",
    "describe",
    "did_you_mean",
    "translate",
]

INT64_MAX = 2**63 - 1
"""Largest integer a TOML file can hold (64-bit signed)."""

MAX_FILE_BYTES = 10 * 2**20
"""Largest input file read (10 MiB; the shipped files are below 100 kB)."""
MAX_TEXT = 10_000
"""Longest free text (a description, a note), in characters."""
MAX_LINE = 200
"""Longest name or label (one line), in characters."""

#: C0 controls but tab/newline/carriage return, DEL, C1 controls, zero-width and bidirectional
#: formatting characters, the byte-order mark
_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff]"
)
_LINE_BREAKS = re.compile("[\t\n\r]")


# ------------------------------------------------------------------- annotation markers
@dataclass(frozen=True)
class Unit:
    """Unit of a numeric field, named in error messages (the field's name carries it too)."""

    symbol: str


@dataclass(frozen=True)
class Allowed:
    """A hand-written 'allowed' text that replaces the one written from the annotation."""

    text: str


Number = Annotated[float, Strict()]
"""A number: int or float, never bool or text."""
Integer = Annotated[int, Strict()]
"""An integer: never ``8.0``, ``"8"`` or ``true``."""
Flag = Annotated[bool, Strict()]
"""``true`` or ``false`` only."""


def check_text(value: str, *, max_length: int = MAX_TEXT, one_line: bool = False) -> str:
    """Refuse text that is too long, holds control characters (tab and line breaks are allowed
    unless ``one_line``) or cannot be written back to a UTF-8 file (unpaired surrogates)."""
    what = (
        f"one line of at most {max_length} characters"
        if one_line
        else (f"text of at most {max_length} characters")
    )
    if len(value) > max_length:
        raise InputError("", f"<text of {len(value)} characters>", what)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("", value, "text without unpaired surrogate characters") from None
    bad = _CONTROL.search(value) or (_LINE_BREAKS.search(value) if one_line else None)
    if bad is not None:
        code = f"U+{ord(bad.group()):04X}"
        raise InputError("", value, f"{what} without control characters (found {code})")
    return value


def _text(value: str) -> str:
    return check_text(value)


def _line(value: str) -> str:
    return check_text(value, max_length=MAX_LINE, one_line=True)


Text = Annotated[str, Strict(), AfterValidator(_text)]
"""Free text: at most :data:`MAX_TEXT` characters, no control characters but tab and line breaks."""
Line = Annotated[str, Strict(), AfterValidator(_line)]
"""A name or label: one line of at most :data:`MAX_LINE` characters, no control characters."""


def did_you_mean(
    value: Any, choices: tuple[str, ...] | list[str], aliases: Mapping[str, str] | None = None
) -> str:
    """``"; did you mean 'x'?"`` for a near miss (or a known alias), else ``""``."""
    if not isinstance(value, str):
        return ""
    key = value.strip().lower().replace(" ", "_").replace("-", "_")
    if aliases and key in aliases:
        return f"; did you mean {aliases[key]!r}?"
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- the base
class InputModel(BaseModel):
    """Base of every input file: strict, immutable, no unknown fields, no NaN or infinity.

    Subclasses set :attr:`file_kind` (how messages name the file), :attr:`error_class` (the
    :class:`~microneedling.errors.InputFileError` subclass they raise) and, optionally,
    :attr:`literal_aliases` (common words for the choices of a ``Literal`` field, used only for
    did-you-mean hints) and :attr:`flattened_fields`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    file_kind: ClassVar[str] = "input file"
    error_class: ClassVar[type[InputFileError]] = InputFileError
    literal_aliases: ClassVar[Mapping[tuple[str, ...], Mapping[str, str]]] = {}
    #: fields whose own fields sit flat in the file (a validator nests them): their names never
    #: appear in an error's path
    flattened_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def refuse(cls, problems: list[InputError], source: str | None = None) -> InputFileError:
        """The error this model raises for ``problems`` found in ``source``."""
        return cls.error_class(problems, source=source or cls.file_kind)

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None, *, prefix: str = "") -> Self:
        """Validate a mapping shaped like the file; with ``prefix``, the mapping is one part of a
        larger file and every problem's field starts with ``prefix.``."""
        if not isinstance(data, Mapping):
            whole = prefix or f"<{cls.file_kind}>"
            raise cls.refuse([InputError(whole, data, "a table (mapping)")], source)
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise cls.refuse(translate(exc, cls, prefix), source) from None

    @classmethod
    def toml_data(cls, text: str, source: str | None = None) -> dict[str, Any]:
        """Parse TOML text (:func:`microneedling.io.loads_toml`) without validating it; a syntax
        error is this model's error, a ``<file>`` problem naming the line."""
        try:
            return loads_toml(text, source or cls.file_kind)
        except InputError as exc:
            where = source or cls.file_kind
            raise cls.refuse([InputError("<file>", where, exc.allowed)], source) from None

    @classmethod
    def read_toml_data(cls, path: str | Path) -> dict[str, Any]:
        """Read and parse a TOML file without validating it; a missing, unreadable, binary or
        malformed file is this model's error (a ``<file>`` problem)."""
        return cls.toml_data(cls._read_text(path), source=str(path))

    @classmethod
    def from_toml_text(cls, text: str, source: str | None = None) -> Self:
        """Parse and validate TOML text."""
        return cls.from_dict(cls.toml_data(text, source), source=source)

    @classmethod
    def from_toml(cls, path: str | Path) -> Self:
        """Read and validate a TOML file."""
        return cls.from_dict(cls.read_toml_data(path), source=str(path))

    @classmethod
    def from_json(cls, path: str | Path) -> Self:
        """Read and validate a JSON file (same shape as the TOML one)."""
        source = str(path)
        try:
            data = json.loads(cls._read_text(path))
        except json.JSONDecodeError as exc:
            raise cls.refuse(
                [InputError("<file>", source, f"valid UTF-8 JSON; the parser said: {exc}")], source
            ) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """Read a ``.toml`` or ``.json`` file (chosen by suffix)."""
        suffix = Path(path).suffix.lower()
        if suffix == ".toml":
            return cls.from_toml(path)
        if suffix == ".json":
            return cls.from_json(path)
        raise cls.refuse(
            [InputError("<file>", str(path), f"a {cls.file_kind} ending in .toml or .json")],
            str(path),
        )

    @classmethod
    def _read_text(cls, path: str | Path) -> str:
        source = str(path)
        try:
            size = Path(path).stat().st_size
            if size > MAX_FILE_BYTES:
                limit = f"{MAX_FILE_BYTES // 2**20} MiB"
                raise cls.refuse(
                    [
                        InputError(
                            "<file>", f"{size} bytes", f"a {cls.file_kind} of at most {limit}"
                        )
                    ],
                    source,
                )
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            reason = f"an existing {cls.file_kind} (no such file)"
        except IsADirectoryError:
            reason = f"a {cls.file_kind}, not a directory"
        except OSError as exc:
            reason = f"a readable {cls.file_kind} ({exc.strerror or exc})"
        else:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = f"UTF-8 encoded text ({exc})"
        raise cls.refuse([InputError("<file>", source, reason)], source)


# ------------------------------------------------------------- ValidationError -> words
def _unwrap(ann: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` layers (collecting their metadata) and a ``None`` union member."""
    meta: list[Any] = []
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            base, *extra = get_args(ann)
            for m in extra:
                meta.extend(m.metadata if isinstance(m, FieldInfo) else [m])
            ann = base
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) == 1:
                ann = args[0]
            else:
                return ann, meta
        else:
            return ann, meta


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _union_models(ann: Any) -> list[type[BaseModel]]:
    if get_origin(ann) in (Union, types.UnionType):
        return [a for a in get_args(ann) if _is_model(a)]
    return []


def _tag(model: type[BaseModel]) -> str | None:
    f = model.model_fields.get("type")
    if f is None:
        return None
    args = get_args(f.annotation)
    return str(args[0]) if args else None


def _num(v: float) -> str:
    """A bound as written: integers in full (``10000000``, not ``1e+07``), other numbers short."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return f"{v:g}"


def describe(ann: Any, meta: list[Any] | tuple[Any, ...] = ()) -> str:
    """What a field accepts, in words, from its annotation and constraints."""
    ann, inner = _unwrap(ann)
    meta = [*meta, *inner]
    for m in meta:
        if isinstance(m, Allowed):
            return m.text
    unit = next((f" {m.symbol}" for m in meta if isinstance(m, Unit)), "")
    origin = get_origin(ann)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(ann))
    models = _union_models(ann)
    if models:
        tags = ", ".join(repr(_tag(m)) for m in models)
        return f"a table with type = one of {tags}"
    if origin is tuple:
        item = get_args(ann)[0]
        return f"a list (array) whose items are: {describe(item)}"
    if ann is bool:
        return "true or false"
    if ann is str:
        return "text"
    if ann in (int, float):
        what = "an integer" if ann is int else "a number"
        bounds: dict[str, float] = {}
        for m in meta:
            for op, attr in (("≥", "ge"), (">", "gt"), ("≤", "le"), ("<", "lt")):
                if isinstance(m, getattr(at, attr.capitalize())):
                    bounds[op] = getattr(m, attr)
        if "≥" in bounds and "≤" in bounds:
            return f"{what} from {_num(bounds['≥'])} to {_num(bounds['≤'])}{unit}"
        parts = [f"{op} {_num(x)}" for op, x in bounds.items()]
        return f"{what} {' and '.join(parts)}{unit}" if parts else f"{what}{unit}"
    if _is_model(ann):
        return "a table with fields: " + ", ".join(_file_names(ann))
    return str(ann)


def _resolve(
    root: type[BaseModel], loc: tuple[str | int, ...]
) -> tuple[str, Any, list[Any], type[BaseModel] | None]:
    """Dotted path (tags of tagged unions and validator names dropped), annotation, metadata and
    owning model of a pydantic error location."""
    text = ""
    ann: Any = root
    meta: list[Any] = []
    owner: type[BaseModel] | None = None
    for item in loc:
        base, _ = _unwrap(ann)
        if isinstance(item, int):
            text += f"[{item}]"
            args = get_args(base) if get_origin(base) is tuple else ()
            ann, meta = (args[0] if args else None), []
            continue
        if get_origin(base) is dict:  # a key of a table: the path goes on with the value's type
            text = f"{text}.{item}" if text else str(item)
            args = get_args(base)
            ann, meta = (args[1] if len(args) == 2 else None), []
            continue
        tagged = {_tag(m): m for m in _union_models(base)}
        if item in tagged:
            ann, meta = tagged[item], []
            continue
        if item.startswith("function-"):
            continue
        flat = item in getattr(base, "flattened_fields", ())
        if not flat:
            text = f"{text}.{item}" if text else str(item)
        if _is_model(base):
            owner = base
            finfo = _field(base, item)
            ann, meta = (finfo.annotation, list(finfo.metadata)) if finfo else (None, [])
        else:
            ann, meta = None, []
    return text, ann, meta, owner


def _field(model: type[BaseModel], name: str) -> FieldInfo | None:
    """The field the file calls ``name``: by its alias if it has one, else by its own name."""
    for key, finfo in model.model_fields.items():
        if (finfo.alias or key) == name:
            return finfo
    return None


def _file_names(model: type[BaseModel]) -> list[str]:
    """The model's field names as the file spells them (aliases where given)."""
    return [finfo.alias or key for key, finfo in model.model_fields.items()]


def _join(path: str, field: str, root: str) -> str:
    if not field:
        return path or root
    return f"{path}.{field}" if path else field


def translate(exc: ValidationError, root: type[InputModel], prefix: str = "") -> list[InputError]:
    """One :class:`InputError` per pydantic error of ``root`` (or of a field of it validated alone,
    named by ``prefix``), with the dotted path, the value and what is allowed."""
    whole = f"<{root.file_kind}>"
    out: list[InputError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path, ann, meta, owner = _resolve(root, loc)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        typ = err["type"]
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        value = err.get("input")
        if isinstance(inner, InputFileError):
            out += [
                InputError(_join(path, p.field, whole), p.value, p.allowed) for p in inner.problems
            ]
            continue
        if isinstance(inner, InputError):
            out.append(InputError(_join(path, inner.field, whole), inner.value, inner.allowed))
            continue
        if typ in ("union_tag_invalid", "union_tag_not_found"):
            tags = ctx.get("expected_tags") or ", ".join(
                repr(_tag(m)) for m in _union_models(_unwrap(ann)[0])
            )
            got = ctx.get("tag", MISSING)
            allowed = f"one of {tags}"
            if typ == "union_tag_not_found":
                allowed = "required field: " + allowed
            else:
                allowed += did_you_mean(got, [t.strip("'") for t in str(tags).split(", ")])
            out.append(InputError(_join(path, "type", whole), got, allowed))
            continue
        if typ == "extra_forbidden":
            fields = _file_names(owner) if owner is not None else []
            parent = path.rsplit(".", 1)[0] if "." in path else f"the {root.file_kind}"
            name = str(loc[-1])
            out.append(
                InputError(
                    path or whole,
                    value,
                    f"no field {name!r} in {parent}; allowed fields: "
                    + ", ".join(fields)
                    + did_you_mean(name, fields),
                )
            )
            continue
        described = describe(ann, meta) if ann is not None else str(err.get("msg", ""))
        if typ == "missing":
            out.append(InputError(path or whole, MISSING, f"required field: {described}"))
            continue
        base, _ = _unwrap(ann)
        if get_origin(base) is Literal:
            choices = tuple(str(a) for a in get_args(base))
            described += did_you_mean(value, choices, root.literal_aliases.get(choices))
        out.append(InputError(path or whole, value, described))
    return out
