"""The pool asked through the ``htcondor2`` Python bindings, imported only when used (so
heatgen works without them)."""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from heatgen.errors import CloudError
from heatgen.pool.classad import STARTD_ATTRIBUTES, Expression, parse_startd_ads
from heatgen.pool.jobs import JOB_ATTRIBUTES, Queue, parse_jobs
from heatgen.pool.model import Machine
from heatgen.pool.ssh import DRAIN_REASON


def _plain_value(value: Any, classad2: Any) -> Any:
    """A value read from a ``classad2.ClassAd`` as the plain data :func:`parse_startd_ads`
    reads (what ``condor_status -json`` would have printed)."""
    if isinstance(value, classad2.ExprTree):
        return Expression(str(value))
    if isinstance(value, classad2.ClassAd):
        return {key: _plain_value(value[key], classad2) for key in value}
    if isinstance(value, list):
        return [_plain_value(item, classad2) for item in value]
    if isinstance(value, classad2.Value):
        return None if value == classad2.Value.Undefined else Expression("error")
    return value


class BindingsPool:
    """Asks a collector directly through the ``htcondor2`` Python bindings.

    Useful where the collector is reachable (on the master, or in the sandbox); from outside a
    grid, port 9618 is closed and :class:`SshPool` is the way in.

    Authentication: with ``token`` (the token itself) or ``token_file`` (a file holding one),
    the collector is asked with ``htcondor2.SecurityContext(token=...)`` where the bindings
    have it, and every call runs with ``SEC_TOKEN_DIRECTORY`` pointed at a private temporary
    directory holding the token, because ``htcondor2.Startd`` takes no security context (it
    reads the process configuration). Without either, the bindings use the local HTCondor
    configuration as any HTCondor tool would. The token needs READ for queries and
    ADMINISTRATOR on the startds for draining.

    The request id of each drain started here is kept, so that :meth:`cancel_drain` cancels
    exactly that drain.
    """

    def __init__(
        self,
        collector_host: str,
        token: str | None = None,
        *,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.collector_host = collector_host
        self._token = token
        self._token_file = token_file
        self._drain_requests: dict[str, str] = {}

    def _read_token(self) -> str | None:
        if self._token is not None:
            return self._token.strip()
        if self._token_file is None:
            return None
        try:
            return Path(self._token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise CloudError(
                f"cannot read the HTCondor token file {os.fspath(self._token_file)}: "
                f"{error.strerror}"
            ) from error

    @contextlib.contextmanager
    def _session(self) -> Iterator[tuple[Any, Any, Any]]:
        """(htcondor2, classad2, collector) with the token configured, errors as CloudError."""
        try:
            classad2, htcondor2 = import_bindings()
        except ImportError as error:
            raise CloudError(
                "the htcondor Python bindings are not installed (pip install htcondor)"
            ) from error
        token = self._read_token()
        with contextlib.ExitStack() as stack:
            security = None
            if token:
                stack.enter_context(_token_directory(htcondor2, token))
                context_type = getattr(htcondor2, "SecurityContext", None)
                if context_type is not None:
                    security = context_type(token=token)
            try:
                if security is not None:
                    collector = htcondor2.Collector(self.collector_host, security=security)
                else:
                    collector = htcondor2.Collector(self.collector_host)
                yield htcondor2, classad2, collector
            except htcondor2.HTCondorException as error:
                hint = "" if token else (
                    "; heatgen's pools authenticate every read: pass --pool-token FILE, a token "
                    "made on the master with `condor_token_create -identity "
                    "heatgen-reader@<master private ip> -authz READ` (README: pool security)")
                raise CloudError(
                    f"the HTCondor collector at {self.collector_host} failed: {error}{hint}"
                ) from error

    def machines(self) -> list[Machine]:
        with self._session() as (htcondor2, classad2, collector):
            ads = collector.query(htcondor2.AdTypes.Startd, projection=list(STARTD_ATTRIBUTES))
            plain = [{key: _plain_value(ad[key], classad2) for key in ad} for ad in ads]
        return parse_startd_ads(plain)

    def drain(self, machines: Sequence[Machine], graceful: bool = True,
              reason: str | None = None) -> None:
        """The bindings' equivalent of ``condor_drain -graceful`` (``-quick`` when not
        graceful): find the startd's address in a slot ad, then ask it to drain. An error of
        the drain itself is the startd's refusal, not the collector's."""
        with self._session() as (htcondor2, classad2, collector):
            drain_type = htcondor2.DrainType.Graceful if graceful else htcondor2.DrainType.Quick
            for machine in machines:
                startd = self._startd(htcondor2, classad2, collector, machine)
                try:
                    request = startd.drainJobs(drain_type=drain_type,
                                               reason=reason or DRAIN_REASON)
                except htcondor2.HTCondorException as error:
                    raise CloudError(
                        f"the startd of {machine.name} refused to drain: {error}; the likely "
                        "cause is an HTCondor token that allows READ only, or no token: "
                        "draining needs ADMINISTRATOR on the startds. The execute nodes of a "
                        "heatgen pool hold no signing key and cannot check any token, so "
                        "drain them with --pool ssh (condor_drain on the central manager)"
                    ) from error
                if isinstance(request, str) and request:
                    self._drain_requests[machine.name] = request

    def cancel_drain(self, machines: Sequence[Machine]) -> None:
        """Cancel the drains :meth:`drain` started on ``machines`` (by request id where it is
        known), so that their running jobs go on and they take new ones again."""
        with self._session() as (htcondor2, classad2, collector):
            failures = []
            for machine in machines:
                try:
                    startd = self._startd(htcondor2, classad2, collector, machine)
                    startd.cancelDrainJobs(request_id=self._drain_requests.get(machine.name))
                except (htcondor2.HTCondorException, CloudError) as error:
                    failures.append(f"{machine.name}: {error}")
                    continue
                self._drain_requests.pop(machine.name, None)
            if failures:
                raise CloudError(f"cancelling the drain failed for {'; '.join(failures)}")

    def queue(self) -> Queue:
        """Every schedd's idle jobs (the collector locates them), the negotiator's last cycle
        and the collector's start, as ``condor_q -allusers`` and ``condor_status`` give them."""
        with self._session() as (htcondor2, classad2, collector):
            jobs: list[dict[str, Any]] = []
            for location in collector.locateAll(htcondor2.DaemonType.Schedd):
                schedd = htcondor2.Schedd(location)
                ads = schedd.query(constraint="JobStatus == 1", projection=list(JOB_ATTRIBUTES))
                jobs += [{key: _plain_value(ad[key], classad2) for key in ad} for ad in ads]
            negotiators = collector.query(htcondor2.AdTypes.Negotiator,
                                          projection=["LastNegotiationCycleEnd0"])
            ends = [ad.get("LastNegotiationCycleEnd0") for ad in negotiators]
            # a collector's ad has no DaemonStartTime: when it looked at itself, less its age
            collectors = collector.query(htcondor2.AdTypes.Collector,
                                         projection=["MonitorSelfTime", "MonitorSelfAge"])
            selves = [(ad.get("MonitorSelfTime"), ad.get("MonitorSelfAge")) for ad in collectors]
        cycles = [int(end) for end in ends if isinstance(end, int | float)]
        starts = [int(when) - int(age) for when, age in selves
                  if isinstance(when, int | float) and isinstance(age, int | float)]
        return Queue(tuple(parse_jobs(jobs)), max(cycles) if cycles else None,
                     max(starts) if starts else None)

    def forget(self, machines: Sequence[Machine]) -> None:
        """Invalidate each machine's startd and master ads at the collector (needs a token
        that may ADVERTISE_STARTD and ADVERTISE_MASTER)."""
        with self._session() as (htcondor2, classad2, collector):
            for machine in machines:
                for kind, target in (("INVALIDATE_STARTD_ADS", "Machine"),
                                     ("INVALIDATE_MASTER_ADS", "DaemonMaster")):
                    ad = classad2.ClassAd({"MyType": "Query", "TargetType": target})
                    ad["Requirements"] = classad2.ExprTree(
                        f"Machine == {classad2.quote(machine.name)}")
                    collector.advertise([ad], kind)

    def _startd(self, htcondor2: Any, classad2: Any, collector: Any, machine: Machine) -> Any:
        """The ``htcondor2.Startd`` of ``machine``, located by the address in its slot ads.

        An execute node of a heatgen pool has no signing key, so it cannot check a token: an
        administrator reaches its startd through the ``RemoteAdminCapability`` its ads carry,
        which the collector hands only to clients it authorizes at ADMINISTRATOR."""
        ads = collector.query(
            htcondor2.AdTypes.Startd,
            constraint=f"Machine == {classad2.quote(machine.name)}",
            projection=["Machine", "MyAddress", "Name", "RemoteAdminCapability"],
        )
        located = [ad for ad in ads if "MyAddress" in ad]
        if not located:
            raise CloudError(f"the pool at {self.collector_host} does not list {machine.name}")
        return htcondor2.Startd(located[0])


def import_bindings() -> tuple[Any, Any]:
    """Import ``classad2`` and ``htcondor2`` leaving ``os.environ`` as it was: importing
    ``htcondor2`` without HTCondor installed sets ``CONDOR_CONFIG=/dev/null``, which every
    process started afterwards (condor tools on a sandbox host among them) would inherit."""
    saved = os.environ.get("CONDOR_CONFIG")
    try:
        return importlib.import_module("classad2"), importlib.import_module("htcondor2")
    finally:
        if saved is None:
            os.environ.pop("CONDOR_CONFIG", None)
        else:
            os.environ["CONDOR_CONFIG"] = saved

@contextlib.contextmanager
def _token_directory(htcondor2: Any, token: str) -> Iterator[None]:
    """Point the bindings' ``SEC_TOKEN_DIRECTORY`` at a private directory holding ``token``
    for the duration, then restore the previous setting and delete the directory."""
    param = htcondor2.param
    previous = param.get("SEC_TOKEN_DIRECTORY")
    with tempfile.TemporaryDirectory(prefix="heatgen-token-") as directory:
        path = Path(directory, "heatgen")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        param["SEC_TOKEN_DIRECTORY"] = directory
        try:
            yield
        finally:
            if previous is None:
                del param["SEC_TOKEN_DIRECTORY"]
            else:
                param["SEC_TOKEN_DIRECTORY"] = previous
