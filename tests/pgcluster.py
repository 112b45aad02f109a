"""A throwaway PostgreSQL cluster on a free loopback port, from Debian's initdb/pg_ctl (`.ci/run` installs them).

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (Debian's package creates
it) or `nobody`, and its commands run through `runuser`. Host connections need a password (scram-sha-256), as a
team's server would, so tests can check that a password in a ledger URL never leaks.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER = "storyfilm"
PASSWORD = "pg-Secret-7f3a9c"  # what tests look for in logs, errors and files (and must not find)


def pg_bin() -> Path | None:
    """The directory of initdb: on PATH, or Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(versions[-1]).parent if versions else None


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int

    def url(self, database: str, password: str | None = PASSWORD) -> str:
        auth = f"{USER}:{password}" if password is not None else USER
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database for one test; its URL (with the password). Dropped after, connections and all."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"')
        try:
            yield self.url(name)
        finally:
            self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def cluster(fsync: bool = True) -> Iterator[Cluster]:
    """Start a cluster in a temporary folder; stop it (immediately) and remove the folder on exit."""
    bindir = pg_bin()
    if bindir is None:
        raise FileNotFoundError("no initdb on PATH or under /usr/lib/postgresql/*/bin (Debian's postgresql package)")
    runas: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="storyfilm-pg-"))
    if os.geteuid() == 0:
        user = "postgres" if _exists("postgres") else "nobody"
        runas = ["runuser", "-u", user, "--"]
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)

    def run(*argv: str) -> None:
        subprocess.run([*runas, *argv], check=True, capture_output=True, text=True, cwd=root)

    try:
        try:
            port = _start(run, bindir, root, fsync)
        except subprocess.CalledProcessError as exc:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {exc.cmd}: {exc.stderr}{log[-2000:]}") from None
        try:
            yield Cluster("127.0.0.1", port)
        finally:
            subprocess.run([*runas, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w",
                            "stop"], capture_output=True, check=False, cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(run: Callable[..., None], bindir: Path, root: Path, fsync: bool) -> int:
    data, pwfile = root / "data", root / "pw"
    run("sh", "-c", f"umask 077; printf %s '{PASSWORD}' > {pwfile}")
    run(str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
        "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")
    for attempt in range(5):  # the free port may be taken between the look and the start
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync={'on' if fsync else 'off'}"
        try:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o", options,
                "start")
            return port
        except subprocess.CalledProcessError:
            if attempt == 4:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True
