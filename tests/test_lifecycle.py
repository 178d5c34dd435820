"""Lifecycle logic over an in-memory fake of heatgen's Cloud interface: request payloads,
waiting, outcomes. (Real deploys are proven in tests/integration against the sandbox.)"""

from __future__ import annotations

from typing import Any

import pytest

from heatgen.cloud.interface import Definition, Resource, Stack
from heatgen.config import load_site
from heatgen.errors import (
    CloudError,
    ExitStatus,
    StackBusy,
    StackFailed,
    StackStalled,
    UsageError,
    WaitTimeout,
)
from heatgen.ops import definitions
from heatgen.ops import fields as stackfields
from heatgen.ops.delete import delete
from heatgen.ops.deploy import DeployOptions, deploy, update_capacity
from heatgen.ops.plan import group_size_after, reconciled_plan
from heatgen.ops.report import SilentReporter
from heatgen.ops.scale import ScaleRequest, scale
from heatgen.ops.wait import wait_for_stack
from heatgen.redact import redact_url
from heatgen.render import RenderedGrid, render_site
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
    # Both of the master's signals: the execute nodes' token (a random stand-in), then ready.
    (token_url, _, token_body), ready = cloud.signals
    assert token_url == "http://heat/worker_token_handle/signal"
    assert token_body["id"] == "worker_token" and token_body["status"] == "SUCCESS"
    assert len(token_body["data"]) >= 32 and "stand-in" in token_body["reason"]
    assert ready == ("http://heat/master_wait_handle/signal", "tok-123", {
        "status": "SUCCESS", "id": "master",
        "reason": "central manager ready (signalled by the heatgen sandbox)", "data": "sandbox",
    })
    assert any("heatgen sent the master's ready signal" in n for n in report.notes)
    assert not any(token_body["data"] in n for n in report.notes)
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


def _marked_grid(cloud: FakeCloud, desired: int = 2) -> Any:
    """A deployed thesis grid whose member-2 a SIGKILLed scale-in left marked for removal."""
    from heatgen.scalein.shrink import MARK_REASON

    deployed = stackfields.definition(GRID, parameters={"worker_desired": desired})
    stack = cloud.add_stack("bergen-grid", **deployed.parameters)
    stack.outputs = {"worker_count": desired}
    stack.definition = deployed
    stack.resources = [
        Resource(f"member-{i}", "HeatGen::Grid::Worker",
                 "CHECK_FAILED" if i == 2 else "CREATE_COMPLETE", MARK_REASON if i == 2 else "",
                 f"nested-{i}", "group-stack", parent="workers", created=f"2026-01-0{i}")
        for i in range(1, desired + 1)]
    return stack


def test_an_unchanged_redeploy_takes_back_a_mark_a_killed_scale_in_left() -> None:
    # Heat would replace member-2 at the next update of any kind, busy or not.
    cloud = FakeCloud()
    _marked_grid(cloud)
    report = Recorder()
    result = deploy(cloud, GRID, DeployOptions(), report, clock=FakeClock())
    assert result.action == "unchanged" and "update_stack" not in cloud.names()
    marks = [args for name, args in cloud.calls if name == "mark_unhealthy"]
    assert [m[:2] for m in marks] == [("member-2", False)]
    assert any("took back the mark an interrupted heatgen left on member-2" in note
               for note in report.notes), report.notes


def test_a_redeploy_takes_back_a_stale_mark_before_its_update() -> None:
    cloud = FakeCloud()
    _marked_grid(cloud)
    result = deploy(cloud, render_site(_site_with(max=6)), DeployOptions(), Recorder(),
                    clock=FakeClock())
    assert result.action == "updated"
    names = cloud.names()
    assert names.index("mark_unhealthy") < names.index("update_stack")


def test_a_redeploy_whose_stale_mark_stays_sends_no_update() -> None:
    cloud = FakeCloud()
    _marked_grid(cloud)
    cloud.fail("mark_unhealthy", CloudError("Heat answered 503"))
    with pytest.raises(CloudError, match="could not be taken back"):
        deploy(cloud, render_site(_site_with(max=6)), DeployOptions(), Recorder(),
               clock=FakeClock())
    assert "update_stack" not in cloud.names()


