"""Reads that do not grow with a stack's history, against the real Heat of the sandbox.

The thesis grid gets a long history: its group grown to 7 workers and shrunk to 1 again and
again, so that its own stack, the group's nested stack and its member's stack hold hundreds
of events. Through a counting proxy (:mod:`tests.faultproxy`), ``status`` and the start of a
wait cost the same requests, and about the same bytes, as when the grid was new.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from heatgen.config import load_site
from heatgen.ops.inspect import status
from heatgen.ops.wait import latest_event
from heatgen.sandbox import exercise
from tests.faultproxy import direct_clouds_yaml, proxied_sandbox, thesis_site

from .conftest import Sandbox

pytestmark = pytest.mark.sandbox


def _heatgen(args: list[str], clouds: Path, sandbox: Sandbox, state: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_CLIENT_CONFIG_FILE=str(clouds), HEATGEN_SANDBOX_DIR=str(sandbox.config.state_dir))
    if state is not None:
        env["XDG_STATE_HOME"] = str(state)  # where heatgen remembers stack ids
    done = subprocess.run([sys.executable, "-m", "heatgen", *args, "--os-cloud", "heatgen-sandbox"],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _proxied_cloud(clouds_yaml: Path) -> Any:
    from heatgen.cloud.openstack import OpenStackCloud, session_from_entry

    entry = yaml.safe_load(clouds_yaml.read_text())["clouds"]["heatgen-sandbox"]
    return OpenStackCloud(session_from_entry("heatgen-sandbox", entry))


def test_status_and_a_waits_start_cost_the_same_however_long_the_history(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    name = "history-grid"
    site_path = thesis_site(tmp_path, name)
    site = load_site(site_path)
    direct = direct_clouds_yaml(sandbox.config, tmp_path / "direct-clouds.yaml")
    _heatgen(["deploy", str(site_path)], direct, sandbox)
    heat = sandbox.heat
    stack_id = heat.stacks.get(name).id
    try:
        with proxied_sandbox(sandbox.config, tmp_path) as proxied:
            cloud = _proxied_cloud(proxied.clouds_yaml)
            assert cloud.get_stack(name) is not None  # the token, outside the measures

            def cost(read: Callable[[], object]) -> tuple[int, int]:
                before = len(proxied.heat.records)
                read()
                records = proxied.heat.requests()[before:]
                return len(records), sum(r.received for r in records)

            def measures() -> dict[str, tuple[int, int]]:
                return {"status": cost(lambda: status(cloud, site)),
                        "marker": cost(lambda: latest_event(cloud, stack_id)),
                        "every event": cost(lambda: cloud.events(stack_id, after=None))}

            young = measures()
            for size in (7, 1, 7, 1, 7, 1):
                heat.stacks.update(stack_id, existing=True,
                                   parameters={"worker_desired": size})
                exercise.wait_for_stack(heat, stack_id, "UPDATE", timeout=300)
            old = measures()
        # Heat lists the events of the stacks that exist: the removed members' go with them.
        events = heat.events.list(stack_id, nested_depth=2)
        stacks = {link["href"] for e in events for link in e.links if link["rel"] == "stack"}
        assert len(events) > 120 and len(stacks) >= 3
        assert old["every event"][1] > 3 * young["every event"][1], (young, old)  # it grew
        assert old["status"][0] == young["status"][0]
        assert old["status"][1] < young["status"][1] + 4096, (young, old)
        assert old["marker"][0] == young["marker"][0] == 1
        assert old["marker"][1] < 2048, old
    finally:
        heat.stacks.delete(stack_id)
        exercise.wait_for_stack(heat, stack_id, "DELETE", timeout=300)


def test_a_stack_heatgen_has_seen_is_read_in_one_request_and_a_new_one_of_its_name_found(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """`heatgen events` of a stack heatgen deployed costs the token and one read (no version
    discovery at a /v3 auth URL, no lookup and redirect); after the stack was deleted and made
    again behind its back, the remembered id is noticed stale and the new stack is shown."""
    name = "ids-grid"
    site_path = thesis_site(tmp_path, name)
    mine, elsewhere = tmp_path / "state-mine", tmp_path / "state-elsewhere"
    heat = sandbox.heat
    try:
        with proxied_sandbox(sandbox.config, tmp_path) as proxied:
            _heatgen(["deploy", str(site_path)], proxied.clouds_yaml, sandbox, mine)
            first = heat.stacks.get(name).id

            def counted(state: Path) -> tuple[list[str], str]:
                before = [len(p.records) for p in proxied.proxies]
                out = _heatgen(["events", str(site_path), "--limit", "3"], proxied.clouds_yaml,
                               sandbox, state)
                calls = [f"{r.method} {r.path.split('?')[0]}"
                         for proxy, start in zip(proxied.proxies, before, strict=True)
                         for r in proxy.records[start:]]
                return calls, out

            calls, out = counted(mine)
            assert len(calls) == 2, calls
            assert calls[0].endswith("/v3/auth/tokens") and calls[0].startswith("POST")
            assert calls[1].endswith(f"/stacks/{name}/{first}/events"), calls
            assert "CREATE_COMPLETE" in out

            # Deleted and made again by another heatgen (another machine, say): the new one.
            heat.stacks.delete(first)
            exercise.wait_for_stack(heat, first, "DELETE", timeout=300)
            _heatgen(["deploy", str(site_path)], proxied.clouds_yaml, sandbox, elsewhere)
            second = heat.stacks.get(name).id
            assert second != first
            calls, out = counted(mine)
            assert calls[1].endswith(f"/stacks/{name}/{first}/events"), calls
            assert calls[-1].endswith(f"/stacks/{name}/{second}/events"), calls
            assert len(calls) == 4, calls  # the stale read, then the lookup and its redirect
            calls, _ = counted(mine)
            assert len(calls) == 2 and calls[1].endswith(f"/{second}/events"), calls
    finally:
        for stack in heat.stacks.list():
            if stack.stack_name == name:
                heat.stacks.delete(stack.id)
                exercise.wait_for_stack(heat, stack.id, "DELETE", timeout=300)


def test_stale_marks_are_found_by_heats_filtered_listing(sandbox: Sandbox, tmp_path: Path
                                                         ) -> None:
    # The check before every update asks heat-api for the marked members only (a filtered
    # listing), not for every member. Heat's filtered listing leaves the members out when a
    # resource of the grid's own stack is marked too: then every member is listed instead.
    from heatgen.cloud.group import group_members
    from heatgen.scalein import shrink

    name = "marks-grid"
    site_path = thesis_site(tmp_path, name)
    direct = direct_clouds_yaml(sandbox.config, tmp_path / "direct-clouds.yaml")
    _heatgen(["deploy", str(site_path)], direct, sandbox)
    cloud = _proxied_cloud(direct)
    stack = cloud.get_stack(name, outputs=False)
    assert stack is not None
    try:
        member = group_members(cloud, stack)[0]
        assert shrink.marked_members(cloud, stack) == []
        cloud.mark_unhealthy(member.nested_stack_id, member.name, True, shrink.MARK_REASON)
        listed = cloud.resources(stack.id, nested_depth=1, state="CHECK_FAILED")
        assert [(r.name, r.parent) for r in listed] == [(member.name, "workers")]
        assert [m.name for m in shrink.marked_members(cloud, stack)] == [member.name]

        top = next(r for r in cloud.resources(stack.id, nested_depth=0) if r.name != "workers")
        cloud.mark_unhealthy(stack.id, top.name, True, "marked by hand")
        listed = cloud.resources(stack.id, nested_depth=1, state="CHECK_FAILED")
        assert [r.name for r in listed] == [top.name]  # Heat's filtered listing: no member
        assert [m.name for m in shrink.marked_members(cloud, stack)] == [member.name]
        assert [m.name for m in shrink.take_back_stale_marks(cloud, stack).taken] == [
            member.name]
        cloud.mark_unhealthy(stack.id, top.name, False, "by hand")
        assert shrink.marked_members(cloud, stack) == []
    finally:
        sandbox.heat.stacks.delete(stack.id)
        exercise.wait_for_stack(sandbox.heat, stack.id, "DELETE", timeout=300)
