"""The shared matplotlib helpers: footer, palette, session markers, atomic PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from microneedling import __version__
from microneedling.reports import figures

PNG = b"\x89PNG\r\n\x1a\n"


def test_new_figure_carries_the_footer_and_is_pyplot_free() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = figures.new_figure(6.0, 3.0)
    assert plt.get_fignums() == before  # not registered with pyplot: nothing to close
    (footer,) = fig.texts
    assert footer.get_text() == f"{figures.FIGURE_FOOTER} · microneedling {__version__}"
    assert figures.footer_text() == footer.get_text()


def test_session_markers_label_the_first_only() -> None:
    ax = figures.new_figure(4.0, 3.0).subplots()
    figures.mark_sessions(ax, [0.0, 28.0, 56.0])
    lines = ax.get_lines()
    assert [float(ln.get_xdata()[0]) for ln in lines] == [0.0, 28.0, 56.0]
    assert lines[0].get_label() == "session"
    assert all(str(ln.get_label()).startswith("_") for ln in lines[1:])


def test_save_png_is_atomic_and_makes_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fig = figures.new_figure(3.0, 2.0)
    fig.subplots().plot([0, 1], [0, 1])
    p = figures.save_png(fig, tmp_path / "a" / "b.png")
    assert p.read_bytes()[:8] == PNG
    assert figures.png_bytes(fig)[:8] == PNG

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError):
        figures.save_png(fig, tmp_path / "a" / "c.png")
    assert sorted(x.name for x in (tmp_path / "a").iterdir()) == ["b.png"]  # nothing half-written


def test_palette_and_wrap() -> None:
    assert len(figures.PALETTE) == 10 and all(c.startswith("#") for c in figures.PALETTE)
    assert figures.wrap("a long axis label that needs two lines", 20).count("\n") == 1
    assert figures.label_box()["facecolor"] == "black"
