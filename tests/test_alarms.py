"""Alarm views and the load generator's arithmetic, as values (no cloud)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from heatgen import alarms, loadgen
from heatgen.cloud import Alarm
from heatgen.config import load_site
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


def test_increment_matches_the_alarm_threshold_units() -> None:
    assert loadgen.increment(50, 60, 2) == alarm_threshold(SITE, 50)


def test_next_bucket_is_offset_into_the_following_bucket() -> None:
    assert loadgen.next_bucket(120.0, 60, 2.0) == 122.0
    assert loadgen.next_bucket(123.0, 60, 2.0) == 182.0


class FakeGnocchi:
    def __init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = {}
        self.pushed: list[dict[str, Any]] = []
        outer = self

        class Resource:
            def create(self, kind: str, body: dict[str, Any]) -> None:
                outer.resources[body["id"]] = dict(body)

            def update(self, kind: str, rid: str, body: dict[str, Any]) -> None:
                outer.resources[rid].update(body)

        class Metric:
            def get_measures(self, *args: Any, **kwargs: Any) -> list[Any]:
                return []

            def batch_resources_metrics_measures(self, batch: dict[str, Any]) -> None:
                outer.pushed.append(batch)

        self.resource = Resource()
        self.metric = Metric()


def test_new_worker_starts_at_the_group_mean_and_gone_workers_end() -> None:
    members = ["a", "b"]
    gnocchi = FakeGnocchi()
    gen = loadgen.LoadGenerator(
        gnocchi=gnocchi, stack_id="S", project_id="P", user_id="U", workers=lambda: members,
        granularity=60, vcpus=2, percent=50, archive_policy="p",
    )
    gen.sync_members()
    gen.push(datetime(2026, 1, 1, tzinfo=timezone.utc))
    step = loadgen.increment(50, 60, 2)
    assert gen.counters == {"a": step, "b": step}
    assert gnocchi.resources["a"]["server_group"] == "S"
    assert gnocchi.resources["a"]["project_id"] == "P"
    members[:] = ["b", "c"]
    gen.sync_members()
    assert gen.counters["c"] == step  # the mean, not 0
    assert "ended_at" in gnocchi.resources["a"]


def test_per_worker_load_moves_each_counter_by_its_own_percentage() -> None:
    gnocchi = FakeGnocchi()
    load = {"a": 100.0, "b": 0.0}
    gen = loadgen.LoadGenerator(
        gnocchi=gnocchi, stack_id="S", project_id="P", user_id="U", workers=lambda: ["a", "b"],
        granularity=60, vcpus=2, percent=50, archive_policy="p", percent_of=load.__getitem__,
    )
    gen.sync_members()
    gen.push(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert gen.counters == {"a": loadgen.increment(100, 60, 2), "b": 0.0}
    pushed = gnocchi.pushed[-1]
    assert pushed["a"]["cpu"][0]["value"] == 1.2e11
    assert pushed["b"]["cpu"][0]["value"] == 0.0
