"""Worker groups: the config contract, the rendered groups, and deploy/scale per group over the
in-memory fake of heatgen's Cloud interface (the sandbox proves them on real Heat and HTCondor,
tests/integration/test_groups.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from heatclient.common import environment_format, template_format

from heatgen.cloud.interface import Definition, Resource
from heatgen.config import validate_site
from heatgen.contract import GroupNames, deployed_groups
from heatgen.errors import ConfigError, UsageError
from heatgen.ops import fields as stackfields
from heatgen.ops.deploy import DeployOptions, deploy, update_capacity
from heatgen.ops.report import SilentReporter
from heatgen.ops.scale import ScaleRequest, scale, scale_parameters
from heatgen.render import MAIN_TEMPLATE, render_site
from heatgen.sandbox.recording import RecordedPool
from heatgen.scalein import shrink

from .conftest import EXAMPLES
from .fakecloud import FakeClock, FakeCloud
from .test_pool import SERVER_IDS
from .test_scalein import NOW, machines_of

GROUPS = EXAMPLES / "groups.yaml"


def _data(path: Path = GROUPS) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def _site(data: dict[str, Any]) -> Any:
    return validate_site(data, "site.yaml")


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _site(data)
    return list(caught.value.problems)


# --- the config contract ----------------------------------------------------------------------


def test_groups_example_resolves_each_groups_values_and_overrides() -> None:
    site = _site(_data())
    assert [g.name for g in site.groups] == ["cpu", "highmem", "gpu"]
    cpu, highmem, gpu = site.groups
    assert (cpu.vcpus, cpu.memory_mb, cpu.gpus, cpu.min, cpu.max, cpu.desired) == (
        4, 8192, 0, 1, 20, 2)
    assert gpu.gpus == 1 and gpu.start == "TARGET.RequestGpus >= 1"
    # overrides apply over the site's autoscaling section, the rest is the site's
    assert (cpu.autoscaling.cpu_high, highmem.autoscaling.cpu_high, gpu.autoscaling.cpu_high) \
        == (60, 80, 70)
    assert (gpu.autoscaling.cooldown, cpu.autoscaling.cooldown) == (300, 120)
    assert gpu.autoscaling.granularity == 300 and gpu.autoscaling.cpu_low == 15
    assert [g.where for g in site.groups] == [
        "worker_groups[0]", "worker_groups[1]", "worker_groups[2]"]
    assert site.grouped and site.group(None) is None and site.group("gpu") == gpu


def test_workers_shorthand_is_the_single_group_under_the_old_names() -> None:
    site = _site(_data(EXAMPLES / "thesis.yaml"))
    [group] = site.groups
    assert group.names == GroupNames.of(None)
    assert (group.names.resource, group.names.desired, group.names.output("worker_count")) == (
        "workers", "worker_desired", "worker_count")
    assert site.group(None) == group and not site.grouped


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d.update(workers=_data(EXAMPLES / "thesis.yaml")["workers"]),
     ["worker_groups: cannot be given together with workers (workers is the shorthand for a "
      "single group: list every group under worker_groups)"]),
    (lambda d: d.pop("worker_groups"),
     ["workers: required field is missing (or list the groups under worker_groups)"]),
    (lambda d: d["worker_groups"][2].update(name="cpu"),
     ["worker_groups[2].name: must be unique: worker_groups[0] is also called 'cpu'"]),
    (lambda d: d["worker_groups"][1].update(name="High_Mem"),
     ["worker_groups[1].name: string should match pattern '^[a-z][a-z0-9-]{0,19}$' "
      "(got 'High_Mem')"]),
    (lambda d: d["worker_groups"][1].update(min=3, max=2, desired=2),
     ["worker_groups[1].max: must be >= worker_groups[1].min (got 2 < 3)",
      "worker_groups[1].desired: must be >= worker_groups[1].min (got 2 < 3)"]),
    (lambda d: d["worker_groups"][0].update(autoscaling={"cpu_low": 70}),
     ["worker_groups[0].autoscaling.cpu_low: must be below autoscaling.cpu_high (got 70 >= 60)"]),
    (lambda d: d["worker_groups"][2]["autoscaling"].update(telemetry="none"),
     ["worker_groups[2].autoscaling.telemetry: unknown field (allowed: cooldown, cpu_high, "
      "cpu_low, evaluation_periods, idle_timeout, join_timeout, keep_idle, max_scale_in, "
      "scale_down_step, scale_in, scale_up_delay, scale_up_step)"]),
    (lambda d: d["worker_groups"][0].update(gpus=-1),
     ["worker_groups[0].gpus: must be greater than or equal to 0 (got -1)"]),
    # `workers:` or `worker_groups:` with nothing after it (YAML's null): said, not a traceback.
    (lambda d: d.update(worker_groups=None),
     ["worker_groups: must not be empty: list at least one group (or give a single group "
      "under workers)"]),
    (lambda d: (d.pop("worker_groups"), d.update(workers=None)),
     ["workers: must not be empty: give the group's image, flavor, vcpus, min, max and desired "
      "(or list the groups under worker_groups)"]),
    (lambda d: d.update(worker_groups=[]),
     ["worker_groups: list should have at least 1 item after validation, not 0 (got list)"]),
    (lambda d: (d["master"].update(os="debian13"), d["condor"].update(version="23.9")),
     ["worker_groups[0].os: must be debian13 on both the master and every worker group or on "
      "neither: Debian 13 ships only HTCondor \"23.9\", the other images need 24.0 or newer, "
      "and the pool runs one condor.version (got 'el9' with master.os 'debian13')"]),
])
def test_bad_groups_are_named_by_their_field(change: Any, expected: list[str]) -> None:
    data = _data()
    change(data)
    assert _problems(data) == expected


# --- rendering --------------------------------------------------------------------------------


def _parsed(site: Any) -> tuple[dict[str, Any], dict[str, str]]:
    files = dict(render_site(site).files)
    return template_format.parse(files[MAIN_TEMPLATE]), files


def test_each_group_is_its_own_autoscaling_group_gated_on_the_master() -> None:
    site = _site(_data())
    main, files = _parsed(site)
    resources = main["resources"]
    env = environment_format.parse(files["grid-env.yaml"])
    for group in site.groups:
        names = group.names
        asg = resources[names.resource]
        assert asg["type"] == "OS::Heat::AutoScalingGroup"
        assert asg["depends_on"] == ["master_wait", "worker_token_wait"]
        props = asg["properties"]
        assert props["desired_capacity"] == {"get_param": names.desired}
        assert props["max_size"] == {"if": [f"parked_{names.key}", 0,
                                            {"get_param": names.max}]}
        assert env["resource_registry"][props["resource"]["type"]] == names.member_template
        assert env["parameters"][names.desired] == group.desired
        assert env["parameters"][f"cooldown_{names.key}"] == group.autoscaling.cooldown
        for policy in ("scale_up_policy", "scale_down_policy"):
            assert resources[names.suffixed(policy)]["properties"]["auto_scaling_group_id"] \
                == {"get_resource": names.resource}
        for output in ("worker_count", "worker_server_ids", "worker_private_ips",
                       "scale_up_url", "scale_down_url"):
            assert names.output(output) in main["outputs"]
        member = template_format.parse(files[names.member_template])
        server = member["resources"]["server"]["properties"]
        # tagged with the grid, and with a server_group only this group's members carry
        assert server["metadata"] == {
            "metering.stack": {"get_param": "stack_key"},
            "metering.server_group": {"list_join": ["-", [{"get_param": "stack_key"},
                                                          group.name]]},
            "metering.worker_group": group.name,
        }
        assert server["user_data"]["str_replace"]["template"] == {"get_file": names.boot_file}
    assert [g.resource for g in deployed_groups(main)] == ["workers_cpu", "workers_highmem",
                                                          "workers_gpu"]


def test_each_groups_alarms_see_only_its_members_in_its_own_units() -> None:
    site = _site(_data())
    main, files = _parsed(site)
    env = environment_format.parse(files["grid-env.yaml"])["parameters"]
    resources = main["resources"]
    for group in site.groups:
        names = group.names
        query = resources[names.suffixed("alarm_query")]["properties"]["value"]["str_replace"]
        assert json.loads(query["template"]) == {"and": [
            {"=": {"server_group": f"__STACK_ID__-{group.name}"}}, {"=": {"ended_at": None}}]}
        high = resources[names.suffixed("cpu_alarm_high")]["properties"]
        assert high["query"] == {"get_attr": [names.suffixed("alarm_query"), "value"]}
        # CPU-nanoseconds per 300 s bucket of this group's vCPUs
        threshold = env[names.suffixed("cpu_high_threshold")]
        assert threshold == group.autoscaling.cpu_high / 100 * 300 * 1e9 * group.vcpus
        low_alarm = names.suffixed("cpu_alarm_low") in resources
        assert low_alarm == (group.autoscaling.scale_in.value == "alarm")


def test_prometheus_groups_select_their_members_by_the_server_group_label() -> None:
    site = _site(_data(EXAMPLES / "groups-prometheus.yaml"))
    main, _ = _parsed(site)
    small, big = (main["resources"][g.names.suffixed("alarm_query")]["properties"]["value"]
                  ["str_replace"]["template"] for g in site.groups)
    assert small == ('avg(rate(ceilometer_cpu{server_group="__STACK_ID__-small"}'
                     '[__GRANULARITY__s])) / 40000000')
    assert big.startswith('avg(rate(ceilometer_cpu{server_group="__STACK_ID__-big-mem"}')
    assert main["resources"]["alarm_query_big_mem"]["properties"]["value"]["str_replace"][
        "params"] == {"__STACK_ID__": {"get_param": "OS::stack_id"},
                      "__GRANULARITY__": {"get_param": "granularity"}}


def test_workers_advertise_their_group_and_only_gpu_groups_discover_gpus() -> None:
    site = _site(_data())
    _, files = _parsed(site)
    for group in site.groups:
        text = files[group.names.boot_file]
        assert f'HeatGenGroup = "{group.name}"' in text
        assert "STARTD_ATTRS = $(STARTD_ATTRS) HeatGenGroup" in text
        assert ("use feature:GPUs" in text) == (group.gpus > 0)
        assert f"START = {group.start}" in text if group.start else "START =" not in text
    data = _data()
    data["condor"]["start"] = "TARGET.Owner =!= \"nobody\""
    _, files = _parsed(_site(data))
    assert 'START = (TARGET.Owner =!= "nobody") && (TARGET.RequestGpus >= 1)' in \
        files["worker-boot-gpu.yaml"]
    assert 'START = TARGET.Owner =!= "nobody"' in files["worker-boot-cpu.yaml"]
    single = dict(render_site(_site(_data(EXAMPLES / "thesis.yaml"))).files)
    assert "HeatGenGroup" not in single["worker-boot.yaml"]
    assert "metering.worker_group" not in single["worker.yaml"]


# --- deploy and scale per group -----------------------------------------------------------------


SITE = _site(_data())
GRID = render_site(SITE)


def _stack(cloud: FakeCloud, sizes: dict[str, int], deployed: dict[str, int] | None = None,
           ) -> Any:
    """A deployed groups grid whose groups have ``sizes`` members now."""
    params = {**stackfields.environment_parameters(GRID)}
    for name, size in sizes.items():
        params[f"worker_desired_{name}"] = size
        params[f"site_worker_desired_{name}"] = (deployed or {}).get(
            name, SITE.group(name).desired)
    stack = cloud.add_stack(SITE.site, **params)
    stack.outputs = {f"worker_count_{name}": size for name, size in sizes.items()}
    definition = stackfields.definition(GRID, parameters={
        f"worker_desired_{name}": size for name, size in sizes.items()})
    stack.definition = definition
    return stack


def test_a_redeploy_keeps_each_groups_size_and_gives_a_new_group_its_own() -> None:
    cloud = FakeCloud()
    _stack(cloud, {"cpu": 5, "highmem": 0})  # gpu is new
    view = cloud.get_stack(SITE.site)
    assert view is not None
    capacity = update_capacity(SITE, view, "groups.yaml")
    assert dict(capacity.parameters) == {"worker_desired_cpu": 5, "worker_desired_highmem": 0,
                                         "worker_desired_gpu": 0}
    assert capacity.notes == ()
    lowered = _data()
    lowered["worker_groups"][0]["desired"] = 1
    lowered["worker_groups"][0]["max"] = 3
    capacity = update_capacity(_site(lowered), view, "groups.yaml")
    assert capacity.parameters["worker_desired_cpu"] == 5
    assert capacity.parameters["worker_max_cpu"] == 5
    assert any("worker_groups[0].desired changed 2 -> 1" in note and
               "`heatgen scale groups.yaml --group cpu --workers 1`" in note
               for note in capacity.notes)


def _deploy(cloud: FakeCloud, site_data: dict[str, Any], **options: Any) -> Any:
    grid = render_site(_site(site_data))
    return deploy(cloud, grid, DeployOptions(site_label="groups.yaml", **options),
                  SilentReporter(), clock=FakeClock())


def test_removing_a_group_with_workers_is_refused_and_an_empty_one_goes() -> None:
    cloud = FakeCloud()
    _stack(cloud, {"cpu": 2, "highmem": 1, "gpu": 0})
    without_highmem = _data()
    del without_highmem["worker_groups"][1]
    cloud.plan = {"deleted": ["workers_highmem"], "unchanged": ["workers_cpu", "workers_gpu"]}
    with pytest.raises(UsageError) as caught:
        _deploy(cloud, without_highmem)
    assert str(caught.value).startswith(
        "this update removes worker group workers_highmem: all 1 workers would be removed, "
        "busy or not. Drain it to 0 first (`heatgen scale groups.yaml --group highmem "
        "--workers 0 --min 0 --drain`; with the group still in groups.yaml)")
    assert "update_stack" not in cloud.names()
    without_gpu = _data()
    del without_gpu["worker_groups"][2]
    cloud.plan = {"deleted": ["workers_gpu"], "unchanged": ["workers_cpu", "workers_highmem"]}
    result = _deploy(cloud, without_gpu)
    assert result.action == "updated" and "update_stack" in cloud.names()
    assert result.plan.group("workers_gpu").after == 0


def test_a_plan_that_shrinks_one_group_is_refused_naming_it() -> None:
    cloud = FakeCloud()
    _stack(cloud, {"cpu": 2, "highmem": 3, "gpu": 0})
    shrunk = _data()
    shrunk["worker_groups"][1]["max"] = 2
    # the deploy keeps the maximum at the group's size: nothing shrinks
    cloud.plan = {"updated": ["workers_highmem"]}
    result = _deploy(cloud, shrunk, dry_run=True)
    assert result.plan.group("workers_highmem").after == 3
    assert "  workers_cpu: 2 now, 2 after the update" in result.plan.lines()
    # a template that would shrink it by another route is refused
    stack = next(iter(cloud.stacks.values()))
    template = dict(stack.definition.template)
    template["resources"] = dict(template["resources"])
    grid = render_site(SITE)
    body = stackfields.template_body(grid)
    body["resources"]["workers_highmem"]["properties"]["max_size"] = 1
    forced = Definition(body, stack.definition.parameters, stack.definition.files,
                        stack.definition.registry)
    from heatgen.ops.plan import reconciled_plan

    plan = reconciled_plan({"updated": ["workers_highmem"]}, stack.definition, forced,
                           {"workers_cpu": 2, "workers_highmem": 3, "workers_gpu": 0})
    assert plan.group("workers_highmem").shrinks and not plan.group("workers_cpu").shrinks
    assert plan.shrinks_group


def test_scale_needs_the_group_on_a_site_of_several_and_patches_only_its_size() -> None:
    request = ScaleRequest(workers=3, site_label="groups.yaml")
    with pytest.raises(UsageError) as caught:
        scale_parameters(SITE, request)
    assert str(caught.value) == (
        "groups.yaml has 3 worker groups (cpu, highmem, gpu): name the one to resize with "
        "--group, e.g. `heatgen scale groups.yaml --group cpu --workers 3`")
    with pytest.raises(UsageError, match=r"--group gpu2: groups.yaml has no worker group "
                                         r"'gpu2' \(its groups: cpu, highmem, gpu\)"):
        scale_parameters(SITE, ScaleRequest(workers=1, group="gpu2", site_label="groups.yaml"))
    with pytest.raises(UsageError, match=r"--workers 5 is above the maximum 4 \(worker_groups"
                                         r"\[2\].max\); raise it with `heatgen scale groups.yaml "
                                         r"--group gpu --workers 5 --max 5`"):
        scale_parameters(SITE, ScaleRequest(workers=5, group="gpu", site_label="groups.yaml"))
    cloud = FakeCloud()
    _stack(cloud, {"cpu": 2, "highmem": 0, "gpu": 0})
    result = scale(cloud, SITE, ScaleRequest(workers=2, group="gpu"), SilentReporter(),
                   clock=FakeClock())
    assert result.action == "scaled" and result.wanted == 2
    [(_, update)] = [c for c in cloud.calls if c[0] == "update_stack"]
    assert update == {"fields": {"parameters": {"worker_desired_gpu": 2}}, "patch": True}


def test_scale_in_of_one_group_chooses_only_among_its_members() -> None:
    cloud = FakeCloud()
    stack = _stack(cloud, {"cpu": 3, "highmem": 2, "gpu": 0})
    # five idle workers in the pool: members 1-3 of group cpu, 4-5 of group highmem
    groups = {1: "workers_cpu", 2: "workers_cpu", 3: "workers_cpu", 4: "workers_highmem",
              5: "workers_highmem"}
    stack.resources = [
        Resource(f"member-{i}", "HeatGen::Grid::Worker::x", "CREATE_COMPLETE", "",
                 f"nested-{i}", "group-stack", parent=parent, created=f"2026-01-01T00:00:0{i}Z")
        for i, parent in groups.items()
    ]
    for key in ("cpu", "highmem"):
        ids = {f"member-{i}": SERVER_IDS[i] for i, p in groups.items() if p.endswith(key)}
        stack.outputs[f"worker_server_ids_{key}"] = ids
    stack.outputs["master_floating_ip"] = "203.0.113.10"
    pool = RecordedPool([machines_of("idle-five")] * 3)
    options = shrink.ScaleInOptions(now=lambda: NOW + 3600)
    result = scale(cloud, SITE, ScaleRequest(workers=1, group="highmem"), SilentReporter(),
                   clock=FakeClock(), pool_for=lambda s: pool, scale_in_options=options)
    assert result.scale_in is not None
    assert {m.group for m in result.scale_in.members} == {"highmem"}
    assert len(result.scale_in.removed) == 1
    assert set(result.scale_in.removed) <= {"member-4", "member-5"}
    marked = [args for name, args in cloud.calls if name == "mark_unhealthy"]
    assert marked and all(args[0] in {"member-4", "member-5"} for args in marked)
    [(_, update)] = [c for c in cloud.calls if c[0] == "update_stack"]
    assert update["fields"] == {"parameters": {"worker_desired_highmem": 1}}


def test_a_scale_dry_run_plans_the_named_groups_size() -> None:
    cloud = FakeCloud()
    _stack(cloud, {"cpu": 2, "highmem": 0, "gpu": 0})
    cloud.plan = {"updated": ["workers_gpu"]}
    result = scale(cloud, SITE, ScaleRequest(workers=2, group="gpu", dry_run=True),
                   SilentReporter(), clock=FakeClock())
    assert result.action == "planned" and result.plan is not None
    assert "  workers_gpu: 0 now, 2 after the update" in result.plan.lines()
    assert [g.resource for g in result.plan.groups if g.now is not None] == ["workers_gpu"]
    assert "update_stack" not in cloud.names()
