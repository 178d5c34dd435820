"""The sandbox a bench runs against: one already running, or its own for the bench's time."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def bench_sandbox(state_dir: Path | None, prefix: str, *,
                  announce: bool = False) -> Iterator[tuple[Any, Path]]:
    """The sandbox's config and a scratch directory (``prefix``...), removed at the end.

    With ``state_dir``, the sandbox running there, left running. Without, a sandbox started
    in the scratch directory on free loopback ports and stopped at the end, also on failure
    (``announce``: say where it starts)."""
    from heatgen.sandbox import control
    from heatgen.sandbox.settings import on_free_ports, resolve_config

    work = Path(tempfile.mkdtemp(prefix=prefix))
    own = state_dir is None
    try:
        if state_dir is None:
            config = on_free_ports(work / "sandbox")
            if announce:
                print(f"starting a sandbox in {config.state_dir}", flush=True)
            control.up(config)
        else:
            config = resolve_config(state_dir)
        try:
            yield config, work
        finally:
            if own:
                control.down(config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
