"""Make SQLite safe for Keystone and Heat under concurrent threads.

Two defects show up as shipped (both seen in practice, see the sandbox design notes):

1. oslo.db opens *deferred* transactions; two threads that read, then write, fail at once
   with ``database is locked`` because SQLite cannot upgrade both read locks. Every
   transaction here starts with ``BEGIN IMMEDIATE`` (one writer at a time, others wait on
   the busy timeout), and the journal is WAL so readers outside transactions never block.
2. Heat's integer primary keys are declared without ``AUTOINCREMENT``, so SQLite may reuse
   the id of a deleted row; Heat keeps ids of deleted resources/events in memory and a reused
   id left stacks UPDATE_FAILED and undeletable. Those tables are rebuilt with
   ``AUTOINCREMENT`` (SQLite's documented table-rebuild procedure).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 60_000
_TRANSACTION_MARK = "in_transaction"  # the key oslo.db's own SQLite listeners use
_installed = False
_deferred = threading.local()


@contextmanager
def deferred_transactions() -> Iterator[None]:
    """Plain deferred BEGIN in this thread, for code that opens a second connection while
    its first holds a transaction (schema migrations inspect the database that way)."""
    _deferred.active = True
    try:
        yield
    finally:
        _deferred.active = False


def install_hooks() -> None:
    """Register process-wide SQLAlchemy listeners (idempotent); call before any engine."""
    global _installed
    if _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.pool import Pool

    def tune(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    def begin_immediate(conn: Connection) -> None:
        if conn.dialect.name != "sqlite" or _TRANSACTION_MARK in conn.info:
            return
        if getattr(_deferred, "active", False):
            return
        raw = conn.connection.dbapi_connection
        # Only where the driver's own BEGIN is switched off (oslo.db does that); otherwise
        # pysqlite would start a second transaction.
        if getattr(raw, "isolation_level", "") is not None:
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.info[_TRANSACTION_MARK] = True

    def end(conn: Connection) -> None:
        conn.info.pop(_TRANSACTION_MARK, None)

    event.listen(Pool, "connect", tune)
    # Class-level listeners run before the per-engine ones oslo.db adds, so this BEGIN
    # IMMEDIATE wins and oslo.db sees the transaction already open.
    event.listen(Engine, "begin", begin_immediate)
    event.listen(Engine, "commit", end)
    event.listen(Engine, "rollback", end)
    _installed = True


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def autoincrement_sql(create_sql: str, table: str, new_table: str, key: str) -> str:
    """``create_sql`` for ``new_table`` with ``key`` as ``INTEGER PRIMARY KEY AUTOINCREMENT``."""
    header = re.compile(
        r"^\s*CREATE\s+TABLE\s+(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\S+)\s*\(", re.IGNORECASE
    )
    match = header.match(create_sql)
    if not match or match.group(1).strip('"`[]') != table:
        raise ValueError(f"unexpected CREATE TABLE statement for {table}")
    body = create_sql[match.end() :]
    key_pattern = rf"(?:\"{re.escape(key)}\"|`{re.escape(key)}`|{re.escape(key)})"
    constraint = re.compile(
        rf",\s*(?:CONSTRAINT\s+\S+\s+)?PRIMARY\s+KEY\s*\(\s*{key_pattern}\s*\)", re.IGNORECASE
    )
    body, removed = constraint.subn("", body, count=1)
    column = re.compile(rf"(^\s*|,\s*){key_pattern}(\s+INTEGER)\b", re.IGNORECASE)
    body, typed = column.subn(rf"\g<1>{_quote(key)}\2 PRIMARY KEY AUTOINCREMENT", body, count=1)
    if removed != 1 or typed != 1:
        raise ValueError(f"cannot find the primary key {key} of {table}")
    return f"CREATE TABLE {_quote(new_table)} (" + body


def rebuild_integer_keys(database: Path) -> list[str]:
    """Rebuild every table with a lone INTEGER primary key without AUTOINCREMENT.

    Idempotent and data-preserving; returns the names of the tables rebuilt.
    """
    rebuilt: list[str] = []
    con = sqlite3.connect(database, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        tables = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND sql IS NOT NULL"
        ).fetchall()
        todo: list[tuple[str, str, str]] = []
        for name, sql in tables:
            if "AUTOINCREMENT" in sql.upper():
                continue
            columns = con.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
            keys = [column for column in columns if column[5] > 0]
            if len(keys) == 1 and str(keys[0][2]).upper() == "INTEGER":
                todo.append((name, sql, keys[0][1]))
        if not todo:
            return rebuilt
        con.execute("PRAGMA foreign_keys = OFF")
        con.execute("BEGIN IMMEDIATE")
        try:
            for name, sql, key in todo:
                _rebuild_table(con, name, sql, key)
                rebuilt.append(name)
            problems = con.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise sqlite3.IntegrityError(f"foreign key check failed: {problems[:3]}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    return rebuilt


def _rebuild_table(con: sqlite3.Connection, name: str, sql: str, key: str) -> None:
    temporary = f"_heatgen_new_{name}"
    extras = [
        row[0]
        for row in con.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL",
            (name,),
        )
    ]
    columns = ", ".join(
        _quote(row[1]) for row in con.execute(f"PRAGMA table_info({_quote(name)})")
    )
    con.execute(autoincrement_sql(sql, name, temporary, key))
    con.execute(
        f"INSERT INTO {_quote(temporary)} ({columns}) SELECT {columns} FROM {_quote(name)}"
    )
    con.execute(f"DROP TABLE {_quote(name)}")
    con.execute(f"ALTER TABLE {_quote(temporary)} RENAME TO {_quote(name)}")
    for statement in extras:
        con.execute(statement)
