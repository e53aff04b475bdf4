"""AsyncMQ / Runbooks: docs/runbooks.md as Grafana shows it, one panel per alert.

Every alert's `runbook_url` opens its panel here, so the runbooks are reachable at the same
address as the dashboards, from any notification, with nothing else to host.
"""

from pathlib import Path

from asyncmq.observability import grafana as g

__all__ = ["dashboard"]

dashboard = g.runbooks_dashboard(
    (Path(__file__).parents[1] / "docs" / "runbooks.md").read_text(encoding="utf-8")
)
