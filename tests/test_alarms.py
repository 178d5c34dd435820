"""Alarm views and the load generator's arithmetic, as values (no cloud)."""

from __future__ import annotations

from pathlib import Path

from heatgen.cloud.interface import Alarm
from heatgen.config import load_site
from heatgen.ops import alarms
from heatgen.render import alarm_threshold

SITE = load_site(Path(__file__).resolve().parents[1] / "examples" / "thesis.yaml")


def _alarm(threshold: float) -> Alarm:
    return Alarm(
        id="a1", name="cpu_alarm_high", type="gnocchi_aggregation_by_resources_threshold",
        state="alarm", state_timestamp="2026-01-01T00:00:00",
        description="", actions=["trust+http://u:secret@127.0.0.1:8004/v1/p/stacks/s/x/signal?sig=1"],
        rule={"threshold": threshold, "granularity": 60, "comparison_operator": "gt",
              "query": '{"and": [{"=": {"server_group": "S"}}]}'},
    )


def test_threshold_shown_as_the_configured_percentage() -> None:
    raw = alarm_threshold(SITE, SITE.autoscaling.cpu_high)
    shown = alarms.view(SITE, _alarm(float(raw)))
    assert shown.threshold == raw
    assert shown.threshold_percent == SITE.autoscaling.cpu_high
    assert shown.query == {"and": [{"=": {"server_group": "S"}}]}


def test_actions_lose_credentials_and_signatures() -> None:
    (action,) = alarms.view(SITE, _alarm(1.0)).actions
    assert "secret" not in action and "sig=1" not in action
    assert action.startswith("trust+http://127.0.0.1:8004/v1/p/stacks/s/x/signal")


def test_history_in_time_order_with_reasons() -> None:
    history = [
        {"timestamp": "2026-01-01T00:02:00", "type": "state transition",
         "detail": '{"state": "ok"}', "reason": "below"},
        {"timestamp": "2026-01-01T00:01:00", "type": "state transition",
         "detail": '{"state": "alarm"}', "reason": "above"},
    ]
    shown = alarms.view(SITE, _alarm(1.0), history)
    assert [(t.detail, t.reason) for t in shown.history] == [("alarm", "above"), ("ok", "below")]
    assert "alarm" in alarms.format_text([shown])
