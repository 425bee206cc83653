"""Small inline SVG charts drawn by the server: a line over time and stacked bars. No script, no
external font or file: the page draws the same offline. Labels are escaped; numbers are formatted
here, never taken as text from outside."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["GREEN", "GREY", "RED", "YELLOW", "Segment", "line_chart", "stacked_bar"]

GREEN, YELLOW, RED, GREY, BLUE = "#2e7d32", "#e0a800", "#c62828", "#9aa3b2", "#1f5fbf"
_W, _H = 300, 96
_LEFT, _RIGHT, _TOP, _BOTTOM = 34, 6, 8, 18


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _ceiling(value: float) -> float:
    """A round top for the y axis: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0):
        if value <= step * power:
            return step * power
    return 10.0 * power


def line_chart(
    label: str,
    points: Sequence[tuple[float, float | None]],
    start: float,
    end: float,
    unit: str = "",
    colour: str = BLUE,
) -> str:
    """`points` (time, value) from `start` to `end`; a None value is a gap (nothing measured)."""
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    span = max(end - start, 1e-9)
    values = [value for _, value in points if value is not None]
    top = _ceiling(max(values, default=0.0))

    def x(at: float) -> float:
        return _LEFT + plot_w * min(max((at - start) / span, 0.0), 1.0)

    def y(value: float) -> float:
        return _TOP + plot_h * (1 - min(value / top, 1.0))

    runs: list[list[tuple[float, float]]] = [[]]
    for at, value in points:
        if value is None:
            runs.append([])
        else:
            runs[-1].append((x(at), y(value)))
    shapes = []
    for run in runs:
        if len(run) == 1:
            shapes.append(f"<circle cx='{run[0][0]:.1f}' cy='{run[0][1]:.1f}' r='2.5' fill='{colour}'/>")
        elif run:
            line = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
            base = _TOP + plot_h
            area = f"{run[0][0]:.1f},{base} {line} {run[-1][0]:.1f},{base}"
            shapes.append(f"<polygon points='{area}' fill='{colour}' fill-opacity='0.12'/>")
            shapes.append(f"<polyline points='{line}' fill='none' stroke='{colour}' stroke-width='1.5'/>")
    latest = next((value for _, value in reversed(points) if value is not None), None)
    shown = "no data yet" if latest is None else f"now {_number(latest)}{unit}"
    minutes = round(span / 60)
    axis = (
        f"<line x1='{_LEFT}' y1='{_TOP + plot_h}' x2='{_W - _RIGHT}' y2='{_TOP + plot_h}' stroke='#c9ced6'/>"
        f"<line x1='{_LEFT}' y1='{_TOP}' x2='{_W - _RIGHT}' y2='{_TOP}' stroke='#eef0f3'/>"
        f"<text x='{_LEFT - 4}' y='{_TOP + 4}' text-anchor='end'>{_number(top)}{escape(unit)}</text>"
        f"<text x='{_LEFT - 4}' y='{_TOP + plot_h}' text-anchor='end'>0</text>"
        f"<text x='{_LEFT}' y='{_H - 4}'>-{minutes} min</text>"
        f"<text x='{_W - _RIGHT}' y='{_H - 4}' text-anchor='end'>now</text>"
    )
    if not values:
        axis += (
            f"<text x='{_LEFT + plot_w / 2}' y='{_TOP + plot_h / 2}' text-anchor='middle'>no data yet</text>"
        )
    title = f"{label}: {shown}"
    return (
        f"<figure class=chart><figcaption>{escape(label)} <b>{escape(shown)}</b></figcaption>"
        f"<svg class=chart-svg viewBox='0 0 {_W} {_H}' width='{_W}' height='{_H}' role='img' "
        f"aria-label='{escape(title)}' font-size='10' fill='#6b7383'><title>{escape(title)}</title>"
        f"{axis}{''.join(shapes)}</svg></figure>"
    )


@dataclass(frozen=True, slots=True)
class Segment:
    """One part of a stacked bar: `count` things called `label`."""

    label: str
    count: int
    colour: str


_BAR_W, _BAR_H, _BAR_LEFT, _BAR_GAP = 460, 16, 78, 8


def stacked_bar(rows: Sequence[tuple[str, Sequence[Segment]]], title: str) -> str:
    """One horizontal bar per row (e.g. per resource type), split by segment; widths by count."""
    height = len(rows) * (_BAR_H + _BAR_GAP) + _BAR_GAP
    width = _BAR_W - _BAR_LEFT - 4
    parts = []
    for index, (row_label, segments) in enumerate(rows):
        top = _BAR_GAP + index * (_BAR_H + _BAR_GAP)
        total = sum(segment.count for segment in segments) or 1
        parts.append(
            f"<text x='{_BAR_LEFT - 6}' y='{top + _BAR_H - 4}' text-anchor='end'>{escape(row_label)}</text>"
        )
        left = float(_BAR_LEFT)
        for segment in segments:
            share = width * segment.count / total
            tip = escape(f"{row_label}: {segment.count} at {segment.label}")
            parts.append(
                f"<rect x='{left:.1f}' y='{top}' width='{max(share, 0.5):.1f}' height='{_BAR_H}' "
                f"fill='{segment.colour}'><title>{tip}</title></rect>"
            )
            if share > 40:
                parts.append(
                    f"<text x='{left + share / 2:.1f}' y='{top + _BAR_H - 4}' text-anchor='middle' "
                    f"fill='#fff'>{segment.count}</text>"
                )
            left += share
    return (
        f"<svg class=chart-svg viewBox='0 0 {_BAR_W} {height}' width='{_BAR_W}' height='{height}' "
        f"role='img' aria-label='{escape(title)}' font-size='11' fill='#1d2330'>"
        f"<title>{escape(title)}</title>{''.join(parts)}</svg>"
    )
