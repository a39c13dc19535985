"""Small inline-SVG charts (bars with error whiskers, grouped bars, horizontal bars): no plotting
dependency, and the HTML report stays one self-contained file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = (
    "#4C78A8",
    "#F58518",
    "#54A24B",
    "#E45756",
    "#72B7B2",
    "#B279A2",
    "#FF9DA6",
    "#9D755D",
    "#BAB0AC",
    "#EECA3B",
)
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _axis(x0: int, y0: int, height: int, width: int, top: float, ticks: int = 5) -> list[str]:
    out = []
    for i in range(ticks + 1):
        v = top * i / ticks
        y = y0 - height * i / ticks
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + width}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{v:.3g}</text>')
    return out


def grouped_bars(
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    title: str,
    errors: dict[str, Sequence[float]] | None = None,
    width: int = 760,
    height: int = 320,
) -> str:
    """Bars for each series within each group (one group and many series = a plain bar chart)."""
    left, right, top_pad, bottom = 56, 16, 36, 64
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    errs = [e for es in (errors or {}).values() for e in es if math.isfinite(e)]
    top = _nice_max(max(values, default=0) + max(errs, default=0))
    y0 = top_pad + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 22 * _legend_rows(series)}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" {FONT} font-weight="bold">{escape(title)}</text>',
    ]
    parts += _axis(left, y0, plot_h, plot_w, top)
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        gx = left + g * group_w + group_w * 0.1
        for s, (name, vs) in enumerate(series.items()):
            v = vs[g]
            if not math.isfinite(v):
                continue
            h = plot_h * v / top
            x = gx + s * bar_w
            color = PALETTE[s % len(PALETTE)] if len(series) > 1 else PALETTE[g % len(PALETTE)]
            parts.append(
                f'<rect x="{x:.1f}" y="{y0 - h:.1f}" width="{bar_w * 0.92:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{escape(name)} {escape(group)}: {v:.4f}</title></rect>'
            )
            e = (errors or {}).get(name, [math.nan] * len(groups))[g]
            if math.isfinite(e) and e > 0:
                cx = x + bar_w * 0.46
                ya, yb = y0 - plot_h * (v - e) / top, y0 - plot_h * (v + e) / top
                parts.append(f'<line x1="{cx:.1f}" y1="{ya:.1f}" x2="{cx:.1f}" y2="{yb:.1f}" stroke="#333"/>')
            if len(series) == 1 or len(groups) == 1:
                parts.append(
                    f'<text x="{x + bar_w * 0.46:.1f}" y="{y0 - h - 4:.1f}" text-anchor="middle" '
                    f"{FONT}>{v:.3f}</text>"
                )
        parts.append(
            f'<text x="{left + (g + 0.5) * group_w:.1f}" y="{y0 + 16}" text-anchor="middle" '
            f"{FONT}>{escape(group)}</text>"
        )
    if len(series) > 1:
        parts += _legend(list(series), left, height - 8)
    parts.append("</svg>")
    return "\n".join(parts)


def _legend_rows(series: dict[str, Sequence[float]]) -> int:
    return 0 if len(series) <= 1 else math.ceil(len(series) / 5) - 1


def _legend(names: list[str], x0: int, y: int) -> list[str]:
    out = []
    for i, name in enumerate(names):
        x, row = x0 + (i % 5) * 140, i // 5
        yy = y - 20 + 22 * row
        out.append(f'<rect x="{x}" y="{yy}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 16}" y="{yy + 11}" {FONT}>{escape(name)}</text>')
    return out


def hbars(
    labels: Sequence[str], values: Sequence[float], title: str, unit: str = "s", width: int = 760
) -> str:
    """Horizontal bars, one per label (training times)."""
    row_h, left, right, top_pad = 24, 150, 70, 32
    height = top_pad + row_h * len(labels) + 12
    top = _nice_max(max((v for v in values if math.isfinite(v)), default=0))
    plot_w = width - left - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" {FONT} font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = top_pad + i * row_h
        w = plot_w * max(v, 0) / top if math.isfinite(v) else 0
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" {FONT}>{escape(label)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 15}" {FONT}>{v:.2f} {escape(unit)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
