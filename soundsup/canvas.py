"""The canvas of every figure: drawn off-screen (Agg, no pyplot state, no display) and written
atomically as PNG at :data:`DPI` dots per inch without cropping, so that a figure of
``figsize`` (inches) is ``figsize * DPI`` pixels."""

from __future__ import annotations

import logging
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from soundsup.io import atomic_path

log = logging.getLogger(__name__)

DPI = 120


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches with constrained layout, on its own Agg canvas."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` as PNG atomically at :data:`DPI` (no cropping, so its size is known)."""
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=DPI, format="png")
    log.info("wrote %s", path)