def _sized(config_desired: str, current: int) -> Stack:
    return Stack("id", "bergen-grid", "UPDATE_COMPLETE", "",
                 {"site_worker_desired": config_desired, "worker_desired": str(current)},
                 {"worker_count": current})


def _site_with(**workers: int) -> Any:
    return SITE.model_copy(update={"workers": SITE.workers.model_copy(update=workers)})


def test_redeploy_keeps_the_size_autoscaling_chose() -> None:
    assert update_capacity(SITE, _sized("1", 5)).parameters == {"worker_desired": 5}
    raised = update_capacity(_site_with(desired=2), _sized("1", 1))
    assert raised.parameters == {"worker_desired": 2} and raised.notes == ()


def test_redeploy_with_a_lowered_desired_keeps_the_group_and_says_how_to_shrink() -> None:
    # workers.desired 1 -> 2 while autoscaling grew the group to 3: it went *up*, and 3 stay.
    kept = update_capacity(_site_with(desired=2), _sized("1", 3), "sites/b.yaml")
    assert kept.parameters == {"worker_desired": 3}
    assert kept.notes == (
        "workers.desired changed 1 -> 2, but the group has 3 workers and a deploy never removes "
        "workers (Heat would take the oldest, busy or not): it keeps 3. Shrink with "
        "`heatgen scale sites/b.yaml --workers 2`, which removes only idle workers",)
    assert update_capacity(SITE, _sized("4", 4)).parameters == {"worker_desired": 4}


def test_redeploy_with_a_lowered_max_keeps_the_size_and_the_maximum() -> None:
    capacity = update_capacity(_site_with(max=3), _sized("1", 5), "site.yaml")
    assert capacity.parameters == {"worker_desired": 5, "worker_max": 5}
    assert "`heatgen scale site.yaml --workers 3 --max 3`" in capacity.notes[0]
    assert update_capacity(SITE, _sized("1", 50)).parameters == {
        "worker_desired": 50, "worker_max": 50}


def test_redeploy_with_a_lowered_max_sends_the_live_size_and_shows_the_parameters() -> None:
    cloud = FakeCloud()
    deployed = stackfields.definition(GRID, parameters={"worker_desired": 5})
    stack = cloud.add_stack("bergen-grid", **{**deployed.parameters, "site_worker_desired": "1"})
    stack.outputs = {"worker_count": 5}
    stack.definition = deployed
    lowered = render_site(_site_with(max=3))
    report = Recorder()
    planned = deploy(cloud, lowered, DeployOptions(dry_run=True), report, clock=FakeClock())
    assert planned.plan is not None
    # The config says 3; the stack gets 5, the group's size, so no worker is removed.
    assert planned.plan.parameters == (("worker_max", "7", "5"),)
    assert "parameter: worker_max 7 -> 5" in planned.plan.lines()
    assert "  workers: 5 now, 5 after the update" in planned.plan.lines()
    result = deploy(cloud, lowered, DeployOptions(), report, clock=FakeClock())
    assert result.action == "updated"
    sent = next(f for name, f in cloud.calls if name == "update_stack")["fields"]
    overrides = sent["files"]["heatgen-overrides.yaml"]
    assert "worker_desired: 5" in overrides and "worker_max: 5" in overrides
    assert any("keeps the maximum at 5" in note for note in report.notes)


def test_plan_shows_parameter_changes_and_the_group_after() -> None:
    old = stackfields.definition(GRID, parameters={"worker_desired": 2})
    new = stackfields.definition(GRID, parameters={"worker_desired": 4, "worker_max": 9})
    plan = reconciled_plan({"updated": ["workers"]}, old, new, group_now={"workers": 2})
    assert ("worker_desired", "2", "4") in plan.parameters
    assert ("worker_max", "7", "9") in plan.parameters
    assert "parameter: worker_max 7 -> 9" in plan.lines()
    assert (plan.group_now, plan.group_after) == (2, 4)


