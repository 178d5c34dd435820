"""Lifecycle logic over an in-memory fake of heatgen's Cloud interface: request payloads,
waiting, outcomes. (Real deploys are proven in tests/integration against the sandbox.)"""

from __future__ import annotations

import pytest

from heatgen.cloud.interface import Definition, Resource, Stack
from heatgen.config import load_site
from heatgen.errors import ExitStatus, StackBusy, StackFailed, UsageError, WaitTimeout
from heatgen.ops import definitions
from heatgen.ops import fields as stackfields
from heatgen.ops.delete import delete
from heatgen.ops.deploy import DeployOptions, deploy, desired_for_update
from heatgen.ops.plan import reconciled_plan
from heatgen.ops.report import SilentReporter
from heatgen.ops.scale import ScaleRequest, scale
from heatgen.ops.wait import wait_for_stack
from heatgen.redact import redact_url
from heatgen.render import render_site
from heatgen.sandbox import hooks

from .conftest import EXAMPLES
from .fakecloud import FakeClock, FakeCloud, FakeTransient

SITE = load_site(EXAMPLES / "thesis.yaml")
GRID = render_site(SITE)


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.notes: list[str] = []

    def event(self, event: object) -> None:
        self.events.append(f"{event.resource} {event.status}")  # type: ignore[attr-defined]

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_create_fields_are_exactly_what_heat_needs() -> None:
    fields = stackfields.create_fields(GRID)
    assert set(fields) == {"stack_name", "template", "files", "environment_files",
                           "disable_rollback"}
    assert fields["stack_name"] == "bergen-grid"
    assert fields["disable_rollback"] is True
    assert fields["environment_files"] == ["grid-env.yaml"]
    assert sorted(fields["files"]) == ["grid-env.yaml", "master-boot.yaml", "worker-boot.yaml",
                                       "worker.yaml"]
    assert fields["files"]["worker.yaml"] == GRID.files["worker.yaml"]
    assert fields["template"]["heat_template_version"] == "2021-04-16"
    assert "master" in fields["template"]["resources"]


def test_sandbox_environment_goes_last_but_one_and_overrides_last() -> None:
    sandbox = {"sandbox.yaml": stackfields.packaged_environment("sandbox.yaml")}
    fields = stackfields.update_fields(GRID, parameters={"worker_desired": 4},
                                       extra_environments=sandbox)
    assert set(fields) == {"template", "files", "environment_files"}
    assert fields["environment_files"] == ["grid-env.yaml", "sandbox.yaml",
                                           "heatgen-overrides.yaml"]
    assert fields["files"]["heatgen-overrides.yaml"] == (
        "# Values heatgen sends over the rendered environment (e.g. the group's live size).\n"
        "parameters:\n  worker_desired: 4\n"
    )
    assert "OS::Nova::Server: OS::Heat::None" in fields["files"]["sandbox.yaml"]


def test_patch_fields_send_only_capacity() -> None:
    assert stackfields.patch_fields({"worker_desired": 3}) == {"parameters": {"worker_desired": 3}}
    assert stackfields.patch_fields({"worker_max": 9, "worker_desired": 8, "worker_min": 2}) == {
        "parameters": {"worker_min": 2, "worker_max": 9, "worker_desired": 8}
    }
    with pytest.raises(ValueError, match="not a capacity parameter: cpu_high_threshold"):
        stackfields.patch_fields({"cpu_high_threshold": 1})


def test_deploy_creates_waits_and_streams_events() -> None:
    cloud, report = FakeCloud(), Recorder()
    result = deploy(cloud, GRID, DeployOptions(), report, clock=FakeClock())
    assert result.action == "created"
    assert result.stack is not None and result.stack.status == "CREATE_COMPLETE"
    assert cloud.names().index("validate") < cloud.names().index("create_stack")
    assert report.events == ["bergen-grid CREATE_IN_PROGRESS", "bergen-grid CREATE_COMPLETE"]
    # One request per poll while waiting: events; the stack is read when its final event comes.
    waiting = cloud.names()[cloud.names().index("create_stack") + 1:]
    assert waiting.count("get_stack") <= 2


