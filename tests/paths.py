"""Where the tests find the repository's files: examples, docs and the package data."""

from pathlib import Path

from microneedling.io import data_path

REPO = Path(__file__).resolve().parents[1]
"""The repository root."""
EXAMPLES = REPO / "examples"
"""Shipped example courses, patient files and trial specs."""
DOCS = REPO / "docs"
"""The documentation."""
DATA = data_path()
"""The package data (``src/microneedling/data``)."""
