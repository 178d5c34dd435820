"""A pool that replays recorded ``condor_status -json`` outputs: the sandbox's pool, where
no VM boots (``HEATGEN_POOL_RECORDING``), and the tests'.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from heatgen.errors import CloudError
from heatgen.pool import Machine, parse_condor_status_json
from heatgen.pool.jobs import Queue


@dataclass(frozen=True)
class DrainRequest:
    """One drain asked of the pool, by machine name."""

    machines: tuple[str, ...]
    graceful: bool


class RecordedPool:
    """A pool that answers with recorded snapshots, in order, then keeps giving the last.

    Each snapshot is a list of :class:`Machine` or a ``condor_status -json`` text (parsed at
    construction, so a bad recording fails at once). Drain and cancel requests are recorded
    (by machine name), not acted on: the snapshots already say what the pool did.
    """

    def __init__(self, snapshots: Sequence[Sequence[Machine] | str]) -> None:
        if not snapshots:
            raise CloudError("a recorded pool needs at least one snapshot")
        self._snapshots = [
            parse_condor_status_json(s) if isinstance(s, str) else list(s) for s in snapshots
        ]
        self.queries = 0
        self.drain_requests: list[DrainRequest] = []
        self.cancel_requests: list[tuple[str, ...]] = []
        self.forgotten: list[tuple[str, ...]] = []

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]]) -> RecordedPool:
        """Snapshots read from ``condor_status -json`` files, in the order given."""
        texts = []
        for path in paths:
            try:
                texts.append(Path(path).read_text(encoding="utf-8"))
            except OSError as error:
                raise CloudError(
                    f"cannot read the pool recording {os.fspath(path)}: {error.strerror}"
                ) from error
        try:
            return cls(texts)
        except CloudError as error:
            raise CloudError(f"bad pool recording: {error}") from error

    def machines(self) -> list[Machine]:
        snapshot = self._snapshots[min(self.queries, len(self._snapshots) - 1)]
        self.queries += 1
        return list(snapshot)

    def drain(self, machines: Sequence[Machine], graceful: bool = True,
              reason: str | None = None) -> None:
        self.drain_requests.append(DrainRequest(tuple(m.name for m in machines), graceful))

    def queue(self) -> Queue:
        """A recording has no jobs (an empty queue)."""
        return Queue(())

    def cancel_drain(self, machines: Sequence[Machine]) -> None:
        self.cancel_requests.append(tuple(m.name for m in machines))

    def forget(self, machines: Sequence[Machine]) -> None:
        self.forgotten.append(tuple(m.name for m in machines))
