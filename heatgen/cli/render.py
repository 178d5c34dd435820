"""``heatgen render`` and ``heatgen schema``: the offline commands (no OpenStack imports)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    render = sub.add_parser(
        "render",
        help="validate a site config and write its Heat templates",
        description="Validate SITE.yaml and render the grid's HOT templates, boot payloads "
        "and environment file into DIR. Nothing is written unless everything is valid.",
    )
    render.add_argument("site", metavar="SITE.yaml", help="the site config")
    render.add_argument("-o", "--output", metavar="DIR", required=True, help="output directory")
    render.add_argument(
        "--templates", metavar="DIR", help="directory whose *.j2 files override the built-in ones"
    )
    render.add_argument(
        "--autoscale-unit", action="store_true",
        help="also write the systemd unit that runs `heatgen autoscale` for this grid "
        "(autoscaling.mode: queue)",
    )
    render.set_defaults(func=_render)

    schema = sub.add_parser(
        "schema", help="print the JSON Schema of the site config",
        description="Print the JSON Schema of the site config (for editors and validators).",
    )
    schema.set_defaults(func=_schema)


def _render(args: argparse.Namespace) -> int:
    from heatgen.config import load_site
    from heatgen.render import render_site, write_rendered

    site = load_site(args.site)
    grid = render_site(site, templates_dir=args.templates)
    if args.autoscale_unit:
        from pathlib import Path

        from heatgen.autoscale.unit import autoscale_unit, unit_name
        from heatgen.config import Mode
        from heatgen.errors import UsageError

        if site.autoscaling.mode is not Mode.QUEUE:
            raise UsageError(f"--autoscale-unit: {args.site}: autoscaling.mode is "
                             f"{site.autoscaling.mode.value}; the unit runs queue mode "
                             "(autoscaling.mode: queue)")
        unit = autoscale_unit(site, Path(args.site).resolve())
    for path in write_rendered(grid, args.output):
        print(path)
    if args.autoscale_unit:
        target = Path(args.output) / unit_name(site)
        try:
            target.write_text(unit, encoding="utf-8")
        except OSError as error:
            raise UsageError(f"{target}: cannot write the unit ({error.strerror})") from None
        print(target)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from heatgen.config import site_json_schema

    print(json.dumps(site_json_schema(), indent=2, sort_keys=True))
    return 0
