"""Plots written by hand as SVG, without a plotting library: a document of panels, each a
set of lines over time (memory in MiB against seconds) with dashed horizontal lines for
limits and thin vertical marks for events, and a one-row legend in the panel's title line.

``leak.py`` and ``memory.py`` draw their figures with it::

    out = svg.document(960, 2 * 300 + 40, "Pool RSS ...")
    svg.panel(out, 30, "title", [(points, "#2ca02c", 2.0, "pool")], marks, [(200.0, "max_rss")], 30.0)
    svg.write(out, path)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: A line: its points (seconds, value), its colour, its stroke width and its legend label
#: ("" for none).
Series = tuple[Sequence[tuple[float, float]], str, float, str]
#: A vertical mark: its time, its colour and its legend label (one legend entry per
#: distinct colour and label).
Mark = tuple[float, str, str]

#: The colour of a ``worker_recycled`` mark in ``leak.svg``.
RED = "#d62728"


def esc(s: str) -> str:
    """Text for an SVG element."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_step(span: float, target: int = 6) -> float:
    """A step of 1, 2, 2.5 or 5 times a power of ten giving about ``target`` ticks over
    ``span``."""
    raw = span / max(1, target)
    mag = float(10 ** int(f"{raw:e}".split("e")[1]))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def document(width: float, height: float, title: str) -> list[str]:
    """The opening of an SVG document of ``width`` x ``height`` on white, ``title``
    centred at its top; ``panel`` adds to it and ``write`` closes it."""
    return [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">'
        ),
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" font-size="15" text-anchor="middle">{esc(title)}</text>',
    ]


def write(out: list[str], path: Path) -> None:
    """Closes the document ``out`` and writes it to ``path``."""
    path.write_text("\n".join([*out, "</svg>"]) + "\n")


def panel(
    out: list[str],
    top: float,
    title: str,
    series: Sequence[Series],
    marks: Sequence[Mark],
    hlines: Sequence[tuple[float, str]],
    x_max: float,
    width: float = 960,
    height: float = 300,
    y_label: str = "RSS (MiB)",
    x_label: str = "seconds since the load started",
) -> None:
    """One panel ``height`` high at ``top``: ``series`` as lines on a scale from 0 to a
    little over their largest value (or ``hlines``'), ``marks`` as vertical lines, each of
    ``hlines`` (value, label) as a dashed line, over 0 to ``x_max`` seconds."""
    left, right, pad_top, pad_bottom = 70, 20, 30, 40
    pw, ph = width - left - right, height - pad_top - pad_bottom
    y_max = max([v for s, _, _, _ in series for _, v in s] + [v for v, _ in hlines] + [1.0]) * 1.08
    y_step = nice_step(y_max)
    x_step = nice_step(x_max, 10)

    def X(t: float) -> float:
        return left + pw * max(0.0, min(t, x_max)) / x_max

    def Y(v: float) -> float:
        return top + pad_top + ph * (1 - v / y_max)

    out.append(f'<text x="{left}" y="{top + 18}" font-size="14" font-weight="bold">{esc(title)}</text>')
    out.append(
        f'<rect x="{left}" y="{top + pad_top}" width="{pw}" height="{ph}" fill="none" stroke="#444" '
        'stroke-width="1"/>'
    )
    v = 0.0
    while v <= y_max:
        y = Y(v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{v:g}</text>')
        v += y_step
    t = 0.0
    while t <= x_max + 1e-9:
        x = X(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{top + pad_top + ph}" x2="{x:.1f}" y2="{top + pad_top + ph + 4}" '
            'stroke="#444"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{top + pad_top + ph + 16}" font-size="11" '
            f'text-anchor="middle">{t:g}</text>'
        )
        t += x_step
    out.append(
        f'<text x="{left + pw / 2}" y="{top + height - 6}" font-size="12" text-anchor="middle">'
        f"{esc(x_label)}</text>"
    )
    out.append(
        f'<text x="16" y="{top + pad_top + ph / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + pad_top + ph / 2})">{esc(y_label)}</text>'
    )
    for value, label in hlines:
        y = Y(value)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#888" '
            'stroke-dasharray="6,4"/>'
        )
        out.append(
            f'<text x="{left + pw - 4}" y="{y + 13:.1f}" font-size="11" text-anchor="end" '
            f'fill="#555">{esc(label)}</text>'
        )
    for t, color, _ in marks:
        x = X(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{top + pad_top}" x2="{x:.1f}" y2="{top + pad_top + ph}" '
            f'stroke="{color}" stroke-width="1" stroke-opacity="0.7"/>'
        )
    for points, color, stroke, _ in series:
        if not points:
            continue
        path = " ".join(f"{X(t):.1f},{Y(v):.1f}" for t, v in points)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="{stroke}" points="{path}"/>')
    # legend: one row in the panel's title line, right-aligned, clear of the data
    entries = [(color, max(stroke, 2.0), label) for _, color, stroke, label in series if label]
    for mark in dict.fromkeys((color, label) for _, color, label in marks if label):
        entries.append((mark[0], 2.0, mark[1]))
    widths = [30 + 7 * len(label) + 16 for _, _, label in entries]  # ~7 px a character at 12 px
    lx, ly = left + pw - sum(widths), top + 18
    for (color, stroke, label), w in zip(entries, widths):
        out.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{color}" '
            f'stroke-width="{stroke}"/>'
        )
        out.append(f'<text x="{lx + 30}" y="{ly}" font-size="12">{esc(label)}</text>')
        lx += w
