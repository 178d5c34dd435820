"""What the HTCondor pool says about its workers: which machines are idle, and since when.

Scale-in must remove only idle workers, so this module turns the collector's slot ads into
:class:`Machine` values with one answer each: :attr:`Machine.idle`. The ads come from one of
a :class:`PoolQuery`: :class:`~heatgen.pool.ssh.SshPool` runs ``condor_status`` on the master
over ssh (the master's floating IP is the only public address of a grid),
:class:`~heatgen.pool.bindings.BindingsPool` asks a collector through the ``htcondor2``
bindings, and the sandbox replays recorded ``condor_status -json`` snapshots.

Idleness, as HTCondor's states define it (admin manual, "condor_startd Policy Configuration"):

- A static slot is idle when its ``State`` is ``"Unclaimed"``, or ``"Drained"`` with
  ``Activity == "Idle"``: the manual's Drained state is entered once a slot "has finished
  running jobs", and its Idle activity once *all* slots of the machine have drained, which is
  what ``condor_drain`` ends in. ``Drained/Retiring`` (other slots still running),
  ``Claimed``, ``Matched`` (a job is on its way), ``Preempting`` (a job is being evicted),
  ``Owner`` (the startd refuses jobs for a reason heatgen does not know, for instance an
  operator's policy) and ``Backfill`` are not idle, nor is a missing or unknown state:
  keeping a worker one more round costs a VM-hour, removing a busy one costs a job.
- A partitionable slot is idle when ``NumDynamicSlots == 0`` and its own state passes the
  rule above; a claimed partitionable slot (newer HTCondor can claim one whole) is not idle.
- A dynamic slot exists only while a job holds (part of) the machine. Its ad is not judged on
  its own, but any dynamic slot still listed keeps the machine busy, even if its
  partitionable slot's ``NumDynamicSlots`` already says 0: the two ads reach the collector
  separately, and the safe reading of a disagreement is "busy".
- A machine is idle only when it has at least one non-dynamic slot and all of them are idle.

"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from heatgen.pool.jobs import Queue


@dataclass(frozen=True)
class Slot:
    """One slot ad of a startd, reduced to what decides idleness."""

    name: str
    state: str | None
    activity: str | None
    partitionable: bool = False
    dynamic: bool = False
    dynamic_slots: int | None = None
    entered_current_state: int | None = None
    entered_current_activity: int | None = None
    cpus: int | None = None
    memory: int | None = None

    @property
    def short_name(self) -> str:
        """``slot1`` for ``slot1@host``: enough to tell a machine's slots apart."""
        return self.name.split("@", 1)[0]

    @property
    def free(self) -> bool:
        """No job holds this slot and none can start on it (the module's state rule)."""
        if self.dynamic or not _state_free(self):
            return False
        return not self.partitionable or self.dynamic_slots == 0

    @property
    def free_since(self) -> int | None:
        """When this slot became free: a drained slot's Idle activity began when the last slot
        of its machine finished; any other free slot became free when it entered its state."""
        if self.state == "Drained":
            return self.entered_current_activity
        return self.entered_current_state


