"""Background Heat of the sandbox: ``python -m heatgen.sandbox.heat_process``.

heat-engine (with its convergence worker), heat-api and heat-api-cfn in one process over
oslo.messaging's in-process ``fake`` transport, so no message broker is needed. The engine
starts (and declares its RPC topics) before the APIs accept requests, so no RPC is sent to a
topic nobody listens on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

LOG = logging.getLogger("heatgen.sandbox.heat")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="heatgen-sandbox-heat")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--cfn-port", type=int, required=True)
    parser.add_argument("--sqlite", metavar="DB", help="SQLite database to harden and use")
    parser.add_argument("--api-also-on", metavar="ADDRESS",
                        help="serve heat-api on this address too (the pool's bridge)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    from oslo_service import backend

    # Heat's own heat-engine does this too; it must precede any oslo_service import.
    backend.init_backend(backend.BackendType.THREADING)

    from heatgen.sandbox import serving, sqlite_safety

    if args.sqlite:
        sqlite_safety.install_hooks()

    from heat import version
    from heat.common import config, messaging
    from heat.db import migration
    from heat.engine import template
    from heat.rpc import api as rpc_api
    from oslo_config import cfg
    from oslo_log import log as oslo_log

    conf = cfg.CONF
    oslo_log.register_options(conf)
    conf(
        args=["--config-file", args.config_file],
        project="heat",
        prog="heat-sandbox",
        version=version.version_info.version_string(),
    )
    oslo_log.setup(conf, "heat")
    try:
        config.set_config_defaults()
        messaging.setup()
        config.startup_sanity_check()
        with sqlite_safety.deferred_transactions():
            migration.db_sync()
        if args.sqlite:
            rebuilt = sqlite_safety.rebuild_integer_keys(args.sqlite)
            if rebuilt:
                LOG.info("rebuilt with AUTOINCREMENT: %s", ", ".join(rebuilt))
        template._get_template_extension_manager()

        from heat.engine import service as engine_service

        forget_finished_threads(engine_service.ThreadGroup)
        from heat.engine import sync_point

        one_literal_eval_at_a_time(sync_point)
        engine = engine_service.EngineService(conf.host, rpc_api.ENGINE_TOPIC)
        api = config.load_paste_app("heat-api")
        cfn = config.load_paste_app("heat-api-cfn")
    except Exception:
        LOG.exception("heat failed to start")
        return serving.EXIT_STARTUP_FAILED

    servers = [
        serving.LoopbackServer("heat-api", args.api_port, api, threads=16),
        serving.LoopbackServer("heat-api-cfn", args.cfn_port, cfn, threads=8),
    ]
    if args.api_also_on:
        # Sandbox hosts signal their wait conditions here, as VMs reach a cloud's Heat.
        servers.append(serving.LoopbackServer("heat-api-pool", args.api_port, api, threads=8,
                                              host=args.api_also_on))
    serving.bind_all(servers)
    try:
        engine.start()
    except Exception:
        LOG.exception("heat-engine failed to start")
        return serving.EXIT_STARTUP_FAILED
    serving.run_until_signalled(servers, on_stop=engine.stop)
    return 0


def forget_finished_threads(group_class: Any) -> None:
    """Heat's per-stack ThreadGroup on oslo.service's threading backend keeps every thread it
    ever started in ``threads`` (its ``add_thread`` never calls ``thread_done``) and refuses
    the 1001st ("Maximum number of threads reached"): a group of about 450 members fails its
    update, and the stack stays IN_PROGRESS for good. Finished threads are dropped from the
    list before each new one is counted, as the eventlet backend's GreenPool does."""
    if getattr(group_class, "_heatgen_forgets_finished", False):
        return
    add_thread = group_class.add_thread

    def add_live_thread(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.threads = [thread for thread in self.threads if thread.is_alive()]
        return add_thread(self, func, *args, **kwargs)

    group_class.add_thread = add_live_thread
    group_class._heatgen_forgets_finished = True


def one_literal_eval_at_a_time(module: Any) -> None:
    """CPython 3.11's AST builder can fail with "SystemError: AST constructor recursion depth
    mismatch" when threads build ASTs at once (its recursion-depth bookkeeping, reported
    from threaded programs: CPython gh-106905). Heat's convergence reads each sync
    point's keys back with ``ast.literal_eval`` (``heat.engine.sync_point``), from as many
    threads as resources it checks at once, and on the threading backend the delete of a
    300-member group failed this way. ``module`` (Heat's sync_point) gets an ``ast`` whose
    ``literal_eval`` takes one process-wide lock; nothing else of Heat changes."""
    if getattr(module, "_heatgen_one_literal_eval", False):
        return
    lock = threading.Lock()
    literal_eval = module.ast.literal_eval

    def locked_literal_eval(node_or_string: Any) -> Any:
        with lock:
            return literal_eval(node_or_string)

    module.ast = types.SimpleNamespace(literal_eval=locked_literal_eval, lock=lock)
    module._heatgen_one_literal_eval = True


if __name__ == "__main__":
    sys.exit(main())