def test_a_template_that_would_shrink_the_group_is_refused() -> None:
    cloud = FakeCloud()
    deployed = stackfields.definition(GRID, parameters={"worker_desired": 4})
    stack = cloud.add_stack("bergen-grid", **{**deployed.parameters, "site_worker_desired": "1"})
    stack.outputs = {"worker_count": 4}
    stack.definition = deployed
    text = GRID.files["grid.yaml"].replace(
        "desired_capacity: {get_param: worker_desired}", "desired_capacity: 2")
    assert text != GRID.files["grid.yaml"]
    hardwired = RenderedGrid(GRID.site, {**GRID.files, "grid.yaml": text})
    with pytest.raises(UsageError, match="would shrink the worker group from 4 to 2 workers"):
        deploy(cloud, hardwired, DeployOptions(yes=True), SilentReporter(), clock=FakeClock())
    assert "update_stack" not in cloud.names()


def test_an_update_that_replaces_the_group_is_refused_while_it_has_workers() -> None:
    cloud = FakeCloud()
    deployed = stackfields.definition(GRID, parameters={"worker_desired": 3})
    stack = cloud.add_stack("bergen-grid", **{**deployed.parameters, "site_worker_desired": "1"})
    stack.outputs = {"worker_count": 3}
    template = dict(deployed.template)
    template["resources"] = {**template["resources"], "workers": {
        **template["resources"]["workers"], "type": "OS::Heat::ResourceGroup"}}
    stack.definition = Definition(template, deployed.parameters, deployed.files,
                                  deployed.registry)
    cloud.plan = {"replaced": ["workers"], "unchanged": ["master"]}
    with pytest.raises(UsageError, match="all 3 workers would be removed"):
        deploy(cloud, GRID, DeployOptions(yes=True), SilentReporter(), clock=FakeClock())
    assert "update_stack" not in cloud.names()


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


def test_crossed_or_negative_bounds_are_refused_before_any_api_call() -> None:
    cloud = FakeCloud()
    with pytest.raises(UsageError, match=r"--min must be <= --max \(got 5 > 4\)"):
        scale(cloud, SITE, ScaleRequest(workers=4, min=5, max=4), SilentReporter())
    with pytest.raises(UsageError, match=r"--workers must be >= 0 \(got -1\)"):
        scale(cloud, SITE, ScaleRequest(workers=-1), SilentReporter())
    assert cloud.calls == []


def test_scale_checks_the_deployed_bounds_and_says_how_to_change_them() -> None:
    cloud = FakeCloud()
    cloud.add_stack("bergen-grid", worker_min="1", worker_max="3", worker_desired="3")
    request = ScaleRequest(workers=4, site_label="b.yaml")
    with pytest.raises(UsageError) as raised:
        scale(cloud, SITE, request, SilentReporter(), clock=FakeClock())
    assert str(raised.value) == (
        "--workers 4 is above the maximum 3 (the stack's worker_max); raise it with "
        "`heatgen scale b.yaml --workers 4 --max 4` (or raise workers.max and deploy)")
    with pytest.raises(UsageError, match=r"below the minimum 1 \(the stack's worker_min\); "
                                         r"lower it with `heatgen scale SITE.yaml --workers 0 "
                                         r"--min 0`"):
        scale(cloud, SITE, ScaleRequest(workers=0), SilentReporter(), clock=FakeClock())
    assert "update_stack" not in cloud.names()
    # The site file says max 7, but the stack's 3 is what Heat checks; --max lifts it.
    scale(cloud, SITE, ScaleRequest(workers=4, max=4), SilentReporter(), clock=FakeClock())
    assert cloud.stacks["stack-1"].parameters["worker_max"] == 4


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


def test_scale_to_zero_parks_the_grid_and_a_size_heat_did_not_reach_is_an_error() -> None:
    cloud = FakeCloud()
    stack = cloud.add_stack("bergen-grid", worker_min="1", worker_max="7", worker_desired="2")
    stack.outputs = {"worker_count": 2}
    request = ScaleRequest(workers=0, min=0, force=True)
    result = scale(cloud, SITE, request, SilentReporter(), clock=FakeClock())
    assert result.action == "scaled" and stack.outputs["worker_count"] == 0
    assert stack.parameters["worker_desired"] == 0 and stack.parameters["worker_min"] == 0
    cloud.reaches = 0  # Heat ends the next update with the group unchanged
    with pytest.raises(StackFailed, match="but the group has 0 workers, not 3"):
        scale(cloud, SITE, ScaleRequest(workers=3), SilentReporter(), clock=FakeClock())


