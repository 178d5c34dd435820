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
    render.set_defaults(func=_render)

    schema = sub.add_parser(
        "schema", help="print the JSON Schema of the site config",
        description="Print the JSON Schema of the site config (for editors and validators).",
    )
    schema.set_defaults(func=_schema)


def _render(args: argparse.Namespace) -> int:
    from heatgen.config import load_site
    from heatgen.render import render_site, write_rendered

    grid = render_site(load_site(args.site), templates_dir=args.templates)
    for path in write_rendered(grid, args.output):
        print(path)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from heatgen.config import site_json_schema

    print(json.dumps(site_json_schema(), indent=2, sort_keys=True))
    return 0
