"""The loss chart: each line named in a legend, whole-number steps, every point drawn."""

import re

from studio.ui.chart import integer_ticks, loss_chart, value_ticks


def points(series: str, steps: list[int], start: float = 2.0) -> list[dict]:
    return [{"step": s, "loss": start - 0.1 * s, "series": series} for s in steps]


def test_two_series_are_named_in_the_legend_and_drawn_in_their_colours():
    chart = loss_chart(points("training loss", [1, 2, 3, 4, 5]) + points("validation loss", [5]),
                       {"training loss": "#3b6fd8", "validation loss": "#e8731a"})
    legend = chart[chart.index("class='legend'"):chart.index("<svg")]
    assert re.findall(r"</span>([^<]+)</span>", legend) == ["training loss", "validation loss"]
    assert "stroke='#3b6fd8'" in chart and "stroke='#e8731a'" in chart


def test_the_step_axis_reads_whole_steps():
    chart = loss_chart(points("training loss", [1, 2, 3, 4, 5]))
    assert re.findall(r"class='x-tick'[^>]*>([^<]+)<", chart) == ["1", "2", "3", "4", "5"]
    assert integer_ticks(0, 500) == [0, 100, 200, 300, 400, 500] and integer_ticks(1, 30) == [5, 10, 15, 20, 25, 30]
    assert value_ticks(1.8, 2.2) == [1.8, 1.9, 2.0, 2.1, 2.2]


def test_a_single_validation_point_is_drawn_as_a_marker():
    chart = loss_chart(points("training loss", [1, 2, 3]) + [{"step": 3, "loss": 1.5, "series": "validation loss"}])
    validation = chart[chart.index("data-series='validation loss'"):]
    assert validation.count("<circle") == 1 and "step 3: 1.5" in validation


def test_without_points_the_chart_says_so():
    assert "No loss recorded yet." in loss_chart([{"step": 1, "loss": None, "series": "validation loss"}])