def test_sandbox_master_signal_is_sent_once_with_the_boot_script_json() -> None:
    cloud = FakeCloud(polls=3)
    original = cloud.create_stack

    def create(fields: dict) -> str:
        stack_id = original(fields)
        cloud._event(cloud.stacks[stack_id], "master_wait", "CREATE_IN_PROGRESS")
        return stack_id

    cloud.create_stack = create  # type: ignore[method-assign]
    report = Recorder()
    options = DeployOptions(extra_environments=hooks.environments(cloud))
    deploy(cloud, GRID, options, report, clock=FakeClock(), watcher=hooks.master(cloud, report))
    assert cloud.signals == [("http://heat/signal", "tok-123", {
        "status": "SUCCESS", "id": "master",
        "reason": "central manager ready (signalled by the heatgen sandbox)", "data": "sandbox",
    })]
    assert any("heatgen sent the master's ready signal" in n for n in report.notes)
    created = next(f for name, f in cloud.calls if name == "create_stack")
    assert created["environment_files"] == ["grid-env.yaml", "sandbox.yaml"]


def test_lost_create_response_attaches_to_the_stack_heat_made() -> None:
    cloud = FakeCloud()
    cloud.create_lands_before_failure = True
    cloud.fail("create_stack", FakeTransient("create the stack: HTTP 503"))
    report = Recorder()
    result = deploy(cloud, GRID, DeployOptions(), report, clock=FakeClock())
    assert result.action == "created"
    assert cloud.names().count("create_stack") == 1
    assert len(cloud.stacks) == 1
    assert any("Heat did make stack bergen-grid" in n for n in report.notes)


def test_create_that_never_landed_is_retried_once_more() -> None:
    cloud = FakeCloud()
    cloud.fail("create_stack", FakeTransient("create the stack: HTTP 500"))
    result = deploy(cloud, GRID, DeployOptions(), SilentReporter(), clock=FakeClock())
    assert result.action == "created"
    assert cloud.names().count("create_stack") == 2
    assert len(cloud.stacks) == 1


def test_lost_delete_response_is_not_sent_again() -> None:
    cloud = FakeCloud()
    cloud.add_stack("bergen-grid")
    cloud.delete_lands_before_failure = True
    cloud.fail("delete_stack", FakeTransient("delete the stack: connection aborted"))
    report = Recorder()
    assert delete(cloud, SITE, timeout=60, report=report, clock=FakeClock()) is None
    assert cloud.names().count("delete_stack") == 1
    assert any("Heat did start the delete of bergen-grid" in n for n in report.notes)


def test_delete_of_a_stack_being_deleted_waits_for_that_delete() -> None:
    cloud = FakeCloud()
    cloud.add_stack("bergen-grid", status="DELETE_IN_PROGRESS")
    report = Recorder()
    assert delete(cloud, SITE, timeout=60, report=report, clock=FakeClock()) is None
    assert "delete_stack" not in cloud.names()
    assert any("already being deleted" in n for n in report.notes)


def test_a_delete_cancelled_by_another_delete_is_waited_through() -> None:
    cloud = FakeCloud()
    stack = cloud.add_stack("bergen-grid")
    cloud.delete_stack(stack.id)
    cloud.delete_stack(stack.id)  # someone else's DELETE: Heat cancels ours, starts over
    assert cloud.stacks[stack.id].status == "DELETE_FAILED"
    report = Recorder()
    assert wait_for_stack(cloud, stack.id, "DELETE", timeout=60, marker=None,
                                    report=report, clock=FakeClock()) is None
    assert "bergen-grid DELETE_FAILED" in report.events
    assert not cloud.stacks


def test_a_delete_that_stays_cancelled_fails() -> None:
    cloud = FakeCloud()
    stack = cloud.add_stack("bergen-grid", status="DELETE_FAILED")
    stack.reason = "Stack DELETE cancelled"
    with pytest.raises(StackFailed, match="DELETE_FAILED: Stack DELETE cancelled"):
        wait_for_stack(cloud, stack.id, "DELETE", timeout=600, marker=None,
                                 report=SilentReporter(), clock=FakeClock())


def test_failed_create_names_the_failed_resources_nested_included() -> None:
    cloud = FakeCloud()
    cloud.final, cloud.final_reason = "FAILED", "Resource CREATE failed: WaitConditionTimeout"
    cloud.failed_resources = [
        Resource("master_wait", "OS::Heat::WaitCondition", "CREATE_FAILED",
                 "WaitConditionTimeout: resources.master_wait: 0 of 1 received", "", "s"),
        Resource("abc123", "HeatGen::Grid::Worker", "CREATE_FAILED", "boom", "", "n",
                 parent="workers"),
    ]
    with pytest.raises(StackFailed) as caught:
        deploy(cloud, GRID, DeployOptions(), SilentReporter(), clock=FakeClock())
    assert caught.value.exit_status == ExitStatus.STACK_FAILED
    assert str(caught.value).splitlines() == [
        "stack bergen-grid is CREATE_FAILED: Resource CREATE failed: WaitConditionTimeout",
        "  master_wait (OS::Heat::WaitCondition) CREATE_FAILED: "
        "WaitConditionTimeout: resources.master_wait: 0 of 1 received",
        "  workers/abc123 (HeatGen::Grid::Worker) CREATE_FAILED: boom",
    ]


