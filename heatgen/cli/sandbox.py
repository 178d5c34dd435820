"""``heatgen sandbox up | down | status | env | load``: parse, call the library, print, exit.

Imports only the standard library at module level; the sandbox library (and through it
keystoneauth/heatclient) is imported when a sandbox command runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heatgen.cli.common import percent, port, positive_seconds

if TYPE_CHECKING:
    from heatgen.sandbox.control import SandboxStatus
    from heatgen.sandbox.settings import SandboxConfig

_EPILOG = """\
The sandbox runs Keystone and Heat (heat-api, heat-api-cfn, heat-engine) from PyPI
(`pip install 'heatgen[sandbox]'`) on 127.0.0.1 only, default ports keystone 15000,
heat-api 18004, heat-api-cfn 18000. State (databases, configs, logs, PID files and the
generated admin password, mode 0600) lives in --state-dir, default $HEATGEN_SANDBOX_DIR or
$XDG_DATA_HOME/heatgen/sandbox (~/.local/share/heatgen/sandbox). Ports and backend given to
`up` are remembered there; another backend needs `up --reset`. While it runs, heatgen uses it
when no cloud is configured, and `--os-cloud heatgen-sandbox` names it (no clouds.yaml entry
needed; `heatgen sandbox env --write` adds one for other tools). Deploys to it add
environments/sandbox.yaml (maps Nova, Neutron, Cinder and Aodh resources to OS::Heat::None).

--backend postgres keeps both databases in a PostgreSQL cluster of its own in the state dir
(needs the Debian package: apt-get install postgresql; and pip install psycopg2-binary);
messaging stays in-process either way, so no RabbitMQ is needed.

--telemetry (with --backend postgres: Gnocchi's indexer does not run on SQLite) adds one
process with Gnocchi (API + metricd) and Aodh (API, evaluator every 10 s, notifier), services
`metric` and `alarming` in the sandbox Keystone, and a 60 s archive policy for `cpu`. The
grid's OS::Aodh alarms are then real (heatgen deploys with environments/sandbox-telemetry.yaml).
Cost measured on 2 cores: about +170 MiB RSS and +10 s start. Nothing plays Ceilometer:
`heatgen sandbox load SITE.yaml --cpu 90` pushes the workers' CPU samples.
"""


def register(sub: Any) -> None:
    """Add the ``sandbox`` command and its subcommands to the ``heatgen`` parser."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "sandbox",
        help="run a local Keystone + Heat to deploy against",
        description="Start, stop and inspect a local Keystone + Heat.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="sandbox_command", metavar="ACTION")
    actions.required = True

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir", type=Path, default=None,
        help="sandbox state directory (default: $HEATGEN_SANDBOX_DIR, else "
        "$XDG_DATA_HOME/heatgen/sandbox)",
    )

    up = actions.add_parser("up", parents=[common], help="start in the background and wait")
    up.add_argument("--keystone-port", type=port, help="Identity API port (default 15000)")
    up.add_argument("--heat-port", type=port, help="Orchestration API port (default 18004)")
    up.add_argument("--cfn-port", type=port, help="CloudFormation API port (default 18000)")
    up.add_argument("--backend", choices=["sqlite", "postgres"],
                    help="database backend (default sqlite: no system packages needed)")
    up.add_argument("--postgres-port", type=port, help="PostgreSQL port (default 15432)")
    up.add_argument("--timeout", type=positive_seconds, default=180.0,
                    help="seconds to wait for Heat to answer (default 180)")
    up.add_argument("--reset", action="store_true",
                    help="delete all sandbox data (stacks, users) first; passwords are kept "
                    "(asks on a terminal; needs --yes otherwise)")
    up.add_argument("--yes", action="store_true", help="with --reset: do not ask")
    up.add_argument("--telemetry", action=argparse.BooleanOptionalAction, default=None,
                    help="also run Gnocchi + Aodh, so the grid's CPU alarms are real (needs "
                    "--backend postgres; about +0.7 GB and +15 s; remembered like the ports)")
    up.add_argument("--pool", action=argparse.BooleanOptionalAction, default=None,
                    help="also run the compute and network stand-in: every server Heat creates "
                    "boots its user data as a sandbox host (network, mount and PID namespaces "
                    "over a cached Debian 13 root with HTCondor; built on first use, about a "
                    "minute); needs root; remembered like the ports")
    up.add_argument("--gnocchi-port", type=port, help="Metric API port (default 18041)")
    up.add_argument("--aodh-port", type=port, help="Alarming API port (default 18042)")
    up.set_defaults(func=_up)

    down = actions.add_parser("down", parents=[common], help="stop; stacks are kept")
    down.add_argument("--reset", action="store_true",
                      help="also delete all sandbox data (stacks, users, logs); asks on a "
                      "terminal, needs --yes otherwise")
    down.add_argument("--yes", action="store_true", help="with --reset: do not ask")
    down.set_defaults(func=_down)

    status = actions.add_parser(
        "status", parents=[common], help="what runs, on which ports, with how much memory",
        description="Exit status 0 when running or cleanly stopped, 3 when crashed or not "
        "answering.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    env = actions.add_parser(
        "env", parents=[common],
        help="print (or write) the clouds.yaml entry `heatgen-sandbox` (contains the password)",
    )
    env.add_argument(
        "--write", nargs="?", const="", default=None, metavar="PATH", type=str,
        help="merge the entry into PATH (default ~/.config/openstack/clouds.yaml), keeping "
        "other clouds and comments; the previous file is kept as PATH.bak",
    )
    env.add_argument("--format", choices=["clouds", "shell"], default="clouds",
                     help="clouds.yaml entry (default) or `export OS_...` lines")
    env.set_defaults(func=_env)

    ssh = actions.add_parser(
        "ssh", parents=[common], help="a shell or a command on a pool host (`up --pool`)",
        description="Run a shell, or CMD, inside a sandbox host: all its namespaces, its root. "
        "NODE is `master`, a server name (or its end: a group member's name) or a server id.",
    )
    ssh.add_argument("node", metavar="NODE", help="master, a server name or a server id")
    ssh.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD",
                     help="the command to run (default: an interactive shell)")
    ssh.set_defaults(func=_ssh)

    load = actions.add_parser(
        "load", parents=[common],
        help="push CPU samples for a deployed grid's workers (needs `up --telemetry`)",
        description="Keep a Gnocchi `instance` resource per worker of the grid (server_group = "
        "the group's metering.server_group, written as Ceilometer would) and push cumulative "
        "`cpu` measures at the given percentage, one per granularity bucket. Ctrl-C stops it.",
    )
    load.add_argument("site", type=Path, metavar="SITE.yaml", help="the site config")
    load.add_argument("--group", metavar="NAME", default=None,
                      help="the worker group to load (needed when the site has several)")
    load.add_argument("--cpu", type=percent, required=True, metavar="PERCENT",
                      help="CPU load of every worker, 0-100")
    load.add_argument("--duration", type=positive_seconds, default=None, metavar="S",
                      help="stop after S seconds (default: until Ctrl-C)")
    load.set_defaults(func=_load)


