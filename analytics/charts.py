"""Charts drawn on the server as inline SVG: no JavaScript library, no internet, printable.

Each function takes plain numbers and returns an SVG string that scales to its container
(`viewBox`, width 100%). Every text is escaped. Elements carry `data-*` attributes where the run
page's replay needs them (`data-round`), so the scrubber can show a chart as of any round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from itertools import pairwise
from typing import Any

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563",
           "#65a30d"]
W, H = 640, 240
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 14, 44


def _svg(body: list[str], *, label: str, height: int = H) -> str:
    return (f'<svg class="chart" viewBox="0 0 {W} {height}" width="100%" role="img" aria-label="{escape(label)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>{"".join(body)}</svg>')


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10 or float(v).is_integer():
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    return f"{v:.2f}"


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000):
        if v <= step:
            return float(step)
    return float(v)


def _ticks(top: float, integer: bool) -> int:
    # Counts get whole-number gridlines (top is 1, 2, 5, 10, 20, 25, 50, ...); shares get quarters.
    if not integer:
        return 4
    return 1 if top == 1 else 2 if top == 2 else 5 if top % 5 == 0 else 4


def _y_axis(top: float, *, height: int = H, ticks: int = 4, fmt: Any = _fmt) -> list[str]:
    out = []
    for i in range(ticks + 1):
        v = top * i / ticks
        y = height - PAD_B - (height - PAD_T - PAD_B) * i / ticks
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(fmt(v))}</text>')
    return out


def empty(label: str, message: str = "No data yet") -> str:
    return _svg([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="empty">{escape(message)}</text>'],
                label=label)


def bars(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, label: str,
         y_fmt: Any = _fmt, stacked: bool = True) -> str:
    """Vertical bars, one group per label; several series stack (or sit side by side)."""
    if not labels or not any(any(v for v in vals) for _, vals in series):
        return empty(label)
    totals = [sum(vals[i] for _, vals in series) if stacked else max(vals[i] for _, vals in series)
              for i in range(len(labels))]
    top = _nice_max(max(totals))
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    slot = plot_w / len(labels)
    bar_w = slot * 0.7 / (1 if stacked else len(series))
    out = _y_axis(top, fmt=y_fmt, ticks=_ticks(top, y_fmt is _fmt))
    for i, name in enumerate(labels):
        base = 0.0
        for j, (sname, vals) in enumerate(series):
            v = vals[i]
            h = plot_h * v / top
            x = PAD_L + slot * i + slot * 0.15 + (0 if stacked else j * bar_w)
            y = H - PAD_B - plot_h * (base + v) / top if stacked else H - PAD_B - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0):.1f}" '
                       f'fill="{PALETTE[j % len(PALETTE)]}" class="bar"><title>{escape(name)} · {escape(sname)}: '
                       f'{escape(y_fmt(v))}</title></rect>')
            if stacked:
                base += v
        if len(labels) <= 16 or i % max(1, len(labels) // 12) == 0:
            out.append(f'<text x="{PAD_L + slot * (i + 0.5):.1f}" y="{H - PAD_B + 16}" text-anchor="middle" '
                       f'class="tick">{escape(str(name)[:14])}</text>')
    if len(series) > 1:
        out += _legend([s for s, _ in series], y=H - 10)
    return _svg(out, label=label)


def histogram(bins: Sequence[dict[str, Any]], *, label: str, x_fmt: Any = _fmt, color: str = PALETTE[0]) -> str:
    """Equal-width bins ({lo, hi, n}) as touching bars, with the bin edges on the x axis."""
    if not bins or not any(b["n"] for b in bins):
        return empty(label)
    top = _nice_max(max(b["n"] for b in bins))
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    slot = plot_w / len(bins)
    out = _y_axis(top, ticks=_ticks(top, True))
    for i, b in enumerate(bins):
        h = plot_h * b["n"] / top
        x = PAD_L + slot * i
        out.append(f'<rect x="{x + 1:.1f}" y="{H - PAD_B - h:.1f}" width="{slot - 2:.1f}" height="{h:.1f}" '
                   f'fill="{color}" class="bar"><title>{escape(x_fmt(b["lo"]))}–{escape(x_fmt(b["hi"]))}: '
                   f'{b["n"]}</title></rect>')
        if i % max(1, len(bins) // 6) == 0:
            out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 16}" text-anchor="middle" class="tick">'
                       f'{escape(x_fmt(b["lo"]))}</text>')
    out.append(f'<text x="{W - PAD_R:.1f}" y="{H - PAD_B + 16}" text-anchor="end" class="tick">'
               f'{escape(x_fmt(bins[-1]["hi"]))}</text>')
    return _svg(out, label=label)


def _legend(names: Sequence[str], *, y: float) -> list[str]:
    out, x = [], PAD_L
    for j, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y}" class="legend">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out


@dataclass(frozen=True)
class Point:
    round_no: int
    price: float
    label: str = ""


def offers(lines: Mapping[str, Sequence[Point]], *, rounds: int, label: str, guides: dict[str, float] | None = None
           ) -> str:
    """Prices over rounds: one line per party, dashed guides (the buyer's max, each floor).

    Every point and segment carries data-round, so the replay can hide what came later.
    """
    values = [p.price for pts in lines.values() for p in pts] + list((guides or {}).values())
    if not values:
        return empty(label, "No prices were named in this run")
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or max(hi * 0.05, 0.5)
    lo, hi = max(0.0, lo - pad), hi + pad
    plot_w, plot_h = W - PAD_L - PAD_R - 150, H - PAD_T - PAD_B
    rounds = max(rounds, 1)

    def xy(r: int, v: float) -> tuple[float, float]:
        x = PAD_L + (plot_w * (r - 1) / (rounds - 1) if rounds > 1 else plot_w / 2)
        return x, H - PAD_B - plot_h * (v - lo) / (hi - lo)

    out = []
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        y = H - PAD_B - plot_h * i / 4
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">${v:.2f}</text>')
    for r in range(1, rounds + 1):
        x, _ = xy(r, lo)
        out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 16}" text-anchor="middle" class="tick">R{r}</text>')
    for name, value in (guides or {}).items():
        _, y = xy(1, value)
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="guide"/>')
        out.append(f'<text x="{PAD_L + plot_w + 4}" y="{y + 4:.1f}" class="legend">{escape(name)} '
                   f'${value:.2f}</text>')
    for j, (name, pts) in enumerate(lines.items()):
        color = PALETTE[j % len(PALETTE)]
        pts = sorted(pts, key=lambda p: p.round_no)
        for a, b in pairwise(pts):
            (x1, y1), (x2, y2) = xy(a.round_no, a.price), xy(b.round_no, b.price)
            out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                       f'class="series" data-round="{b.round_no}"/>')
        for p in pts:
            x, y = xy(p.round_no, p.price)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}" class="point" '
                       f'data-round="{p.round_no}"><title>R{p.round_no} {escape(name)}: ${p.price:.2f} '
                       f'{escape(p.label)}</title></circle>')
    out += _legend(list(lines), y=H - 10)
    return _svg(out, label=label)


def forest(rows: Sequence[tuple[str, float | None, float | None, float | None]], *, label: str) -> str:
    """Differences with their CIs around a zero line, one row per metric (each row scaled on its own)."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return empty(label, "No pairs to compare")
    row_h, left = 26, 200
    height = PAD_T + row_h * len(rows) + 20
    width = W - left - PAD_R
    zero = left + width / 2
    out = [f'<line x1="{zero}" x2="{zero}" y1="{PAD_T - 4}" y2="{height - 16}" class="guide"/>']
    for i, (name, mean, low, high) in enumerate(rows):
        span = max(abs(low or 0), abs(high or 0), abs(mean or 0)) or 1.0
        y = PAD_T + row_h * i + row_h / 2

        def x(v: float, span: float = span) -> float:
            return zero + (width / 2 - 10) * v / span

        excludes = low is not None and high is not None and (low > 0 or high < 0)
        color = PALETTE[0] if excludes else "#9ca3af"
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(name)}</text>')
        out.append(f'<line x1="{x(low or 0):.1f}" x2="{x(high or 0):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{color}" stroke-width="3"/>')
        out.append(f'<circle cx="{x(mean or 0):.1f}" cy="{y:.1f}" r="5" fill="{color}"><title>{escape(name)}: '
                   f'{mean:+.4g} [{(low or 0):+.4g}, {(high or 0):+.4g}]</title></circle>')
    out.append(f'<text x="{zero}" y="{height - 4}" text-anchor="middle" class="tick">0 (B − A; each row to its '
               'own scale)</text>')
    return _svg(out, label=label, height=height)


