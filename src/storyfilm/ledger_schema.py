"""The ledger's tables, the engine that reaches them (SQLite or PostgreSQL) and the schema's migrations.

Schema versions (the number is kept in `ledger_meta`):

    1  jobs, events: the ledger as storyfilm wrote it before the version was recorded (no ledger_meta)
    2  + claims (which run may submit a shot, until when), ledger_meta
    3  + picks (which take of a shot with takes the film uses, and the scores it was chosen by)

A fresh database gets the latest version; an older one is upgraded in place, in one transaction (on
PostgreSQL under an advisory lock, so workers starting together upgrade it once); a newer one is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from storyfilm.errors import LedgerError

SCHEMA_VERSION = 3
_MIGRATION_LOCK = 0x5F11_ED6E  # pg_advisory_xact_lock id: "storyfilm ledger"

metadata = sa.MetaData()
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("shot_id", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.Text, nullable=False),
    sa.Column("prepared", sa.Text),
    sa.Column("job_id", sa.Text),
    sa.Column("cost_usd", sa.Double, nullable=False, server_default="0"),
    sa.Column("video_url", sa.Text),
    sa.Column("last_frame_url", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("moderation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("result", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True, nullable=True),  # as in files before versions
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("shot_id", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    sqlite_autoincrement=True,
)

claims = sa.Table(
    "claims", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),  # host and process, for people reading "held by"
    sa.Column("token", sa.Text, nullable=False),  # new for every claim: renew/release/intent need the same one
    sa.Column("claimed_at", sa.Double, nullable=False),
    sa.Column("until", sa.Double, nullable=False),  # the lease's end, on the database's clock
    sa.Column("previous_run", sa.Text),  # the run whose expired claim this one took over
)

picks = sa.Table(
    "picks", metadata,
    sa.Column("key", sa.Text, primary_key=True),  # takes.pick_key: the takes' inputs and how many there are
    sa.Column("shot_id", sa.Text, nullable=False),
    sa.Column("take", sa.Integer, nullable=False),
    sa.Column("how", sa.Text, nullable=False),  # auto, review or the storyboard's take number
    sa.Column("scores", sa.Text, nullable=False),  # JSON: every take's score and measures
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
)

meta = sa.Table(
    "ledger_meta", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def make_engine(url: sa.URL) -> sa.Engine:
    """An engine that commits each transaction durably.

    SQLite: WAL (several processes share the file), synchronous=FULL, write transactions that take the write
    lock at BEGIN (BEGIN IMMEDIATE) so a read-then-write never deadlocks, reads that take no lock at all.
    PostgreSQL: a small pool, connections checked before use (a worker polls for minutes between writes).
    """
    if url.get_backend_name() == "sqlite":
        # One connection, kept open: the Ledger's lock already lets one thread at a time use it.
        engine = sa.create_engine(url, poolclass=QueuePool, pool_size=1, max_overflow=0, hide_parameters=True,
                                  connect_args={"timeout": 30, "isolation_level": None, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # WAL readers never block the writer (nor wait for it): only writes take the lock, at BEGIN
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write", True) else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=16, hide_parameters=True,
                            connect_args={"connect_timeout": 15, "application_name": "storyfilm"})


@contextmanager
def transaction(engine: sa.Engine, write: bool = True) -> Iterator[sa.Connection]:
    """One transaction, committed at the end of the block (rolled back if it raises)."""
    with engine.connect() as conn:
        conn.execution_options(write=write)
        with conn.begin():
            yield conn


def now(dialect: sa.Dialect) -> sa.ColumnElement[float]:
    """The database's clock in epoch seconds: every worker sharing a ledger judges leases by the same clock."""
    if dialect.name == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Double)
    return sa.cast((sa.func.julianday("now") - 2440587.5) * 86400.0, sa.Double)


def upsert(dialect: sa.Dialect, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT for the dialect (both speak it; SQLAlchemy has one class each)."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _version(conn: sa.Connection) -> int:
    names = set(sa.inspect(conn).get_table_names())
    if meta.name in names:
        value = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).scalar()
        return int(value) if value is not None else 1
    return 1 if jobs.name in names else 0


def _to_2(conn: sa.Connection) -> None:
    for table in (claims, meta):
        table.create(conn, checkfirst=True)


def _to_3(conn: sa.Connection) -> None:
    picks.create(conn, checkfirst=True)


# version n -> n + 1
_STEPS: dict[int, Callable[[sa.Connection], None]] = {1: _to_2, 2: _to_3}


def migrate(engine: sa.Engine) -> tuple[int, int]:
    """Bring the database to SCHEMA_VERSION; (version found, version now). 0 found: a fresh database."""
    with transaction(engine, write=False) as conn:  # the usual case: nothing to do, no lock taken
        found = _version(conn)
    if found == SCHEMA_VERSION:
        return found, found
    with transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        found = _version(conn)  # again: another process may have upgraded it meanwhile
        if found > SCHEMA_VERSION:
            raise LedgerError(f"the ledger's schema is version {found}, written by a newer storyfilm (this one "
                              f"knows up to {SCHEMA_VERSION}): upgrade storyfilm to use it")
        if found == SCHEMA_VERSION:
            return found, found
        if found == 0:
            metadata.create_all(conn)
        else:
            for step in range(found, SCHEMA_VERSION):
                _STEPS[step](conn)
        stmt = upsert(conn.dialect, meta).values(name="schema_version", value=str(SCHEMA_VERSION))
        conn.execute(stmt.on_conflict_do_update(index_elements=[meta.c.name], set_={"value": stmt.excluded.value}))
        return found, SCHEMA_VERSION