def test_wait_has_a_deadline_and_leaves_the_stack_alone() -> None:
    cloud = FakeCloud(polls=10_000)
    with pytest.raises(WaitTimeout) as caught:
        deploy(cloud, GRID, DeployOptions(timeout=5), SilentReporter(), clock=FakeClock())
    assert caught.value.exit_status == ExitStatus.TIMEOUT
    assert "still CREATE_IN_PROGRESS after 5 s; it was left alone" in str(caught.value)
    assert "delete_stack" not in cloud.names()


def test_deploy_attaches_to_a_create_in_progress_instead_of_creating_again() -> None:
    cloud = FakeCloud()
    stack = cloud.add_stack("bergen-grid", status="CREATE_IN_PROGRESS")
    stack.polls_left = 1
    report = Recorder()
    deploy(cloud, GRID, DeployOptions(), report, clock=FakeClock())
    assert "create_stack" not in cloud.names()
    assert report.notes[0] == "stack bergen-grid is CREATE_IN_PROGRESS; attaching to it"


def test_unchanged_redeploy_sends_no_update() -> None:
    cloud = FakeCloud()
    extra: dict[str, str] = {}
    deployed = stackfields.definition(GRID, parameters={"worker_desired": 1},
                                      extra_environments=extra)
    stack = cloud.add_stack("bergen-grid", **deployed.parameters)
    stack.outputs = {"worker_count": 1}
    stack.definition = deployed
    result = deploy(cloud, GRID, DeployOptions(), SilentReporter(), clock=FakeClock())
    assert result.action == "unchanged"
    assert "update_stack" not in cloud.names()


def test_redeploy_keeps_the_size_autoscaling_chose() -> None:
    stack = Stack("id", "bergen-grid", "UPDATE_COMPLETE", "",
                  {"site_worker_desired": "1", "worker_desired": "1"}, {"worker_count": 5})
    assert desired_for_update(SITE, stack) == 5
    changed = load_site(EXAMPLES / "thesis.yaml").model_copy(
        update={"workers": SITE.workers.model_copy(update={"desired": 2})})
    assert desired_for_update(changed, stack) == 5  # more than asked: deploy never shrinks
    small = Stack("id", "bergen-grid", "UPDATE_COMPLETE", "",
                  {"site_worker_desired": "1"}, {"worker_count": 1})
    assert desired_for_update(changed, small) == 2  # a raised count is applied
    beyond = Stack("id", "g", "UPDATE_COMPLETE", "", {"site_worker_desired": "1"},
                   {"worker_count": 50})
    assert desired_for_update(SITE, beyond) == 7  # clamped to the config's max
    # A config that asks for fewer workers does not shrink the group through a deploy.
    shrunk = Stack("id", "g", "UPDATE_COMPLETE", "", {"site_worker_desired": "4"},
                   {"worker_count": 4})
    assert desired_for_update(SITE, shrunk) == 4


def test_plan_that_replaces_the_master_needs_yes() -> None:
    cloud = FakeCloud()
    stack = cloud.add_stack("bergen-grid", site_worker_desired="1", worker_desired="1")
    old = stackfields.definition(GRID)
    template = {**old.template, "resources": {**old.template["resources"]}}
    template["resources"]["master"] = {**template["resources"]["master"], "type": "Other"}
    stack.definition = Definition(template, old.parameters, old.files, old.registry)
    cloud.plan = {"replaced": ["master"], "unchanged": ["workers"]}
    with pytest.raises(UsageError, match="the plan replaces master; nothing was changed"):
        deploy(cloud, GRID, DeployOptions(), SilentReporter(), clock=FakeClock())
    assert "update_stack" not in cloud.names()
    asked: list[str] = []
    deploy(cloud, GRID, DeployOptions(), SilentReporter(),
           confirm=lambda q: asked.append(q) or True, clock=FakeClock())
    assert "update_stack" in cloud.names() and "replaces master" in asked[0]


def test_scale_past_max_is_refused_before_any_api_call() -> None:
    cloud = FakeCloud()
    with pytest.raises(UsageError, match="--workers 8 is outside min..max 1..7"):
        scale(cloud, SITE, ScaleRequest(workers=8), SilentReporter(), clock=FakeClock())
    with pytest.raises(UsageError, match=r"min must be <= max \(got 5 > 4\)"):
        scale(cloud, SITE, ScaleRequest(workers=4, min=5, max=4), SilentReporter())
    assert cloud.calls == []


