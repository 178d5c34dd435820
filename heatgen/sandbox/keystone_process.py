"""Background Keystone of the sandbox: ``python -m heatgen.sandbox.keystone_process``.

``serve`` runs the public Identity API on loopback; ``manage`` runs keystone-manage
commands with the SQLite safety hooks in place, several in one process (one Keystone import
instead of four) when separated by ``+``: ``manage ... -- db_sync + fernet_setup``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    """``ACTION --config-file F [--port P] [--sqlite] [-- KEYSTONE-MANAGE ARGS...]``."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="heatgen-sandbox-keystone", allow_abbrev=False)
    parser.add_argument("action", choices=["serve", "manage"])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sqlite", action="store_true", help="apply the SQLite safety hooks")
    args = parser.parse_args(argv[:split])
    args.manage_args = argv[split + 1 :]
    return args


def _split_commands(words: list[str]) -> list[list[str]]:
    commands: list[list[str]] = [[]]
    for word in words:
        if word == "+":
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.sqlite:
        from heatgen.sandbox import sqlite_safety

        sqlite_safety.install_hooks()
    if args.action == "manage":
        from keystone.cmd import cli

        for command in _split_commands(args.manage_args):
            cli.CONF.reset()
            cli.main(argv=["keystone-manage", "--config-file", args.config_file, *command])
        return 0
    return _serve(args.config_file, args.port)


def _serve(config_file: str, port: int) -> int:
    from heatgen.sandbox import serving

    # oslo.config reads sys.argv when Keystone configures itself: leave it nothing to parse.
    sys.argv = [sys.argv[0]]
    from keystone.server.flask import core

    try:
        app = core.initialize_application(name="public", config_files=[config_file])
    except Exception:
        import logging

        logging.getLogger(__name__).exception("keystone failed to start")
        return serving.EXIT_STARTUP_FAILED
    servers = [serving.LoopbackServer("keystone", port, app, threads=16)]
    serving.bind_all(servers)
    serving.run_until_signalled(servers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
