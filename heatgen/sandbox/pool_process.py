"""Background pool agent of the sandbox: ``python -m heatgen.sandbox.pool_process``.

Serves the stand-in stacks of ``up --pool`` (see :mod:`heatgen.sandbox.pool.agent`) until
SIGTERM; the hosts it booted keep running until ``heatgen sandbox down`` or their servers'
deletion.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heatgen-sandbox-pool")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from heatclient import client as heat_client

    from heatgen.sandbox import control
    from heatgen.sandbox.pool import network
    from heatgen.sandbox.pool.agent import Agent
    from heatgen.sandbox.settings import resolve_config

    config = resolve_config(args.state_dir)
    logging.basicConfig(
        filename=str(config.log_file("pool")), level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    heat = heat_client.Client("1", session=control.session(config))
    agent = Agent(heat, network.hosts_of(config), config.pool_dir)
    logging.getLogger("heatgen.sandbox.pool").info("pool agent started")
    agent.run(stopping.is_set)
    return 0


if __name__ == "__main__":
    sys.exit(main())
