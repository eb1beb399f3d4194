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
