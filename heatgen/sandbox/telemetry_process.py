"""Background telemetry of the sandbox: ``python -m heatgen.sandbox.telemetry_process``.

``serve`` runs, in one process, the Gnocchi API and one metricd processor (a thread), the
Aodh API, the Aodh evaluator and the Aodh notifier. Evaluator and notifier talk over
oslo.messaging's in-process ``fake`` transport, which is why they share this process (Aodh's
own commands fork them apart under cotyledon). ``upgrade`` creates or migrates both schemas
(gnocchi-upgrade, aodh-dbsync) and exits.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

LOG = logging.getLogger("heatgen.sandbox.telemetry")
# Few incoming sacks: one metricd thread scans them all every processing delay.
SACKS = 8


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="heatgen-sandbox-telemetry")
    parser.add_argument("action", choices=["serve", "upgrade"])
    parser.add_argument("--gnocchi-config", required=True)
    parser.add_argument("--aodh-config", required=True)
    parser.add_argument("--gnocchi-port", type=int, default=0)
    parser.add_argument("--aodh-port", type=int, default=0)
    return parser.parse_args(argv)


def _gnocchi_conf(path: str) -> Any:
    from gnocchi import service

    return service.prepare_service(args=["--config-file", path])


def _aodh_conf(path: str) -> Any:
    from aodh import service

    return service.prepare_service(argv=["--config-file", path], with_gmr=False)


def _upgrade(args: argparse.Namespace) -> int:
    from aodh import storage
    from gnocchi import incoming, indexer
    from gnocchi import storage as gnocchi_storage

    conf = _gnocchi_conf(args.gnocchi_config)
    index = indexer.get_driver(conf)
    index.upgrade()
    gnocchi_storage.get_driver(conf).upgrade()
    incoming.get_driver(conf).upgrade(SACKS)
    aodh = _aodh_conf(args.aodh_config)
    storage.get_connection_from_config(aodh).upgrade()
    return 0


def _serve(args: argparse.Namespace) -> int:
    # Both projects build their own ConfigOpts, so they coexist in one process.
    from heatgen.sandbox import serving

    sys.argv = [sys.argv[0]]
    try:
        gconf = _gnocchi_conf(args.gnocchi_config)
        aconf = _aodh_conf(args.aodh_config)
        from aodh.api import app as aodh_app
        from gnocchi.rest import app as gnocchi_app

        gnocchi_api = gnocchi_app.load_app(gconf)
        aodh_api = aodh_app.load_app(aconf)
    except Exception:
        LOG.exception("telemetry failed to start")
        return serving.EXIT_STARTUP_FAILED
    servers = [
        serving.LoopbackServer("gnocchi-api", args.gnocchi_port, gnocchi_api, threads=8),
        serving.LoopbackServer("aodh-api", args.aodh_port, aodh_api, threads=8),
    ]
    serving.bind_all(servers)
    try:
        workers = _start_daemons(gconf, aconf)
    except Exception:
        LOG.exception("telemetry daemons failed to start")
        return serving.EXIT_STARTUP_FAILED

    def stop_daemons() -> None:
        for worker in workers:
            try:
                worker.terminate()
            except Exception:
                LOG.exception("stopping %s", type(worker).__name__)

    serving.run_until_signalled(servers, on_stop=stop_daemons)
    return 0


def _start_daemons(gconf: Any, aconf: Any) -> list[Any]:
    from aodh import evaluator, notifier
    from gnocchi.cli import metricd

    processor = metricd.MetricProcessor(0, gconf)
    threading.Thread(target=processor.run, name="gnocchi-metricd", daemon=True).start()
    janitor = metricd.MetricJanitor(0, gconf)
    threading.Thread(target=janitor.run, name="gnocchi-janitor", daemon=True).start()
    # The notifier listens before the evaluator can send its first alarm.update.
    alarm_notifier = notifier.AlarmNotifierService(0, aconf)
    alarm_evaluator = evaluator.AlarmEvaluationService(0, aconf)
    return [alarm_evaluator, alarm_notifier, processor, janitor]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.action == "upgrade":
        return _upgrade(args)
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
