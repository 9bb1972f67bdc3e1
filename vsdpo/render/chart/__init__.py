"""Charts: matplotlib programs, run in the sandbox, their artists traced to the lines that made them.

- ``renderer``: ``render_chart``, run on the caller's side, and the chart's own defect checks;
- ``child``: the job the sandbox runs (execute the program, draw the figure, describe its elements);
- ``trace``: inside the sandbox, records which user lines made or styled each artist;
- ``elements``: inside the sandbox, the drawn figure as elements with boxes and source lines;
- ``corpus``: ``python -m vsdpo.render.chart.corpus FOLDER`` renders a folder of programs.
"""

from __future__ import annotations

from vsdpo.render.chart.renderer import CHART_ENTRY, chart_defects, render_chart, render_chart_outcome

__all__ = ["CHART_ENTRY", "chart_defects", "render_chart", "render_chart_outcome"]
