"""The sandbox's load generator (Ceilometer's stand-in) against a fake Gnocchi client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from heatgen.config import load_site
from heatgen.render import alarm_threshold
from heatgen.sandbox import loadgen

from .conftest import EXAMPLES

SITE = load_site(EXAMPLES / "thesis.yaml")


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
    gen.push(datetime(2026, 1, 1, tzinfo=UTC))
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
    gen.push(datetime(2026, 1, 1, tzinfo=UTC))
    assert gen.counters == {"a": loadgen.increment(100, 60, 2), "b": 0.0}
    pushed = gnocchi.pushed[-1]
    assert pushed["a"]["cpu"][0]["value"] == 1.2e11
    assert pushed["b"]["cpu"][0]["value"] == 0.0
