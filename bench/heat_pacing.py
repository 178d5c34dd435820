"""Heat's own time for a group of N members, by the members' shape and by how many groups share
them.

    python bench/heat_pacing.py [--members 100] [--to 150] [--groups 1,5]
                                [--shapes nested,bare] [--state-dir DIR]

No heatgen command and no command-line client is timed: for each shape and each group count K,
the bench creates on the sandbox a stack of one security group and K AutoScalingGroups that
share the members evenly, then updates it (PATCH, ``existing``) to share ``--to`` members,
then deletes it, and times each from the request to the final status (polled every 0.5 s
over a session of its own). Members are ``nested`` (a port and a server in a template of
their own, the shape of heatgen's `templates/worker.yaml.j2`) or ``bare`` (one
OS::Nova::Server). The sandbox's environment makes servers and ports OS::Heat::None, so
what is timed is Heat's own work.

Why: Heat's convergence engine starts a traversal by sending each of its leaves (resources
that wait on nothing) their check one at a time, sleeping 1 s after each
(``Stack._converge_create_or_update`` in heat/engine/stack.py). A group's members wait on
nothing inside the group's nested stack, so a group of N members takes at least N seconds to
create, to update (a resize updates every member, old and new) and to delete, whatever the
client. K groups traverse side by side.

Without --state-dir a sandbox is started in a temporary directory on free ports and removed
at the end. Figures only, no pass/fail.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from bench_sandbox import bench_sandbox

REPO = Path(__file__).resolve().parents[1]
SHAPES = ("nested", "bare")
POLL = 0.5
LONGEST = 3600.0
USER_DATA = "#!/bin/sh\necho worker\n"

MEMBER = {
    "heat_template_version": "2021-04-16",
    "parameters": {name: {"type": "string"} for name in
                   ("image", "flavor", "network", "security_group", "stack_key")},
    "resources": {
        "port": {"type": "OS::Neutron::Port", "properties": {
            "network": {"get_param": "network"},
            "security_groups": [{"get_param": "security_group"}]}},
        "server": {"type": "OS::Nova::Server", "properties": {
            "name": {"list_join": ["-", ["worker", {"get_param": "OS::stack_name"}]]},
            "image": {"get_param": "image"},
            "flavor": {"get_param": "flavor"},
            "networks": [{"port": {"get_resource": "port"}}],
            "metadata": {"metering.stack": {"get_param": "stack_key"}},
            "user_data_format": "RAW",
            "user_data": USER_DATA}},
    },
    "outputs": {"server_id": {"value": {"get_resource": "server"}}},
}


def shares(members: int, groups: int) -> list[int]:
    """``members`` spread over ``groups`` as evenly as can be, the larger shares first."""
    base, extra = divmod(members, groups)
    return [base + (1 if k < extra else 0) for k in range(groups)]


def member_definition(shape: str) -> dict[str, Any]:
    """The AutoScalingGroup's ``resource`` for one member of ``shape``."""
    if shape == "nested":
        return {"type": "member.yaml", "properties": {
            "image": "worker-image", "flavor": "worker-flavor", "network": "private",
            "security_group": {"get_resource": "pool_security_group"},
            "stack_key": {"get_param": "OS::stack_id"}}}
    return {"type": "OS::Nova::Server", "properties": {
        "name": "worker", "image": "worker-image", "flavor": "worker-flavor",
        "networks": [{"network": "private"}],
        "security_groups": [{"get_resource": "pool_security_group"}],
        "metadata": {"metering.stack": {"get_param": "OS::stack_id"}},
        "user_data_format": "RAW", "user_data": USER_DATA}}


def grid_template(shape: str, groups: int) -> dict[str, Any]:
    """One security group and ``groups`` AutoScalingGroups of ``shape`` members, each sized
    by its own parameter ``desired_K``."""
    return {
        "heat_template_version": "2021-04-16",
        "parameters": {f"desired_{k}": {"type": "number"} for k in range(groups)},
        "resources": {
            "pool_security_group": {"type": "OS::Neutron::SecurityGroup"},
            **{f"workers_{k}": {"type": "OS::Heat::AutoScalingGroup", "properties": {
                "min_size": 0, "max_size": 10000,
                "desired_capacity": {"get_param": f"desired_{k}"},
                "resource": member_definition(shape)}} for k in range(groups)},
        },
    }