@dataclass(frozen=True)
class Machine:
    """One execution point of the pool: all slot ads that share a ``Machine`` name."""

    name: str
    address: str | None
    addresses: tuple[str, ...]
    server_id: str | None
    slots: tuple[Slot, ...]
    drain_reason: str | None = None  # the -reason of the drain under way (DrainReason)

    @property
    def owner_slots(self) -> tuple[Slot, ...]:
        """The static and partitionable slots: the ones that own the machine's resources."""
        return tuple(slot for slot in self.slots if not slot.dynamic)

    @property
    def dynamic_slots(self) -> tuple[Slot, ...]:
        return tuple(slot for slot in self.slots if slot.dynamic)

    @property
    def idle(self) -> bool:
        """True only if the machine runs no job and none is on its way (module docstring)."""
        owners = self.owner_slots
        return bool(owners) and not self.dynamic_slots and all(slot.free for slot in owners)

    @property
    def idle_since(self) -> int | None:
        """Epoch second the machine became idle: the latest moment any of its slots became
        free. None when it is busy or a slot does not say.

        A partitionable slot stays Unclaimed while dynamic slots come and go, so for it this
        is when the slot last changed state, which can be earlier than its last job's end;
        it orders idle machines, it never makes a busy one look idle.
        """
        if not self.idle:
            return None
        times = [slot.free_since for slot in self.owner_slots]
        if any(time is None for time in times):
            return None
        return max(time for time in times if time is not None)

    @property
    def busy_since(self) -> int | None:
        """Epoch second of the oldest claim on the machine, None if idle or unknown: how much
        work a forced removal would throw away."""
        if self.idle:
            return None
        times = [
            slot.entered_current_state
            for slot in self.slots
            if slot.dynamic or (slot.state in _HELD_STATES and not slot.partitionable)
        ]
        known = [time for time in times if time is not None]
        return min(known) if known else None

    @property
    def draining(self) -> bool:
        """A drain was started on this machine; it stays true once the drain has finished."""
        return any(slot.state == "Drained" for slot in self.owner_slots)

    @property
    def busy_reason(self) -> str | None:
        """Why the machine is not idle, for people (``busy: 2 dynamic slots claimed``);
        None when it is idle."""
        if self.idle:
            return None
        owners = self.owner_slots
        statics = [slot for slot in owners if not slot.partitionable]
        held = max(
            len(self.dynamic_slots),
            sum(slot.dynamic_slots or 0 for slot in owners if slot.partitionable),
        )
        claimed = sum(1 for slot in statics if slot.state == "Claimed")
        parts: list[str] = []
        if held:
            still = "still " if self.draining else ""
            parts.append(f"{_plural(held, 'dynamic slot')} {still}claimed")
        if claimed:
            parts.append(f"{claimed} of {_plural(len(statics), 'slot')} claimed")
        if not owners:
            parts.append("no partitionable or static slot listed")
        for slot in owners:
            if slot.free:
                continue
            if slot.partitionable:
                if slot.dynamic_slots is None:
                    parts.append(f"{slot.short_name} does not report NumDynamicSlots")
                    continue
                if slot.dynamic_slots and (_state_free(slot) or slot.state == "Drained"):
                    continue
            elif slot.state == "Claimed":
                continue
            parts.append(_state_text(slot))
        if self.draining:
            prefix = "draining"
        elif held or claimed:
            prefix = "busy"
        else:
            prefix = "not idle"
        return f"{prefix}: {', '.join(parts)}"


_HELD_STATES = frozenset({"Claimed", "Matched", "Preempting"})


def _state_free(slot: Slot) -> bool:
    return slot.state == "Unclaimed" or (slot.state == "Drained" and slot.activity == "Idle")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _state_text(slot: Slot) -> str:
    if slot.state is None:
        return f"{slot.short_name} has no State"
    activity = f"/{slot.activity}" if slot.activity else ""
    return f"{slot.short_name} is {slot.state}{activity}"



class PoolQuery(Protocol):
    """heatgen's one interface to an HTCondor pool. Methods raise
    :class:`heatgen.errors.CloudError` when the pool cannot be asked.

    Drains take the :class:`Machine` values :meth:`machines` returned, not names: how a startd
    is addressed differs between readers (``condor_drain`` finds a startd by a slot's
    ``Name``, the bindings by its address), and a machine carries both.
    """

    def machines(self) -> list[Machine]: ...

    def drain(self, machines: Sequence[Machine], graceful: bool = True,
              reason: str | None = None) -> None:
        """Drain each machine (``reason``: the drain's ``-reason``; default heatgen scale-in's)."""

    def cancel_drain(self, machines: Sequence[Machine]) -> None: ...

    def queue(self) -> Queue:
        """The schedd's idle jobs and the end of the negotiator's last cycle."""

    def forget(self, machines: Sequence[Machine]) -> None:
        """Drop the machines' ads from the collector: a removed worker's VM vanishes without
        saying goodbye, and its ads would otherwise be matched until they expire."""

