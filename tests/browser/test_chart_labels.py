"""L5 (security review): Plotly reads <a href>, <b> and <span style> in labels as markup,
and chart labels are names people and hypervisors chose (plan names, VM names). The charts
escape them: drawn in a real Chromium with the vendored Plotly, a hostile label shows as
text and makes no link or styled element."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
STATIC = Path(__file__).resolve().parents[2] / "static"
HOSTILE = '<a href="https://evil.example/login">click</a><b style="color:red">VM</b>'


@pytest.mark.parametrize(
    "chart, data",
    [
        ("host-capacity", {"total": 100, "bars": [{"label": f"after {HOSTILE}", "used": 50}]}),
        ("host-memory", {"hosts": [HOSTILE], "used": [1], "free": [2]}),
        (
            "plan-gantt",
            {
                "items": [
                    {
                        "vm": HOSTILE,
                        "destination": HOSTILE,
                        "start_s": 0,
                        "end_s": 60,
                        "converges_by": "pre-copy",
                    }
                ],
                "actual": [{"vm": HOSTILE, "start_s": 0, "end_s": 30, "status": "completed"}],
            },
        ),
    ],
)
def test_it_draws_hostile_labels_as_text(new_page, chart, data):
    page = new_page()
    page.set_content(
        f'<div id="c" style="width:600px;height:300px" data-chart="{chart}" data-source="d">'
        f'</div><script type="application/json" id="d">{json.dumps(data)}</script>'
    )
    page.add_script_tag(path=str(STATIC / "vendor" / "plotly.min.js"))
    page.add_script_tag(path=str(STATIC / "js" / "charts.js"))
    page.evaluate(
        """() => {
          const el = document.getElementById("c");
          const spec = FerryCharts.builders[el.dataset.chart](
            JSON.parse(document.getElementById("d").textContent));
          return Plotly.newPlot(el, spec.traces, Object.assign({}, FerryCharts.layoutBase,
            spec.layout), {displaylogo: false});
        }"""
    )
    assert page.locator("#c a[href*='evil']").count() == 0, "a label became a link"
    assert page.locator("#c [style*='color:red'], #c [style*='color: red']").count() == 0
    assert "evil.example" in page.locator("#c").inner_text() or chart == "plan-gantt"
