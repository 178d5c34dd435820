"""What the command families share: common options, the cloud to talk to, confirmations."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

from heatgen.errors import UsageError

if TYPE_CHECKING:
    from heatgen.cloud.connect import Target
    from heatgen.config import Site


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def seconds(text: str) -> float:
    """An option's number of seconds that may be 0: finite, >= 0."""
    value = _number(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0 (got {text!r})")
    return value


def positive_seconds(text: str) -> float:
    """An option's number of seconds: finite, > 0."""
    value = _number(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0 (got {text!r})")
    return value


def percent(text: str) -> float:
    """A percentage: 0 to 100."""
    value = _number(text)
    if value is None or not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage from 0 to 100 (got {text!r})")
    return value


def port(text: str) -> int:
    """A TCP port: 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535 (got {text!r})")
    return value


def add_site(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("site", metavar="SITE.yaml", help="the site config")
    parser.add_argument(
        "--os-cloud", metavar="NAME",
        help="cloud in clouds.yaml (default: the site's `cloud:`, then OS_CLOUD / OS_* "
        "variables, then the running heatgen sandbox)",
    )


def add_waiting(parser: argparse.ArgumentParser, default_help: str) -> None:
    parser.add_argument("--timeout", type=positive_seconds, metavar="S", help=default_help)
    parser.add_argument("--no-wait", action="store_true", help="return once Heat accepted it")
    parser.add_argument(
        "--wait-for-idle", action="store_true",
        help="if the stack is busy with another operation, wait for it instead of failing",
    )
    parser.add_argument(
        "--stall-timeout", type=seconds, default=300.0, metavar="S",
        help="give up waiting (exit 5, the stack left alone) after S seconds without a new "
        "event, beyond what a running step (the master's wait condition) may take; 0: never "
        "(default 300)",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="print every event, also on a terminal")


def open_target(site: Site, os_cloud: str | None) -> Target:
    """The cloud for this site (see :mod:`heatgen.cloud.connect`), the sandbox plugged in.

    Commands call it as ``common.open_target``: the one place tests put their fake cloud."""
    from heatgen.cloud.connect import open_cloud
    from heatgen.sandbox.hooks import Locator

    return open_cloud(os_cloud, site.cloud, sandbox=Locator())


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def interrupted(args: argparse.Namespace, site: Site) -> None:
    """Ctrl-C during a wait: the stack goes on in Heat; the same command attaches again."""
    again = shlex.join(["heatgen", *getattr(args, "argv", [args.command, args.site])])
    print(
        f"heatgen: interrupted; stack {site.site} was left as it is. Run `{again}` again to "
        f"attach to it, or `heatgen status {shlex.quote(args.site)}` to look.",
        file=sys.stderr,
    )


POOL_RECORDING_VARIABLE = "HEATGEN_POOL_RECORDING"


def add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", choices=("ssh", "bindings"), default="ssh",
                       help="how to ask the HTCondor pool: ssh to the master and "
                       "run condor_status -json (default), or the htcondor2 bindings against "
                       "the collector on the master's floating IP")
    parser.add_argument("--ssh-user", default="root", help="user on the master (default root)")
    parser.add_argument("--ssh-key", metavar="FILE", help="ssh identity file")
    parser.add_argument("--pool-token", metavar="FILE",
                       help="IDTOKEN file for --pool bindings")


def pool_factory(args: argparse.Namespace, target: Target, site_key_name: str) -> Any:
    """How `scale` reaches the pool: the master over ssh, the bindings, or (in the sandbox
    only) a recording.

    ``HEATGEN_POOL_RECORDING`` (files of ``condor_status -json`` output, separated by ``:``)
    replays recorded pool states where no VM boots; on any other cloud it is refused, since
    it would choose which real workers to remove from files.
    """
    from heatgen.contract import GridOutputs
    from heatgen.pool.bindings import BindingsPool
    from heatgen.pool.ssh import SshPool

    recording = os.environ.get(POOL_RECORDING_VARIABLE)
    if recording and not target.sandbox:
        raise UsageError(
            f"{POOL_RECORDING_VARIABLE} is set, but cloud {target.name} is not the heatgen "
            "sandbox: recorded pools stand in for HTCondor only there. Unset it to ask the "
            "real pool"
        )

    def pool_for(stack: Any) -> Any:
        if recording:
            from heatgen.sandbox.recording import RecordedPool

            return RecordedPool.from_files(recording.split(os.pathsep))
        host = GridOutputs.of(stack.outputs).master_floating_ip
        if not host:
            return None
        if args.pool == "bindings":
            return BindingsPool(host, token_file=args.pool_token)
        identity, known = args.ssh_key, None
        if target.sandbox:
            from heatgen.sandbox import hooks

            # The pool's hosts carry the sandbox's key pair; their host keys stay in the
            # sandbox, not in the user's known_hosts.
            identity = identity or hooks.ssh_identity(site_key_name)
            known = hooks.known_hosts()
        return SshPool(host, user=args.ssh_user, identity_file=identity, known_hosts=known)

    return pool_for
