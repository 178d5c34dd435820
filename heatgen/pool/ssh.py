"""The pool asked over ssh: ``condor_status`` and ``condor_drain`` run on the master."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Sequence

from heatgen.errors import CloudError
from heatgen.pool.classad import STARTD_ATTRIBUTES, parse_condor_status_json
from heatgen.pool.jobs import JOB_ATTRIBUTES, Queue, parse_condor_q_json, parse_daemon_lines
from heatgen.pool.model import Machine

# The negotiator's last cycle and the collector's start, in one query. A collector's own ad
# has no DaemonStartTime (HTCondor 23.9): its start is when it last looked at itself less
# how long it had run by then.
COLLECTOR_START = "MonitorSelfTime - MonitorSelfAge"
DAEMONS_COMMAND = ["condor_status", "-any", "-constraint",
                   'MyType == "Negotiator" || MyType == "Collector"',
                   "-af", "MyType", "LastNegotiationCycleEnd0", COLLECTOR_START]

DRAIN_REASON = "heatgen scale-in"

_SSH_OPTIONS: tuple[str, ...] = ("BatchMode=yes", "ConnectTimeout=15")
# Trust on first use: the master's floating IP is new with every stack, and a changed key
# for a known address still fails loudly.
DEFAULT_HOST_KEY_POLICY = "accept-new"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class _CommandFailed(CloudError):
    """The remote command ran and exited non-zero (ssh itself worked)."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def startd_name(machine: Machine) -> str:
    """The name ``condor_drain`` finds a machine's startd by: the ``Name`` of its first
    partitionable or static slot (``slot1@w2``). Given the bare ``Machine`` (``w2``), it
    looks for a host of that name and fails with "unknown host"."""
    slots = machine.owner_slots or machine.slots
    return slots[0].name if slots else machine.name


def invalidate_script(machine: str) -> str:
    """A shell script that invalidates the startd and master ads of ``machine``."""
    name = machine.replace("\\", "\\\\").replace('"', '\\"')
    query = shlex.quote(f'MyType = "Query"\nTargetType = "Machine"\n'
                        f'Requirements = Machine == "{name}"\n')
    master = shlex.quote(f'MyType = "Query"\nTargetType = "DaemonMaster"\n'
                         f'Requirements = Machine == "{name}"\n')
    return (f"printf '%s' {query} | condor_advertise INVALIDATE_STARTD_ADS - && "
            f"printf '%s' {master} | condor_advertise INVALIDATE_MASTER_ADS -")


def _stderr_summary(stderr: str | bytes | None) -> str:
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [
        line.strip()
        for line in (stderr or "").splitlines()
        if line.strip() and not line.startswith("Warning: Permanently added")
    ]
    summary = " / ".join(lines[-3:])
    return summary if len(summary) <= 300 else "..." + summary[-297:]