def _config(args: argparse.Namespace, **overrides: Any) -> SandboxConfig:
    from heatgen.sandbox.settings import resolve_config

    return resolve_config(args.state_dir, **overrides)


def _progress(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def format_status(current: SandboxStatus) -> str:
    """Human-readable status: one line per service, memory per process."""
    lines = [f"heatgen sandbox: {current.state} ({current.backend}, {current.state_dir})"]
    for process in current.processes:
        pid = f"pid {process.pid}" if process.pid else "-"
        for index, service in enumerate(process.services):
            where = f"{'127.0.0.1'}:{service.port}" if service.port else "(in process)"
            answer = {True: "answering", False: "NOT answering", None: ""}[service.answering]
            memory = f"RSS {_mib(process.rss_bytes)}" if index == 0 and process.rss_bytes else ""
            state = process.state if process.state != "running" else answer
            line = f"  {service.name:<13} {pid:<10} {where:<16} {state:<14} {memory}"
            lines.append(line.rstrip())
    for host in current.hosts:
        where = host.address + (f", floating {', '.join(host.floating)}" if host.floating else "")
        state = ("crashed" if not host.alive else
                 f"booted {host.booted}" if host.booted else "booting")
        memory = f"RSS {_mib(host.rss_bytes)}" if host.rss_bytes else ""
        lines.append(f"  host {host.name:<24} {where:<30} {state:<20} {memory}".rstrip())
    if current.rss_bytes:
        lines.append(f"  total RSS {_mib(current.rss_bytes)}")
    if current.state == "crashed":
        from heatgen.sandbox.control import describe_crash

        lines.append(describe_crash(current))
        lines.append("run `heatgen sandbox up` to restart it (stacks are kept), "
                     "or `heatgen sandbox down` to clean up")
    return "\n".join(lines)


def _status_json(current: SandboxStatus) -> dict[str, Any]:
    return {
        "state": current.state,
        "backend": current.backend,
        "state_dir": str(current.state_dir),
        "rss_bytes": current.rss_bytes,
        "startup_seconds": current.startup_seconds,
        "processes": [
            {
                "name": p.name, "state": p.state, "pid": p.pid, "rss_bytes": p.rss_bytes,
                "services": [
                    {"name": s.name, "port": s.port, "answering": s.answering}
                    for s in p.services
                ],
            }
            for p in current.processes
        ],
        "notes": list(current.notes),
        "hosts": [
            {"server_id": h.server_id, "name": h.name, "address": h.address,
             "floating": list(h.floating), "alive": h.alive, "booted": h.booted,
             "rss_bytes": h.rss_bytes}
            for h in current.hosts
        ],
    }


def _up(args: argparse.Namespace) -> int:
    from heatgen.sandbox import control

    config = _config(
        args, keystone_port=args.keystone_port, heat_port=args.heat_port,
        cfn_port=args.cfn_port, backend=args.backend, postgres_port=args.postgres_port,
        start_timeout=args.timeout, telemetry=args.telemetry, gnocchi_port=args.gnocchi_port,
        aodh_port=args.aodh_port, pool=args.pool,
    )
    if args.reset:
        _confirm_reset(config, args.yes)
    result = control.up(config, reset=args.reset, progress=_progress)
    for note in result.notes:
        _progress(note)
    print(format_status(result))
    if result.startup_seconds is not None:
        print(f"ready in {result.startup_seconds:.1f} s (heatclient round trip succeeded)")
    print("credentials: `heatgen sandbox env` (add --write for ~/.config/openstack/clouds.yaml)")
    return 0


def _confirm_reset(config: SandboxConfig, yes: bool) -> None:
    """--reset deletes every stack in the sandbox: ask, as `heatgen delete` does."""
    from heatgen.cli.common import confirm
    from heatgen.errors import UsageError
    from heatgen.sandbox import control

    if yes or not control.has_data(config):
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"--reset deletes every stack and user of the sandbox in {config.state_dir}; "
            "pass --yes when not on a terminal"
        )
    if not confirm(f"delete every stack and user of the sandbox in {config.state_dir}?"):
        raise UsageError("nothing was deleted")


