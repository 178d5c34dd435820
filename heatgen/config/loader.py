"""Hardened YAML loading: the site config's loader, and a fast one for heatgen's own output.

No Python tags, no duplicate keys, bounded aliases and nesting, dates kept as strings
(PyYAML would turn ``2021-04-16`` into a ``date``).
"""

from __future__ import annotations

from typing import Any

import yaml

from heatgen.errors import ConfigError

MAX_ALIASES = 32
MAX_DEPTH = 32
# Longer integers are no site's; Python refuses to convert one of over 4300 digits anyway.
MAX_NUMBER_CHARS = 64


class _SiteLoader(yaml.SafeLoader):
    """A SafeLoader with no timestamps, no duplicate keys and bounded aliases and depth."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases", event.start_mark
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, "mapping keys must be plain values", key_node.start_mark
                    ) from None
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> Any:
        if len(str(node.value)) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"number longer than {MAX_NUMBER_CHARS} characters", node.start_mark
            )
        return super().construct_yaml_int(node)


_SiteLoader.add_constructor("tag:yaml.org,2002:int", _SiteLoader.construct_yaml_int)
_SiteLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}invalid YAML: {problem}"


class _DocumentLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader, dates kept as strings: for documents heatgen wrote itself."""


_DocumentLoader.yaml_implicit_resolvers = _SiteLoader.yaml_implicit_resolvers


def parse_document(text: str, source: str) -> Any:
    """Parse YAML that heatgen rendered (trusted, bounded) fast; same errors as parse_yaml."""
    try:
        return yaml.load(text, Loader=_DocumentLoader)
    except yaml.YAMLError as error:
        raise ConfigError(source, [_yaml_problem(error)]) from None


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; raise :class:`ConfigError` naming the line on failure."""
    try:
        return yaml.load(text, Loader=_SiteLoader)
    except yaml.YAMLError as error:
        raise ConfigError(source, [_yaml_problem(error)]) from None
    except RecursionError:
        problem = f"invalid YAML: nested deeper than {MAX_DEPTH} levels"
        raise ConfigError(source, [problem]) from None
