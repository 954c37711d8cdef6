"""Small server-side SVG charts for the segment insights page: a line chart (size over time), horizontal bar charts
(top values) and a share bar (email consent). Plain SVG strings, every text escaped; no JavaScript, no library.
Colours come from unfold's theme variables so the charts follow light and dark mode."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PRIMARY = "var(--color-primary-600, #7c3aed)"
MUTED = "var(--color-base-400, #9ca3af)"
GRID = "var(--color-base-200, #e5e7eb)"
TEXT = "currentColor"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def line_chart(points: Sequence[tuple[str, int]], *, title: str, width: int = 720, height: int = 240) -> SafeString:
    """Points (label, value) oldest first: a line with dots, a y axis from 0 with gridlines, first / last labels."""
    left, right, top, bottom = 64, 16, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    step = _nice_max(max((v for _, v in points), default=0) / 4)
    step = max(1, math.ceil(step))  # customer counts: whole-number gridlines
    peak = step * 4
    parts = [
        f'<svg class="seg-chart seg-line" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{TEXT}" opacity=".7">'
            f"{escape(_number(peak * i / 4))}</text>"
        )
    if not points:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" font-size="13" '
            f'fill="{TEXT}" opacity=".7">No measurements yet</text></svg>'
        )
        return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped

    def xy(index: int, value: float) -> tuple[float, float]:
        x = left + (plot_w / 2 if len(points) == 1 else plot_w * index / (len(points) - 1))
        return x, top + plot_h - plot_h * value / peak

    coords = [xy(i, v) for i, (_, v) in enumerate(points)]
    if len(coords) > 1:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
        area = f"{path} L{coords[-1][0]:.1f},{top + plot_h} L{coords[0][0]:.1f},{top + plot_h} Z"
        parts.append(f'<path d="{area}" fill="{PRIMARY}" opacity=".12"/>')
        parts.append(f'<path class="seg-line-path" d="{path}" fill="none" stroke="{PRIMARY}" stroke-width="2.5"/>')
    for (label, value), (x, y) in zip(points, coords, strict=True):
        parts.append(
            f'<circle class="seg-point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{PRIMARY}">'
            f"<title>{escape(label)}: {escape(_number(value))}</title></circle>"
        )
    labels = [(0, "start")] if len(points) == 1 else [(0, "start"), (len(points) - 1, "end")]
    for index, anchor in labels:
        x = coords[index][0]
        parts.append(
            f'<text x="{x:.1f}" y="{height - 12}" text-anchor="{"middle" if len(points) == 1 else anchor}" '
            f'font-size="11" fill="{TEXT}" opacity=".7">{escape(points[index][0])}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def bar_chart(rows: Sequence[dict[str, Any]], *, total: int, title: str, width: int = 520) -> SafeString:
    """Horizontal bars: rows {"label", "count"}, each with its share of `total` (the segment's customers)."""
    bar_h, gap, label_w, value_w = 22, 8, 170, 110
    height = max(1, len(rows)) * (bar_h + gap) + gap
    peak = max((row["count"] for row in rows), default=0) or 1
    plot_w = width - label_w - value_w
    parts = [
        f'<svg class="seg-chart seg-bars" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    if not rows:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2 + 8}" text-anchor="middle" font-size="13" fill="{TEXT}" '
            f'opacity=".7">No member has a value</text></svg>'
        )
        return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
    for i, row in enumerate(rows):
        y = gap + i * (bar_h + gap)
        label = str(row["label"])
        short = label if len(label) <= 24 else label[:23] + "…"
        share = f" ({row['count'] / total:.0%})" if total else ""
        bar = max(2.0, plot_w * row["count"] / peak)
        parts.append(
            f'<g class="seg-bar"><title>{escape(label)}: {escape(_number(row["count"]))}{escape(share)}</title>'
            f'<text x="{label_w - 8}" y="{y + bar_h / 2 + 4}" text-anchor="end" font-size="12" fill="{TEXT}">'
            f"{escape(short)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{bar:.1f}" height="{bar_h}" rx="3" fill="{PRIMARY}"/>'
            f'<text x="{label_w + bar + 6:.1f}" y="{y + bar_h / 2 + 4}" font-size="12" fill="{TEXT}" opacity=".8">'
            f"{escape(_number(row['count']))}{escape(share)}</text></g>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def share_bar(part: int, total: int, *, title: str, width: int = 520) -> SafeString:
    """One bar split into the share with something (e.g. email consent) and the rest, with the percentage."""
    share = part / total if total else 0
    filled = (width - 2) * share
    return mark_safe(  # noqa: S308 - every text is escaped
        f'<svg class="seg-chart seg-share" role="img" viewBox="0 0 {width} 56" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<rect x="1" y="1" width="{width - 2}" height="26" rx="4" fill="{MUTED}" opacity=".35"/>'
        f'<rect class="seg-share-part" x="1" y="1" width="{filled:.1f}" height="26" rx="4" fill="{PRIMARY}"/>'
        f'<text x="1" y="48" font-size="12" fill="{TEXT}">{escape(_number(part))} of {escape(_number(total))} '
        f"({share:.1%})</text></svg>"
    )
