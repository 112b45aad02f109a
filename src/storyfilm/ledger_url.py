"""Where a film's pay-once ledger lives: a file path, `sqlite:///FILE` or `postgresql+psycopg://...`; and how a
URL is shown without its password.

Which ledger a run uses, first match wins:

    1. `--ledger` on the command line, or the flow's `ledger` parameter
    2. the environment variable STORYFILM_LEDGER_URL (of the process that runs the flow: the worker)
    3. <output_dir>/<slug>/ledger.sqlite

A password belongs in PGPASSWORD or ~/.pgpass (libpq reads both) or in the environment variable, not in a
Prefect parameter (Prefect stores parameters and shows them in its UI). Everything storyfilm prints, logs or
raises shows a URL with its password as `***`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from storyfilm.errors import LedgerError

LEDGER_ENV = "STORYFILM_LEDGER_URL"
DEFAULT_NAME = "ledger.sqlite"
# libpq connection parameters that carry a secret, in a URL's query (?password=...)
_SECRET_QUERY = frozenset({"password", "sslpassword"})


def ledger_location(film_dir: Path, override: str | Path | None = None,
                    env: Mapping[str, str] | None = None) -> str | Path:
    """The ledger a run of the film in `film_dir` uses (precedence in the module's docstring)."""
    env = os.environ if env is None else env
    if override:
        return override
    if env.get(LEDGER_ENV):
        return env[LEDGER_ENV]
    return film_dir / DEFAULT_NAME


def is_url(target: str | Path) -> bool:
    return isinstance(target, str) and "://" in target


def parse(target: str | Path) -> sa.URL:
    """The SQLAlchemy URL of a ledger location; `postgresql://` means psycopg 3 (the driver installed)."""
    if not is_url(target):
        return sa.URL.create("sqlite", database=str(Path(target)))
    try:
        url = sa.make_url(str(target))
    except ArgumentError:
        raise LedgerError(f"{redact(str(target))}: not a ledger URL; use a file path, sqlite:///FILE or "
                             "postgresql+psycopg://USER@HOST:PORT/DATABASE") from None
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgres", "postgresql") and driver in ("", "psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if not url.database or url.database == ":memory:":
            raise LedgerError(f"{redact(url)}: a ledger in memory is lost when the run ends; name a file: "
                                 "sqlite:///output/<name>/ledger.sqlite (or a path)")
        return url.set(drivername="sqlite")
    raise LedgerError(f"{redact(url)}: ledgers are SQLite files or PostgreSQL databases; use a file path, "
                         "sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DATABASE")


def sqlite_file(url: sa.URL) -> Path | None:
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def absolute(target: str | Path) -> str:
    """The location as it reads from any working directory (a Prefect deployment's runs start elsewhere)."""
    url = parse(target)
    path = sqlite_file(url)
    if path is None:
        return str(target)
    return str(path.resolve()) if not is_url(target) else url.set(database=str(path.resolve())).render_as_string(False)


def has_password(target: str | Path) -> bool:
    if not is_url(target):
        return False
    try:
        url = sa.make_url(str(target))
    except ArgumentError:
        return False
    return bool(url.password) or any(k.lower() in _SECRET_QUERY for k in url.query)


def redact(target: str | Path | sa.URL) -> str:
    """The location with any password replaced by ***."""
    if isinstance(target, sa.URL):
        url = target
    elif not is_url(target):
        return str(target)
    else:
        try:
            url = sa.make_url(str(target))
        except ArgumentError:  # unparseable: hide whatever sits between "://user:" and "@"
            return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(target))
    query = {k: ("***" if k.lower() in _SECRET_QUERY else v) for k, v in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True)


def scrub(message: str, target: str | Path | sa.URL) -> str:
    """`message` (a driver's error, say) without the password of `target` in it, plain or %-quoted."""
    if not isinstance(target, sa.URL):
        if not has_password(target):
            return message
        target = sa.make_url(str(target))
    secrets = [target.password, *(v for k, v in target.query.items() if k.lower() in _SECRET_QUERY)]
    for secret in secrets:
        for text in (secret,) if isinstance(secret, str) else tuple(secret or ()):
            for form in {text, quote(text, safe="")} if text else ():
                message = message.replace(form, "***")
    return message