def sizes(members: int, groups: int) -> dict[str, int]:
    return {f"desired_{k}": n for k, n in enumerate(shares(members, groups))}


def wait(heat: Any, stack_id: str, want: str) -> None:
    from heatclient import exc

    deadline = time.monotonic() + LONGEST
    while time.monotonic() < deadline:
        try:
            status = heat.stacks.get(stack_id).stack_status
        except exc.HTTPNotFound:
            if want != "DELETE_COMPLETE":
                raise RuntimeError(f"stack {stack_id}: gone, not {want}") from None
            return
        if status == want:
            return
        if status.endswith("_FAILED"):
            raise RuntimeError(f"stack {stack_id}: {status}, not {want}")
        time.sleep(POLL)
    raise RuntimeError(f"stack {stack_id}: not {want} after {LONGEST:.0f} s")


def measure(heat: Any, shape: str, groups: int, members: int, to: int) -> tuple[float, ...]:
    """Seconds to create, resize and delete one such stack; the stack is deleted also on
    failure."""
    environment = yaml.safe_load((REPO / "environments" / "sandbox.yaml").read_text())
    created = heat.stacks.create(
        stack_name=f"heat-pacing-{shape}-{groups}", template=grid_template(shape, groups),
        files={"member.yaml": yaml.safe_dump(MEMBER)}, environment=environment,
        parameters=sizes(members, groups))
    stack_id = created["stack"]["id"]
    deleting = False
    try:
        started = time.monotonic()
        wait(heat, stack_id, "CREATE_COMPLETE")
        create = time.monotonic() - started
        started = time.monotonic()
        heat.stacks.update(stack_id, existing=True, parameters=sizes(to, groups))
        wait(heat, stack_id, "UPDATE_COMPLETE")
        resize = time.monotonic() - started
        started = time.monotonic()
        deleting = True
        heat.stacks.delete(stack_id)
        wait(heat, stack_id, "DELETE_COMPLETE")
        return create, resize, time.monotonic() - started
    finally:
        if not deleting:
            heat.stacks.delete(stack_id)
            wait(heat, stack_id, "DELETE_COMPLETE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100, help="members to create (100)")
    parser.add_argument("--to", type=int, help="members after the resize (default 1.5 N)")
    parser.add_argument("--groups", default="1,5", help="group counts, comma-separated (1,5)")
    parser.add_argument("--shapes", default="nested,bare",
                        help=f"member shapes, comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--state-dir", type=Path, help="a running sandbox to use")
    args = parser.parse_args()
    to = math.ceil(1.5 * args.members) if args.to is None else args.to
    try:
        group_counts = sorted({int(k) for k in args.groups.split(",")})
    except ValueError:
        parser.error(f"--groups: group counts such as 1,5 (got {args.groups!r})")
    shapes = [s for s in args.shapes.split(",") if s]
    if not shapes or any(s not in SHAPES for s in shapes):
        parser.error(f"--shapes: of {', '.join(SHAPES)} (got {args.shapes!r})")
    if args.members < 1 or to < 1:
        parser.error("--members and --to: at least 1 member")
    if not group_counts or group_counts[0] < 1 or group_counts[-1] > min(args.members, to):
        parser.error(f"--groups: from 1 to {min(args.members, to)}, the fewest members "
                     f"(got {args.groups!r})")

    from heatclient import client as heat_client

    from heatgen.sandbox import control

    with bench_sandbox(args.state_dir, "heatgen-pacing-", announce=True) as (config, _):
        heat = heat_client.Client("1", session=control.session(config))
        print(f"\nHeat's own time, {args.members} members resized to {to}, s (request to "
              "final status, +-0.5 s)")
        print("| member shape | groups | create | resize | delete |")
        print("| --- | --- | --- | --- | --- |")
        for shape in shapes:
            for groups in group_counts:
                create, resize, delete = measure(heat, shape, groups, args.members, to)
                print(f"| {shape} | {groups} | {create:.1f} | {resize:.1f} | {delete:.1f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
