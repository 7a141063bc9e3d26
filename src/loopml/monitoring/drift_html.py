"""A drift report as one self-contained HTML page: a summary, a table, and per-column histograms as inline SVG.

No script, no stylesheet or font from the network: the page opens offline. Every text taken from the data
(column and category names, notes) is HTML-escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from loopml.stats.drift import ColumnDrift, Histogram

if TYPE_CHECKING:
    from loopml.monitoring.drift import DriftReport

WIDTH, HEIGHT, PAD = 360, 120, 18
REFERENCE_COLOR, CURRENT_COLOR = "#4c78a8", "#f58518"

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;
vertical-align:middle}th{background:#f4f4f4}.drift{color:#b00020;font-weight:600}.ok{color:#1b7f3b}
.muted{color:#777}.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def render(report: DriftReport) -> str:
    """The HTML page of `report`."""
    share = "n/a" if report.share is None else f"{report.share:.0%}"
    verdict = '<span class="drift">DRIFT</span>' if report.drifted else '<span class="ok">no drift</span>'
    weighted = (
        "" if report.weighted_share is None else f", weighted by importance {report.weighted_share:.0%}"
    )
    rows = "\n".join(_row(c) for c in report.columns.values())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LoopML drift report</title><style>{_STYLE}</style></head>
<body>
<h1>Drift report: {verdict}</h1>
<p>{report.drifted_count} of {report.compared} compared columns drifted ({share}{weighted}); the dataset drifts at
{report.drift_share:.0%}. Reference: {escape(report.reference_source)} of {report.reference_rows:,} rows; current:
{report.current_rows:,} rows.</p>
<p class="legend">Histograms:<span style="background:{REFERENCE_COLOR}"></span>reference
<span style="background:{CURRENT_COLOR}"></span>current (share of values per bin)</p>
<table>
<tr><th>column</th><th>kind</th><th>method</th><th>score</th><th>threshold</th><th>status</th><th>PSI</th>
<th>reference vs current</th></tr>
{rows}
</table>
</body></html>
"""


def _row(c: ColumnDrift) -> str:
    status = '<span class="drift">drifted</span>' if c.drifted else escape(c.status)
    if c.status not in ("ok", "drifted"):
        status += f'<br><span class="muted">{escape(c.note)}</span>'
    psi = c.scores.get("psi")
    psi_text = "" if psi is None else f"{psi:.4g} ({escape(c.psi_level or '')})"
    chart = histogram_svg(c.histogram) if c.histogram is not None else ""
    return (
        f"<tr><td>{escape(c.column)}</td><td>{escape(c.kind)}</td><td>{escape(c.method or '')}</td>"
        f"<td>{_number(c.score)}</td><td>{_number(c.threshold)}</td><td>{status}</td><td>{psi_text}</td>"
        f"<td>{chart}</td></tr>"
    )


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4g}"


def histogram_svg(h: Histogram, *, width: int = WIDTH, height: int = HEIGHT) -> str:
    """Reference and current shares per bin as paired bars in one inline SVG (labels escaped).

    Also drawn by the model's monitoring report (`report_html.py`), so both pages look alike.
    """
    n = len(h.labels)
    top = max([*h.reference, *h.current, 1e-12])
    slot = (width - 2 * PAD) / max(n, 1)
    bar = slot * 0.42
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    base = height - PAD
    for i, label in enumerate(h.labels):
        x = PAD + i * slot
        for offset, value, color in (
            (0.0, h.reference[i], REFERENCE_COLOR),
            (bar, h.current[i], CURRENT_COLOR),
        ):
            bar_height = (height - 2 * PAD) * value / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{base - bar_height:.1f}" width="{bar:.1f}" '
                f'height="{bar_height:.1f}" fill="{color}"><title>{escape(label)}: {value:.2%}</title></rect>'
            )
    parts.append(f'<line x1="{PAD}" y1="{base}" x2="{width - PAD}" y2="{base}" stroke="#999"/>')
    first, last = escape(h.labels[0]) if n else "", escape(h.labels[-1]) if n else ""
    parts.append(f'<text x="{PAD}" y="{height - 4}" font-size="9" fill="#555">{first}</text>')
    parts.append(
        f'<text x="{width - PAD}" y="{height - 4}" font-size="9" fill="#555" text-anchor="end">{last}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