def test_scale_is_a_patch_of_only_the_capacity() -> None:
    cloud = FakeCloud()
    cloud.add_stack("bergen-grid", worker_desired="1")
    result = scale(cloud, SITE, ScaleRequest(workers=9, max=10), SilentReporter(),
                   clock=FakeClock())
    assert result.action == "scaled"
    update = next(arg for name, arg in cloud.calls if name == "update_stack")
    assert update == {"fields": {"parameters": {"worker_max": 10, "worker_desired": 9}},
                      "patch": True}


def test_scale_whose_patch_failed_looks_then_sends_it_again() -> None:
    cloud = FakeCloud()
    cloud.add_stack("bergen-grid", worker_desired="1")
    cloud.fail("update_stack", *[FakeTransient("update the stack: HTTP 503")] * 7)
    report = Recorder()
    result = scale(cloud, SITE, ScaleRequest(workers=3), report, clock=FakeClock())
    assert result.action == "scaled"
    assert cloud.names().count("update_stack") == 8
    assert sum("checking whether Heat did it" in n for n in report.notes) == 7


def test_scale_gives_up_after_eight_failed_patches_with_the_error() -> None:
    cloud = FakeCloud()
    cloud.add_stack("bergen-grid", worker_desired="1")
    cloud.fail("update_stack", *[FakeTransient("update the stack: HTTP 503")] * 8)
    with pytest.raises(FakeTransient, match="HTTP 503"):
        scale(cloud, SITE, ScaleRequest(workers=3), SilentReporter(), clock=FakeClock())
    assert cloud.names().count("update_stack") == 8


def test_busy_stack_is_refused_or_queued() -> None:
    cloud = FakeCloud()
    stack = cloud.add_stack("bergen-grid", status="UPDATE_IN_PROGRESS")
    stack.polls_left = 3
    with pytest.raises(StackBusy, match="busy \\(UPDATE_IN_PROGRESS\\).*--wait-for-idle"):
        scale(cloud, SITE, ScaleRequest(workers=2), SilentReporter(), clock=FakeClock())
    assert "update_stack" not in cloud.names()
    result = scale(cloud, SITE, ScaleRequest(workers=2, wait_for_idle=True), SilentReporter(),
                   clock=FakeClock())
    assert result.action == "scaled"


def test_plan_reconciliation_against_definitions() -> None:
    old = stackfields.definition(GRID, parameters={"worker_desired": 1})
    same = stackfields.definition(GRID, parameters={"worker_desired": 1})
    heat_says = {"updated": ["workers"], "replaced": ["master_wait", "scale_up_policy"],
                 "unchanged": ["cpu_alarm_high", "master"]}
    plan = reconciled_plan(heat_says, old, same)
    assert not plan.has_changes
    assert plan.over_reported == ("master_wait", "scale_up_policy", "workers")
    resized = stackfields.definition(GRID, parameters={"worker_desired": 3})
    plan = reconciled_plan(heat_says, old, resized)
    assert plan.changes["updated"] == ["workers"] and plan.changes["replaced"] == []
    hotter = stackfields.definition(GRID, parameters={"worker_desired": 1,
                                                      "cpu_high_threshold": 72000000000})
    plan = reconciled_plan(heat_says, old, hotter)
    assert plan.changes["updated"] == ["cpu_alarm_high"]


def test_member_template_change_updates_the_group_only() -> None:
    old = stackfields.definition(GRID)
    files = dict(old.files)
    files["worker-boot.yaml"] = files["worker-boot.yaml"] + "# changed\n"
    new = Definition(old.template, old.parameters, files, old.registry)
    assert definitions.changed_resources(old, new) == {"workers"}
    files = dict(old.files)
    files["master-boot.yaml"] = files["master-boot.yaml"] + "# changed\n"
    new = Definition(old.template, old.parameters, files, old.registry)
    assert definitions.changed_resources(old, new) == {"master"}


def test_redact_url_drops_signatures() -> None:
    url = ("http://cfn:8000/v1/signal/arn%3Aopenstack/resources/scale_up_policy"
           "?Timestamp=2026&SignatureMethod=HmacSHA256&AWSAccessKeyId=abc&Signature=s3cr3t")
    assert redact_url(url) == (
        "http://cfn:8000/v1/signal/arn%3Aopenstack/resources/scale_up_policy?<redacted>")
    assert redact_url("http://u:pw@h:1/p") == "http://h:1/p"
    assert redact_url(None) is None
