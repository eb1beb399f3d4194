"""HTML forms ↔ the package's input tables.

Every input of a page is named by the path of its field in the input file, as errors name it
(``patient.age_years``, ``sites[0].concerns[0].depth_mm``, ``sessions[2].needle_length_mm``), so
that :func:`nest` turns a submitted form into the same table a TOML file gives, the package's own
models validate it (:class:`~microneedling.course.model.Course`,
:class:`~microneedling.course.patient.PatientFile`) and :func:`field_errors` puts each problem's
message (the CLI's message) next to the input of the same name.

Three marks in a name:

* ``T:key`` (a last segment): the field belongs to the variant ``T`` of its table (a device type, a
  condition type) and is kept only when the table's ``type`` is ``T``;
* ``key:json``: the value is JSON (a part of the table the page does not edit, e.g. a site's
  conditions in the course editor);
* ``key:list``: the value is one item of a list (several inputs of that name, e.g. checkboxes).

Values are typed by their text: an integer or a decimal number becomes a number, ``true`` a flag;
the fields of :data:`TEXT_FIELDS` stay text; an empty input is left out (the file's default).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from microneedling.errors import InputError, InputFileError

__all__ = ["TEXT_FIELDS", "field_errors", "flatten", "nest", "parse_name", "typed"]

#: fields whose values stay text even when they look like numbers
TEXT_FIELDS = frozenset(
    {
        "name",
        "description",
        "site",
        "product",
        "type",
        "tip",
        "sex",
        "scar_type",
        "stage",
        "kind",
        "profile",
        "photoprotection",
        "applied",
        "melasma_type",
        "severity",
        "control",
        "population",
        "design",
        "endpoints",
        "allowed_devices",
        "allowed_topicals",
    }
)

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_NAME = re.compile(r"[^.\[\]]+(?:\[\d+\]|\.[^.\[\]]+)*")


def typed(key: str, text: str) -> Any:
    """The value of an input named ``key`` from its text (see the module docstring)."""
    s = text.strip()
    if key in TEXT_FIELDS:
        return s
    if s == "true":
        return True
    if s == "false":
        return False
    if _INT.fullmatch(s):
        return int(s)
    if _FLOAT.fullmatch(s):
        return float(s)
    return s


def parse_name(name: str) -> list[str | int]:
    """``sites[0].concerns[1].depth_mm`` → ``["sites", 0, "concerns", 1, "depth_mm"]``."""
    if not _NAME.fullmatch(name):
        raise InputError("form field", name, "a field path such as sites[0].name")
    return [m.group(1) if m.group(1) is not None else int(m.group(2))
            for m in _SEGMENT.finditer(name)]  # fmt: skip


def _as_lists(node: Any) -> Any:
    """Dicts with integer keys become lists (in key order: removed rows leave no hole)."""
    if isinstance(node, dict):
        items = {k: _as_lists(v) for k, v in node.items()}
        if items and all(isinstance(k, int) for k in items):
            return [items[k] for k in sorted(items)]
        return items
    return node


def _drop_variants(node: Any) -> Any:
    """Keep ``T:key`` entries of a table whose ``type`` is ``T`` (as ``key``); drop the others."""
    if isinstance(node, list):
        return [_drop_variants(v) for v in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    out: dict[str, Any] = {}
    for k, v in node.items():
        if ":" in k:
            variant, _, key = k.partition(":")
            if variant == kind:
                out[key] = _drop_variants(v)
        else:
            out[k] = _drop_variants(v)
    return out


def nest(pairs: Iterable[tuple[str, str]], skip: Iterable[str] = ("csrf_token", "action")) -> Any:
    """A submitted form (name, value pairs in order) as the nested table of an input file."""
    skipped = set(skip)
    root: dict[Any, Any] = {}
    for name, raw in pairs:
        if name in skipped:
            continue
        is_list = name.endswith(":list")
        is_json = name.endswith(":json")
        path = parse_name(name[:-5] if is_list or is_json else name)
        last = path[-1]
        key = last.partition(":")[2] if isinstance(last, str) and ":" in last else last
        if is_json:
            if not raw.strip():
                continue
            try:
                value: Any = json.loads(raw)
            except ValueError:
                raise InputError(
                    name, raw[:80], "JSON (this field is written by the page)"
                ) from None
        elif is_list:
            value = typed(str(key), raw)
        else:
            if not raw.strip():
                continue
            value = typed(str(key), raw)
        node = root
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
            if not isinstance(node, dict):
                raise InputError("form field", name, "one input per field")
        if is_list:
            node.setdefault(last, [])
            if raw.strip():
                node[last].append(value)
        else:
            node[last] = value
    return _drop_variants(_as_lists(root))


def flatten(table: Any, prefix: str = "") -> dict[str, Any]:
    """The inverse of :func:`nest` for filling a form: ``{"sites[0].name": "cheek", ...}``
    (lists of tables by index; lists of plain values and empty lists as they are)."""
    out: dict[str, Any] = {}
    if isinstance(table, Mapping):
        for k, v in table.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(table, list | tuple) and table and all(isinstance(x, Mapping) for x in table):
        for i, v in enumerate(table):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = table
    return out


def field_errors(exc: InputError | InputFileError) -> dict[str, list[str]]:
    """Each problem's message (as the CLI prints it) by field path; a problem of a whole table or
    of the file under ``""``."""
    problems = exc.problems if isinstance(exc, InputFileError) else [exc]
    out: dict[str, list[str]] = {}
    for p in problems:
        out.setdefault(p.field or "", []).append(str(p))
    return out
