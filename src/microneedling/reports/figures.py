"""Shared matplotlib helpers of every PNG the package writes: one palette, one footer, one way to
make a figure and to save it.

Figures are pyplot-free (:class:`matplotlib.figure.Figure` with the Agg canvas), so writing one
neither needs a display nor leaks into pyplot's figure registry. matplotlib is imported inside the
functions: importing this module (or any report) does not load it, and the engine never imports it.

>>> fig = new_figure(6.0, 3.5)                      # doctest: +SKIP
>>> ax = fig.subplots()                             # doctest: +SKIP
>>> mark_sessions(ax, [0, 28, 56])                  # doctest: +SKIP
>>> save_png(fig, "out/figure.png")                 # doctest: +SKIP
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from microneedling.about import __version__
from microneedling.io import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "FIGURE_FOOTER",
    "PALETTE",
    "footer_text",
    "label_box",
    "mark_sessions",
    "new_figure",
    "png_bytes",
    "save_png",
    "wrap",
]

FIGURE_FOOTER = "Model estimate — not medical advice"
"""The line every figure carries (with the package version)."""

DPI = 110
"""Resolution of every PNG (pixels per inch)."""

#: Colour cycle (matplotlib "tab10"), used by the PNGs and the HTML charts alike.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

#: Text sizes (points): titles, axis labels, ticks and legends, the footer.
TITLE_SIZE, LABEL_SIZE, SMALL_SIZE, FOOTER_SIZE = 10, 9, 8, 7.5


def footer_text() -> str:
    """The footer line of every figure: the disclaimer in short and the package version."""
    return f"{FIGURE_FOOTER} · microneedling {__version__}"


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure (inches) with constrained layout, the footer at the bottom and room
    kept for it. Axis labels and titles are laid out inside the figure (never clipped)."""
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig = Figure(figsize=(width, height), dpi=100)
    foot = 0.3 / height
    fig.set_layout_engine(
        ConstrainedLayoutEngine(rect=(0.0, foot, 1.0, 1.0 - foot), h_pad=0.06, w_pad=0.06)
    )
    fig.text(
        0.5,
        0.08 / height,
        footer_text(),
        ha="center",
        va="bottom",
        fontsize=FOOTER_SIZE,
        color="0.35",
    )
    return fig


def wrap(text: str, width: int) -> str:
    """Break a long axis label or title over lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(text, width)) or text


def mark_sessions(ax: Axes, days: Iterable[float], label: bool = True) -> None:
    """Dashed vertical lines at the session days (the first labelled ``session``)."""
    for i, d in enumerate(days):
        ax.axvline(
            d,
            color="0.55",
            linestyle="--",
            linewidth=0.8,
            zorder=0,
            label="session" if (label and i == 0) else None,
        )


def label_box() -> dict[str, object]:
    """Text box for labels drawn over images or colour maps: white on a dark translucent box,
    readable on any colour (``ax.text(..., color="white", bbox=label_box())``)."""
    return {"boxstyle": "round,pad=0.2", "facecolor": "black", "alpha": 0.6, "linewidth": 0}


def save_png(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG atomically (temporary file, then rename); parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """``fig`` as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