def test_parked_group_resolves_to_zero_and_back() -> None:
    current = stackfields.definition(GRID, parameters={"worker_desired": 0, "worker_min": 0})
    assert group_size_after(current, 2) == 0  # desired 0 is "unset" to Heat: max 0 parks it
    back = stackfields.definition(GRID, parameters={"worker_desired": 3})
    assert group_size_after(back, 0) == 3


def test_a_rerun_of_an_interrupted_scale_attaches_to_its_update() -> None:
    cloud = FakeCloud()
    stack = cloud.add_stack("bergen-grid", status="UPDATE_IN_PROGRESS", worker_min="1",
                            worker_max="7", worker_desired="6")
    stack.polls_left = 3
    report = Recorder()
    result = scale(cloud, SITE, ScaleRequest(workers=6), report, clock=FakeClock())
    assert result.action == "scaled"
    assert "update_stack" not in cloud.names()
    assert "stack bergen-grid is already being resized to 6 workers; attaching to it" in \
        report.notes
    stack.status, stack.polls_left = "UPDATE_IN_PROGRESS", 3
    with pytest.raises(StackBusy):  # another size is another operation
        scale(cloud, SITE, ScaleRequest(workers=5), report, clock=FakeClock())


def test_scale_without_waiting_reports_the_update_as_started() -> None:
    cloud = FakeCloud()
    cloud.add_stack("bergen-grid", worker_min="1", worker_max="7", worker_desired="1")
    result = scale(cloud, SITE, ScaleRequest(workers=3, wait=False), SilentReporter(),
                   clock=FakeClock())
    assert result.action == "started" and result.parameters == {"worker_desired": 3}


def test_a_wait_without_progress_stops_with_the_likely_cause_and_resume_takes_over() -> None:
    cloud = FakeCloud(polls=10_000)  # an engine that died: the create never moves again
    options = DeployOptions(stall_timeout=30, site_label="b.yaml")
    clock = FakeClock()
    with pytest.raises(StackStalled) as stalled:
        deploy(cloud, GRID, options, SilentReporter(), clock=clock)
    message = str(stalled.value)
    assert "has shown no progress for 30 s" in message
    assert "Heat engine that ran it stopped" in message
    assert "run `heatgen deploy b.yaml --resume`" in message
    assert stalled.value.exit_status == ExitStatus.TIMEOUT
    assert clock.t < 60
    stack = next(iter(cloud.stacks.values()))
    assert stack.status == "CREATE_IN_PROGRESS"  # left alone
    cloud.updates_while_busy, cloud.polls = True, 2
    result = deploy(cloud, GRID, DeployOptions(resume=True), SilentReporter(), clock=clock)
    assert result.action == "updated" and result.stack is not None
    assert result.stack.status == "UPDATE_COMPLETE"
    patch = next(f for name, f in cloud.calls if name == "update_stack")
    assert patch == {"fields": {}, "patch": True}


def test_the_wait_condition_may_take_its_own_timeout_before_a_wait_is_stalled() -> None:
    cloud = FakeCloud(polls=10_000)
    original = cloud.create_stack

    def create(fields: dict) -> str:
        stack_id = original(fields)
        cloud._event(cloud.stacks[stack_id], "master_wait", "CREATE_IN_PROGRESS")
        return stack_id

    cloud.create_stack = create  # type: ignore[method-assign]
    clock = FakeClock()
    with pytest.raises(StackStalled):
        deploy(cloud, GRID, DeployOptions(stall_timeout=30), SilentReporter(), clock=clock)
    assert clock.t >= SITE.wait_timeout  # Heat ends a live wait condition itself


