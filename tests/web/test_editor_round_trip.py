"""The course editor loses nothing: a course rendered into the editor's form and submitted
unchanged (as a browser would: checked boxes only, the selected options, the chosen device type's
fields) is the same course, for every shipped example and a topical with every optional field."""

from __future__ import annotations

import copy
import html
import re
from pathlib import Path
from typing import Any

import pytest

from microneedling.course.model import Course
from microneedling.parameters.molecules import shipped_molecules
from microneedling.vocabulary import SITES
from microneedling.web.pages import _DEVICE_FIELDS, _course_table, _course_values
from microneedling.web.presets import ABSORB_COURSE
from microneedling.web.render import render_page

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))


def submitted(page: str, device: str) -> list[tuple[str, str]]:
    """What a browser sends for the editor's form (first form of the page) unchanged."""
    form = page[page.index('<form class="stack" method="post" action="/web/courses/') :]
    form = form[: form.index("</form>")]
    pairs = []
    for m in re.finditer(r"<(input|select)([^>]*)>", form):
        attrs = m.group(2)
        name_m = re.search(r'name="([^"]+)"', attrs)
        if not name_m:
            continue
        name = html.unescape(name_m.group(1))
        if re.match(r"device\.(\w+):", name) and not name.startswith(f"device.{device}:"):
            continue  # the script disables the other device types' fields
        if 'type="checkbox"' in attrs:
            if " checked" in attrs:
                pairs.append((name, "true"))
        elif m.group(1) == "select":
            options = form[m.end() : form.index("</select>", m.end())]
            chosen = re.search(r'<option value="([^"]*)" selected', options) or re.search(
                r'<option value="([^"]*)"', options
            )
            assert chosen is not None
            pairs.append((name, html.unescape(chosen.group(1))))
        else:
            value = re.search(r'value="([^"]*)"', attrs)
            pairs.append((name, html.unescape(value.group(1)) if value else ""))
    return pairs


def editor(course: dict[str, Any]) -> str:
    values = _course_values(course)
    return render_page(
        "course.html.j2", kind="Course editor", title="t", active="",
        course={"id": 1, "patient_id": None}, values=values, errors={},
        sites=SITES,
        device_fields=_DEVICE_FIELDS, products=sorted(shipped_molecules()),
        n_sessions=values["_sessions"], site_names=values["_sites"], draws=32, runs=[],
    )  # fmt: skip


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_survive_the_editor(path: Path) -> None:
    course = Course.from_file(path)
    data = course.to_dict()
    back = _course_table(submitted(editor(data), data["device"]["type"]))
    assert Course.from_dict(back, source="editor").to_dict() == data


def test_optional_topical_fields_survive() -> None:
    data = copy.deepcopy(ABSORB_COURSE)
    data["sessions"][0]["topical"].update(
        {"ph": 5.5, "water_fraction": 0.8, "applied": "before", "in_vitro": True}
    )
    data["patient"]["history"] = {"keloid_history": True, "isotretinoin_months_ago": 14.0}
    data["patient"]["photoprotection"] = "strict"
    want = Course.from_dict(data, source="course").to_dict()
    back = _course_table(submitted(editor(want), "roller"))
    assert Course.from_dict(back, source="editor").to_dict() == want
