"""Which worker group a job can run on, evaluated as HTCondor evaluates it.

The job's ``Requirements`` and ``Request*`` expressions and the group's ``START`` expression
are ClassAd expressions: they are evaluated by HTCondor's own ClassAd library (the ``classad2``
module of the htcondor bindings), against a machine ad of the group's shape (a fresh worker:
its vCPUs, memory and GPUs, ``HeatGenGroup``), with what every heatgen worker advertises
besides (:data:`DEFAULT_MACHINE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from heatgen.errors import UsageError
from heatgen.pool.classad import Expression
from heatgen.pool.jobs import Job

# What every heatgen worker advertises beside its shape: a Linux x86_64 execute node with
# file transfer and plenty of scratch disk.
DEFAULT_MACHINE: Mapping[str, Any] = {
    "Arch": "X86_64", "OpSys": "LINUX", "HasFileTransfer": True, "Disk": 100 * 1024 * 1024,
}


def classad_module() -> Any:
    """``classad2``, the htcondor bindings' ClassAd library (the `autoscale` extra)."""
    try:
        from heatgen.pool.bindings import import_bindings

        classad2, _ = import_bindings()
    except Exception as error:  # noqa: BLE001 - any import failure means the same
        raise UsageError(
            "heatgen autoscale evaluates jobs' requirements with HTCondor's ClassAd library: "
            f"install the htcondor bindings (`pip install 'heatgen[autoscale]'`) ({error})"
        ) from None
    return classad2


@dataclass(frozen=True)
class Shape:
    """A worker of a group, as a job sees it."""

    group: str
    cpus: int
    memory_mb: int | None
    gpus: int
    start: str | None  # the START expression its workers have (None: true)


def _value(classad2: Any, value: Any) -> Any:
    if isinstance(value, Expression):
        return classad2.ExprTree(value.text)
    return value


@dataclass(frozen=True)
class Fit:
    """What a job takes of a worker of a shape (cpus, memory MB, gpus), or why it cannot run
    there (``need`` None)."""

    need: tuple[int, int, int] | None
    reason: str = ""


class Matcher:
    """Evaluates jobs against groups' worker shapes with ``classad2``; a job's ad is built
    once per matcher (one decision)."""

    def __init__(self, classad2: Any | None = None) -> None:
        self.classad2 = classad2 or classad_module()
        self._job_ads: dict[str, Any] = {}

    def machine_ad(self, shape: Shape) -> Any:
        ad = self.classad2.ClassAd(dict(DEFAULT_MACHINE))
        ad["Cpus"] = shape.cpus
        ad["TotalCpus"] = shape.cpus
        # unknown memory: a job's memory request never rules a group out
        memory = shape.memory_mb if shape.memory_mb is not None else 1 << 40
        ad["Memory"] = memory
        ad["TotalMemory"] = memory
        ad["GPUs"] = shape.gpus
        ad["HeatGenGroup"] = shape.group
        ad["Requirements"] = self.classad2.ExprTree(shape.start or "true")
        return ad

    def job_ad(self, job: Job) -> Any:
        ad = self._job_ads.get(job.id)
        if ad is None:
            ad = self.classad2.ClassAd()
            for key, value in job.ad.items():
                ad[key] = _value(self.classad2, value)
            self._job_ads[job.id] = ad
        return ad

    def request(self, job_ad: Any, machine: Any, attribute: str, default: int) -> int:
        """A job's Request* value against ``machine`` (expressions evaluated there)."""
        if attribute not in job_ad:
            return default
        value = job_ad[attribute]
        if isinstance(value, self.classad2.ExprTree):
            try:
                value = value.simplify(job_ad, machine)
            except Exception:  # noqa: BLE001 - an expression the library cannot evaluate
                return default
            value = value.eval() if isinstance(value, self.classad2.ExprTree) else value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return default
        return int(value)

    def fit(self, job: Job, shape: Shape) -> Fit:
        """Whether ``job`` can run on a fresh worker of ``shape``: what it takes, or why not."""
        machine = self.machine_ad(shape)
        ad = self.job_ad(job)
        cpus = self.request(ad, machine, "RequestCpus", 1)
        memory = self.request(ad, machine, "RequestMemory", 0)
        gpus = self.request(ad, machine, "RequestGpus", 0)
        if cpus > shape.cpus:
            return Fit(None, f"needs {cpus} CPUs, group {shape.group} has {shape.cpus}")
        if shape.memory_mb is not None and memory > shape.memory_mb:
            return Fit(None, f"needs {memory} MB, group {shape.group} has {shape.memory_mb}")
        if gpus > shape.gpus:
            return Fit(None, f"needs {gpus} GPUs, group {shape.group} has {shape.gpus}")
        try:
            matches = bool(ad.symmetricMatch(machine))
        except Exception:  # noqa: BLE001 - evaluation error: say so, do not guess
            return Fit(None, "its requirements cannot be evaluated")
        if not matches:
            return Fit(None, f"its requirements or group {shape.group}'s start rule exclude it")
        return Fit((cpus, memory, gpus))