class SshPool:
    """Asks the pool through ``condor_status`` and ``condor_drain`` on the master, over ssh.

    The master is the only VM with a public address and already holds the pool's client
    configuration and credentials, so nothing about HTCondor security has to exist on the
    operator's machine. ssh runs with ``BatchMode=yes`` (a password prompt would hang),
    a connect timeout and a deadline for the whole command.

    The query is plain ``condor_status -json`` (slot ads), not ``condor_status -startd``:
    since HTCondor 23.2 a startd can also advertise one "StartDaemon" ad per machine, and
    ``-startd`` selects those, which carry no slot state.
    """

    def __init__(
        self,
        host: str,
        user: str = "root",
        identity_file: str | os.PathLike[str] | None = None,
        runner: Runner = subprocess.run,
        *,
        timeout: float = 60.0,
        host_key_policy: str = DEFAULT_HOST_KEY_POLICY,
        sudo: bool = False,
        known_hosts: str | os.PathLike[str] | None = None,
    ) -> None:
        if not host or not user:
            raise CloudError("SshPool needs a host and a user")
        self.host = host
        self.user = user
        self.identity_file = os.fspath(identity_file) if identity_file is not None else None
        # Where host keys are kept (ssh's UserKnownHostsFile; default: the user's own).
        self.known_hosts = os.fspath(known_hosts) if known_hosts is not None else None
        self.runner = runner
        self.timeout = timeout
        self.host_key_policy = host_key_policy
        self.sudo = sudo

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}"

    def ssh_argv(self, remote: Sequence[str]) -> list[str]:
        """The exact ssh command line that runs ``remote`` on the master."""
        argv = ["ssh"]
        for option in (*_SSH_OPTIONS, f"StrictHostKeyChecking={self.host_key_policy}"):
            argv += ["-o", option]
        if self.identity_file is not None:
            argv += ["-o", "IdentitiesOnly=yes", "-i", self.identity_file]
        if self.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        command = ["sudo", "-n", *remote] if self.sudo else list(remote)
        return [*argv, "--", self.target, shlex.join(command)]

    def _run(self, what: str, remote: Sequence[str]) -> str:
        try:
            result = self.runner(
                self.ssh_argv(remote),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as error:
            raise CloudError("cannot run ssh: it is not installed or not on PATH") from error
        except subprocess.TimeoutExpired as error:
            raise CloudError(
                f"{what} on {self.target} did not finish within {self.timeout:g} s"
            ) from error
        if result.returncode == 255:
            raise CloudError(
                f"ssh to {self.target} failed: {_stderr_summary(result.stderr) or 'no message'}"
            )
        if result.returncode != 0:
            detail = _stderr_summary(result.stderr) or "no message"
            raise _CommandFailed(
                f"{what} on {self.target} failed with exit status {result.returncode}: {detail}",
                result.returncode,
                detail,
            )
        return result.stdout or ""

    def machines(self) -> list[Machine]:
        remote = ["condor_status", "-json", "-attributes", ",".join(STARTD_ATTRIBUTES)]
        output = self._run("condor_status", remote)
        try:
            return parse_condor_status_json(output)
        except CloudError as error:
            raise CloudError(f"condor_status on {self.target}: {error}") from error

    def drain(self, machines: Sequence[Machine], graceful: bool = True,
              reason: str | None = None) -> None:
        """``condor_drain`` each machine's startd (by :func:`startd_name`); ``graceful=False``
        means ``-quick`` (evict now, with the usual vacate time) rather than ``-fast`` (hard
        kill). A startd that refuses is named in the error."""
        schedule = "-graceful" if graceful else "-quick"
        for machine in machines:
            name = startd_name(machine)
            remote = ["condor_drain", schedule, "-reason", reason or DRAIN_REASON, name]
            try:
                self._run(f"condor_drain {name}", remote)
            except _CommandFailed as error:
                raise CloudError(
                    f"the startd of {machine.name} refused to drain: condor_drain {name} on "
                    f"{self.target} failed with exit status {error.status}: {error.detail}"
                ) from error

    def queue(self) -> Queue:
        """Every user's idle jobs (``condor_q -allusers``), the negotiator's last cycle and
        the collector's start time."""
        remote = ["condor_q", "-allusers", "-constraint", "JobStatus == 1", "-json",
                  "-attributes", ",".join(JOB_ATTRIBUTES)]
        output = self._run("condor_q", remote)
        daemons = self._run("condor_status -any", DAEMONS_COMMAND)
        try:
            jobs = parse_condor_q_json(output)
        except CloudError as error:
            raise CloudError(f"condor_q on {self.target}: {error}") from error
        return Queue(tuple(jobs), *parse_daemon_lines(daemons))

    def forget(self, machines: Sequence[Machine]) -> None:
        """``condor_advertise INVALIDATE_*_ADS`` for each machine's startd and master ads,
        from the master (its own credentials may advertise to its collector)."""
        for machine in machines:
            script = invalidate_script(machine.name)
            self._run(f"forgetting {machine.name}", ["sh", "-c", script])

    def cancel_drain(self, machines: Sequence[Machine]) -> None:
        """``condor_drain -cancel`` each machine's startd, so that its running jobs go on and
        it takes new ones again; every machine is tried, the failures are reported together."""
        failures = []
        for machine in machines:
            name = startd_name(machine)
            try:
                self._run(f"condor_drain -cancel {name}", ["condor_drain", "-cancel", name])
            except CloudError as error:
                failures.append(f"{machine.name}: {error}")
        if failures:
            raise CloudError(f"cancelling the drain failed for {'; '.join(failures)}")

