"""Which id a stack name had, remembered between heatgen commands.

heat-api answers a read of ``stacks/NAME`` with a redirect to ``stacks/NAME/ID``: two requests
where one would do. heatgen remembers the id it last saw for each name, per Heat endpoint and
project, in ``$XDG_STATE_HOME/heatgen/stack-ids.json`` (``~/.local/state/...``), so a command
that names a stack it has seen goes straight to ``NAME/ID``.

A remembered id is a guess, never the truth: the caller checks every answer it got through
one (a stack that is gone, DELETE_COMPLETE, or whose newest event is its own deletion: heat-api
keeps showing a deleted stack by ``NAME/ID``) and then forgets it and asks by name. Stack ids
are not secrets. The file is the user's own (0600, in a 0700 directory); one that is not, or
that cannot be read or written, is ignored: the cost is a redirect, never a wrong answer.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

PER_ENDPOINT = 64  # names kept per endpoint and project: the newest learned


def default_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return Path(base, "heatgen", "stack-ids.json")


class StackIds:
    """name -> id per ``scope`` (the Heat endpoint and project), read once, written on change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self._data: dict[str, dict[str, str]] | None = None

    def _load(self) -> dict[str, dict[str, str]]:
        if self._data is None:
            self._data = {}
            try:
                info = self.path.stat()
                if info.st_uid == os.getuid() and not info.st_mode & 0o077:
                    raw = json.loads(self.path.read_text(encoding="utf-8"))
                    if isinstance(raw, dict):
                        self._data = {
                            str(scope): {str(k): str(v) for k, v in names.items()}
                            for scope, names in raw.items() if isinstance(names, dict)
                        }
            except (OSError, ValueError):
                pass
        return self._data

    def get(self, scope: str, name: str) -> str | None:
        return self._load().get(scope, {}).get(name)

    def remember(self, scope: str, name: str, stack_id: str) -> None:
        names = self._load().setdefault(scope, {})
        if names.get(name) == stack_id:  # known: no write (waits learn on every poll)
            return
        names.pop(name, None)
        names[name] = stack_id
        for old in list(names)[:-PER_ENDPOINT]:
            del names[old]
        self._save()

    def forget(self, scope: str, name: str) -> None:
        names = self._load().get(scope, {})
        if names.pop(name, None) is not None:
            self._save()

    def _save(self) -> None:
        """Write a new file and rename it over the old one: a reader sees one or the other."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".stack-ids.")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    json.dump(self._data, out, sort_keys=True)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            pass
