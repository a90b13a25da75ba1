"""Charts by step (losses; a preference run's reward margin and accuracy) as a small SVG of our own: each line
named in a legend above it, the step axis in whole steps, and every point drawn, so that a lone validation point shows.

Gradio's LinePlot cannot do these: its legend sits below a fixed-height box and is cut off, its
step ticks fall on fractions (1.0, 1.1 …), and it draws lines only, so one point draws nothing.
"""

import math
from html import escape

WIDTH, HEIGHT = 900, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 12, 44  # room for the axis labels and titles
PALETTE = ["#3b6fd8", "#e8731a", "#2a9d4b", "#c0392b", "#8e44ad", "#16a2b8", "#b8860b", "#555555"]
MARKED_POINTS = 60  # a series with more points is drawn as a line only: markers would hide it


def integer_ticks(low: int, high: int, most: int = 8) -> list[int]:
    """Whole-number ticks from low to high, 1, 2 or 5 times a power of ten apart, at most `most` of them."""
    step = 1
    while (high - low) / step > most - 1:
        step = _next_step(step)
    first = math.ceil(low / step) * step
    return list(range(first, high + 1, step))


def _next_step(step: int) -> int:
    """The next of 1, 2, 5, 10, 20, 50, …"""
    lead = int(str(step)[0])
    return step * 2 if lead in (1, 5) else step // 2 * 5


def value_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round ticks between low and high, 1, 2 or 5 times a power of ten apart: the closest that
    make at most `most` ticks."""
    power = 10 ** math.floor(math.log10((high - low) / most))
    for step in (f * power for f in (1, 2, 5, 10, 20)):
        first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
        if last - first + 1 <= most:
            return [round(n * step, 10) for n in range(first, last + 1)]
    return [low, high]


def _series(points: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per series in the order the series first appear; points without a value are left out."""
    found: dict[str, list[tuple[int, float]]] = {}
    for point in points:
        if point["value"] is not None:
            found.setdefault(point["series"], []).append((int(point["step"]), float(point["value"])))
    return {name: sorted(steps) for name, steps in found.items()}


def loss_chart(points: list[dict], colours: dict[str, str] | None = None, empty: str = "No loss recorded yet.") -> str:
    """HTML for {"step", "loss", "series"} points: a legend naming each series, then the chart.

    `colours` fixes a series' colour; the others take the palette's in turn.
    """
    return step_chart([{"step": p["step"], "value": p["loss"], "series": p["series"]} for p in points], "loss", colours, empty)


def step_chart(points: list[dict], axis: str, colours: dict[str, str] | None = None, empty: str = "Nothing recorded yet.") -> str:
    """HTML for {"step", "value", "series"} points, the values named `axis` on the vertical axis."""
    series = _series(points)
    if not series:
        return f"<div class='studio-chart-empty'>{escape(empty)}</div>"
    spare = iter(c for c in PALETTE if c not in (colours or {}).values())
    colour = {name: (colours or {}).get(name) or next(spare, "#555555") for name in series}
    steps = [s for line in series.values() for s, _ in line]
    values = [v for line in series.values() for _, v in line]
    x_low, x_high = min(steps), max(steps)
    if x_low == x_high:
        x_low, x_high = max(x_low - 1, 0), x_high + 1
    y_low, y_high = min(values), max(values)
    pad = (y_high - y_low) * 0.08 or abs(y_high) * 0.1 or 0.1
    y_low, y_high = y_low - pad, y_high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(step: float) -> float:
        return LEFT + (step - x_low) / (x_high - x_low) * plot_w

    def y(value: float) -> float:
        return TOP + (y_high - value) / (y_high - y_low) * plot_h

    parts = [f"<rect x='{LEFT}' y='{TOP}' width='{plot_w}' height='{plot_h}' fill='none' stroke='#ddd'/>"]
    for tick in integer_ticks(math.ceil(x_low), math.floor(x_high)):
        parts.append(f"<line x1='{x(tick):.1f}' x2='{x(tick):.1f}' y1='{TOP}' y2='{TOP + plot_h}' stroke='#eee'/>"
                     f"<text class='x-tick' x='{x(tick):.1f}' y='{TOP + plot_h + 16}' text-anchor='middle'>{tick}</text>")
    for tick in value_ticks(y_low, y_high):
        parts.append(f"<line x1='{LEFT}' x2='{LEFT + plot_w}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#eee'/>"
                     f"<text class='y-tick' x='{LEFT - 6}' y='{y(tick) + 4:.1f}' text-anchor='end'>{tick:g}</text>")
    parts.append(f"<text x='{LEFT + plot_w / 2}' y='{HEIGHT - 6}' text-anchor='middle'>step</text>"
                 f"<text x='14' y='{TOP + plot_h / 2}' text-anchor='middle' transform='rotate(-90 14 {TOP + plot_h / 2})'>{escape(axis)}</text>")
    for name, line in series.items():
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in line)
        marks = "".join(f"<circle cx='{x(s):.1f}' cy='{y(v):.1f}' r='4' fill='{colour[name]}'><title>{escape(name)}, step {s}: {v:.4g}</title></circle>"
                        for s, v in line) if len(line) <= MARKED_POINTS else ""
        parts.append(f"<g class='series' data-series='{escape(name)}'><polyline points='{path}' fill='none' stroke='{colour[name]}' "
                     f"stroke-width='2.5'/>{marks}</g>")
    legend = "".join(f"<span class='legend-item' style='margin-right:18px;white-space:nowrap'><span style='display:inline-block;width:22px;"
                     f"height:4px;margin:0 6px 3px 0;vertical-align:middle;background:{colour[name]}'></span>{escape(name)}</span>"
                     for name in series)
    return (f"<div class='studio-chart'><div class='legend' style='padding:4px 0 6px {LEFT}px;font-size:14px'>{legend}</div>"
            f"<svg viewBox='0 0 {WIDTH} {HEIGHT}' role='img' aria-label='{escape(axis)} by step' style='width:100%;height:auto;max-height:360px;"
            f"font-size:13px;fill:currentColor'>{''.join(parts)}</svg></div>")