def lines(series: Mapping[str, Sequence[float | None]], *, label: str, top: float = 1.0, x_label: str = "run",
          y_fmt: Any = _fmt) -> str:
    """Values over steps 1..n (e.g. a cumulative average utility per run): one line per series, y from
    0 to `top`; a None leaves a gap. Each point carries data-step and a tooltip."""
    n = max((len(v) for v in series.values()), default=0)
    if not n or not any(x is not None for v in series.values() for x in v):
        return empty(label)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def xy(i: int, v: float) -> tuple[float, float]:
        x = PAD_L + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)
        return x, H - PAD_B - plot_h * max(0.0, min(v, top)) / top

    out = _y_axis(top, fmt=y_fmt)
    step = max(1, n // 12)
    for i in range(0, n, step):
        x, _ = xy(i, 0)
        out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 16}" text-anchor="middle" class="tick">{i + 1}</text>')
    out.append(f'<text x="{W - PAD_R}" y="{H - PAD_B + 30}" text-anchor="end" class="tick">{escape(x_label)}</text>')
    for j, (name, values) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        points = [(i, v) for i, v in enumerate(values) if v is not None]
        for (i1, v1), (i2, v2) in pairwise(points):
            if i2 == i1 + 1:
                (x1, y1), (x2, y2) = xy(i1, v1), xy(i2, v2)
                out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                           f'class="series"/>')
        for i, v in points:
            x, y = xy(i, v)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}" class="point" data-step="{i + 1}">'
                       f'<title>{escape(name)} after {escape(x_label)} {i + 1}: {escape(y_fmt(v))}</title></circle>')
    out += _legend(list(series), y=H - 10)
    return _svg(out, label=label)
