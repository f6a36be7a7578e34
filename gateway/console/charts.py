"""Server-drawn SVG: the evaluation figures as grouped bars (one group per department). No script, no inline
style (the console's CSP forbids both): colours come from classes in ``static/console.css``, sizes from SVG
attributes. The text is autoescaped by the template that embeds the returned markup through ``Markup``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

__all__ = ["Series", "bar_chart"]

_WIDTH = 640
_ROW = 66  # one department's band: three bars of 19 px
_LABEL = 150  # left margin for department names
_TOP = 28


@dataclass(frozen=True, slots=True)
class Series:
    key: str  # a figure of ``CaseMetrics.rates()`` (a rate in [0, 1])
    label: str
    css: str  # the bar's class: s1, s2, s3


def bar_chart(title: str, rows: Mapping[str, Mapping[str, object]], series: Sequence[Series]) -> Markup:
    """Horizontal grouped bars of rates in [0, 1] per row; a missing rate (no case to count) draws no bar and
    says "n/a", so an empty department is not shown as a failure."""
    height = _TOP + _ROW * max(len(rows), 1) + 24 + 18 * len(series)
    plot = _WIDTH - _LABEL - 50
    bar_h = max(4, (_ROW - 8) // max(len(series), 1))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {_WIDTH} {height}" '
           f'width="100%" role="img" aria-label={quoteattr(title)}>', f"<title>{escape(title)}</title>"]
    for tick in (0, 0.5, 1):
        x = _LABEL + plot * tick
        out.append(f'<line class="grid" x1="{x:.0f}" y1="{_TOP - 6}" x2="{x:.0f}" y2="{_TOP + _ROW * len(rows)}"/>')
        out.append(f'<text class="tick" x="{x:.0f}" y="{_TOP - 10}" text-anchor="middle">{int(tick * 100)}%</text>')
    for i, (name, figures) in enumerate(rows.items()):
        y = _TOP + i * _ROW
        out.append(f'<text class="label" x="{_LABEL - 8}" y="{y + _ROW / 2 + 4:.0f}" text-anchor="end">'
                   f"{escape(name)}</text>")
        for j, s in enumerate(series):
            value = figures.get(s.key)
            by = y + 4 + j * bar_h
            if isinstance(value, int | float):
                w = plot * min(max(float(value), 0.0), 1.0)
                out.append(f'<rect class="bar {s.css}" x="{_LABEL}" y="{by}" width="{w:.1f}" height="{bar_h - 1}">'
                           f"<title>{escape(s.label)}: {value:.0%}</title></rect>")
                out.append(f'<text class="value" x="{_LABEL + w + 4:.0f}" y="{by + bar_h - 2}">{value:.0%}</text>')
            else:
                out.append(f'<text class="value" x="{_LABEL + 4}" y="{by + bar_h - 2}">n/a</text>')
    legend_y = _TOP + _ROW * max(len(rows), 1) + 16
    for j, s in enumerate(series):
        ly = legend_y + j * 18
        out.append(f'<rect class="bar {s.css}" x="{_LABEL}" y="{ly - 10}" width="12" height="12"/>')
        out.append(f'<text class="legend" x="{_LABEL + 18}" y="{ly}">{escape(s.label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