def _down(args: argparse.Namespace) -> int:
    from heatgen.sandbox import control

    config = _config(args)
    if args.reset:
        _confirm_reset(config, args.yes)
    result = control.down(config, reset=args.reset, progress=_progress)
    for note in result.notes:
        print(note)
    if not result.notes:
        print("sandbox was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from heatgen.errors import ExitStatus
    from heatgen.sandbox import control

    current = control.status(_config(args))
    if args.json:
        print(json.dumps(_status_json(current), indent=2))
    else:
        print(format_status(current))
    return int(ExitStatus.OK if current.state in ("running", "stopped") else ExitStatus.CLOUD)


def _env(args: argparse.Namespace) -> int:
    import yaml

    from heatgen.sandbox import control
    from heatgen.sandbox.settings import CLOUD_NAME

    config = _config(args)
    if args.write is not None:
        path = control.write_clouds_yaml(config, Path(args.write) if args.write else None)
        print(f"wrote cloud `{CLOUD_NAME}` to {path}; use --os-cloud {CLOUD_NAME}",
              file=sys.stderr)
        return 0
    if args.format == "shell":
        entry = control.clouds_entry(config)
        auth = entry["auth"]
        exports = {
            "OS_AUTH_URL": auth["auth_url"], "OS_USERNAME": auth["username"],
            "OS_PASSWORD": auth["password"], "OS_PROJECT_NAME": auth["project_name"],
            "OS_USER_DOMAIN_NAME": auth["user_domain_name"],
            "OS_PROJECT_DOMAIN_NAME": auth["project_domain_name"],
            "OS_REGION_NAME": entry["region_name"], "OS_IDENTITY_API_VERSION": "3",
            "OS_INTERFACE": entry["interface"],
        }
        for key, value in exports.items():
            print(f"export {key}={shlex.quote(str(value))}")
        return 0
    sys.stdout.write(yaml.safe_dump(control.clouds_document(config), sort_keys=False))
    return 0


def _load(args: argparse.Namespace) -> int:
    from heatgen.sandbox import loadgen

    def progress(message: str) -> None:
        print(f"load: {message}", file=sys.stderr, flush=True)

    result = loadgen.run_for_site(args.site, args.cpu, duration=args.duration,
                                  state_dir=args.state_dir, progress=progress, group=args.group)
    print(f"pushed {result.samples} samples for {result.workers_seen} workers "
          f"over {result.elapsed:.0f} s")
    return 0


def _ssh(args: argparse.Namespace) -> int:
    from heatgen.errors import UsageError
    from heatgen.sandbox.pool import network

    config = _config(args)
    if not config.pool:
        raise UsageError(f"the sandbox in {config.state_dir} runs no pool; start it with "
                         "`heatgen sandbox up --pool`")
    states = network.host_states(config)
    node = args.node
    matches = [h for h in states if node in (h.server_id, h.name)
               or (node == "master" and h.name.endswith("-master"))
               or h.name.endswith(f"-{node}")]
    if len(matches) != 1:
        known = ", ".join(sorted(h.name for h in states)) or "none"
        raise UsageError(f"{'no' if not matches else 'more than one'} sandbox host matches "
                         f"{node!r} (hosts: {known})")
    command = [word for word in args.command if word != "--"] or ["/bin/bash", "-l"]
    done = network.hosts_of(config).run(matches[0].server_id, command, tty=True)
    return int(done.returncode)