def test_sandbox_deploy_without_waiting_still_sends_the_masters_signal() -> None:
    cloud = FakeCloud(polls=6)
    original = cloud.create_stack

    def create(fields: dict) -> str:
        stack_id = original(fields)
        cloud._event(cloud.stacks[stack_id], "master_wait", "CREATE_IN_PROGRESS")
        return stack_id

    cloud.create_stack = create  # type: ignore[method-assign]
    report = Recorder()
    watcher = hooks.master(cloud, report)
    result = deploy(cloud, GRID, DeployOptions(wait=False), report, clock=FakeClock(),
                    watcher=watcher)
    assert result.action == "started"
    assert watcher.done and len(cloud.signals) == 2
    assert result.stack is not None and result.stack.status == "CREATE_IN_PROGRESS"


def test_a_grid_whose_workers_hold_the_signing_key_is_not_updated_to_worker_tokens() -> None:
    """Its master ran its payload long ago and will never hand Heat the workers' token: the
    update would hang on worker_token_wait. heatgen refuses before changing anything."""
    cloud = FakeCloud()
    deployed = stackfields.definition(GRID, parameters={"worker_desired": 2})
    resources = dict(deployed.template["resources"])
    for name in ("worker_token_wait", "worker_token_handle"):
        del resources[name]
    old = Definition({**deployed.template, "resources": resources}, deployed.parameters,
                     deployed.files, deployed.registry)
    stack = cloud.add_stack("bergen-grid", **deployed.parameters)
    stack.outputs = {"worker_count": 2}
    stack.definition = old
    for options in (DeployOptions(dry_run=True), DeployOptions(yes=True)):
        with pytest.raises(UsageError) as caught:
            deploy(cloud, GRID, options, Recorder(), clock=FakeClock())
        message = str(caught.value)
        assert "workers all hold the pool signing key" in message
        assert "Nothing was changed" in message and "heatgen delete" in message
    assert "update_stack" not in cloud.names()
    # A grid that has the token wait deploys as before.
    stack.definition = deployed
    assert deploy(cloud, GRID, DeployOptions(), Recorder(), clock=FakeClock()).action in (
        "updated", "unchanged")


@pytest.mark.parametrize("has_token_wait", [True, False])
def test_the_sandbox_master_attached_to_a_create_signals_the_handles_its_template_has(
    has_token_wait: bool,
) -> None:
    cloud = FakeCloud()
    deployed = stackfields.definition(GRID, parameters={"worker_desired": 1})
    resources = dict(deployed.template["resources"])
    if not has_token_wait:
        for name in ("worker_token_wait", "worker_token_handle"):
            del resources[name]
    stack = cloud.add_stack("bergen-grid", status="CREATE_IN_PROGRESS", **deployed.parameters)
    stack.definition = Definition({**deployed.template, "resources": resources},
                                  deployed.parameters, deployed.files, deployed.registry)
    # What Heat lists early in a create: the master's wait condition waiting, nothing else yet.
    stack.resources = [Resource("master_wait", "OS::Heat::WaitCondition", "CREATE_IN_PROGRESS",
                                "", "", "s")]
    player = hooks.master(cloud, Recorder())
    player.attach(stack.id)
    player.attach(stack.id)  # a second look reads the template no more
    signalled = [url for url, _, _ in cloud.signals]
    expected = (["http://heat/worker_token_handle/signal"] if has_token_wait else []) + [
        "http://heat/master_wait_handle/signal"]
    assert signalled == expected and player.done
    assert cloud.names().count("deployed_definition") == 1


def test_the_sandbox_master_attached_after_the_ready_signal_still_sends_the_token() -> None:
    """An earlier deploy was killed after the ready signal and before the token's: the
    token's wait condition waits now, and the attached player must send it (only it)."""
    cloud = FakeCloud()
    deployed = stackfields.definition(GRID, parameters={"worker_desired": 1})
    stack = cloud.add_stack("bergen-grid", status="CREATE_IN_PROGRESS", **deployed.parameters)
    stack.definition = deployed
    stack.resources = [
        Resource("master_wait", "OS::Heat::WaitCondition", "CREATE_COMPLETE", "", "", "s"),
        Resource("worker_token_wait", "OS::Heat::WaitCondition", "CREATE_IN_PROGRESS", "", "",
                 "s"),
    ]
    player = hooks.master(cloud, Recorder())
    player.attach(stack.id)
    assert [url for url, _, _ in cloud.signals] == ["http://heat/worker_token_handle/signal"]
    assert player.done
