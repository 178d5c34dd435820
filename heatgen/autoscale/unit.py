"""The systemd unit that runs `heatgen autoscale` for one grid (`heatgen render
--autoscale-unit`): a long-running service, restarted on failure, stopped with SIGTERM (the loop
ends after its current step, leaving no member marked)."""

from __future__ import annotations

import shlex
from pathlib import Path

from heatgen.config import Site

TEXTFILE_DIRECTORY = "/var/lib/prometheus/node-exporter"  # Debian's node_exporter textfile dir


def unit_name(site: Site) -> str:
    return f"heatgen-autoscale-{site.site}.service"


def autoscale_unit(site: Site, site_path: Path) -> str:
    """The unit text; ``site_path`` is where the site config lives on the machine that runs
    it (credentials come from clouds.yaml: an application credential, named by the site's
    ``cloud:`` or OS_CLOUD)."""
    status = f"{TEXTFILE_DIRECTORY}/heatgen-{site.site}.prom"
    command = ["heatgen", "autoscale", str(site_path), "--status-file", status]
    cloud = f"Environment=OS_CLOUD={site.cloud}\n" if site.cloud else (
        "# Environment=OS_CLOUD=<the clouds.yaml entry with the application credential>\n")
    # a resize may take the group's wait; a stop waits for the step under way
    stop = 1800 + 60
    return (
        "[Unit]\n"
        f"Description=heatgen autoscale: queue-driven worker groups of grid {site.site}\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "Type=simple\n"
        "User=heatgen\n"
        f"{cloud}"
        f"ExecStart=/usr/bin/env {shlex.join(command)}\n"
        "KillSignal=SIGTERM\n"
        f"TimeoutStopSec={stop}\n"
        "Restart=on-failure\n"
        "RestartSec=30\n"
        "NoNewPrivileges=yes\n"
        "ProtectSystem=strict\n"
        f"ReadWritePaths={TEXTFILE_DIRECTORY}\n"
        "StateDirectory=heatgen\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
