"""A real PostgreSQL server for tests: Debian's server binaries, a fresh cluster in a temp folder,
loopback on a free port, trust authentication. initdb refuses to run as root, so as root (CI) the
server runs as Debian's `postgres` user."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import START_TIMEOUT_S, free_port

USER = "psct"


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed: `make test` installs it (make system-deps)")
    return found[-1]


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    folder: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; returns its SQLAlchemy URL."""
        name = f"psct_{uuid.uuid4().hex[:12]}"
        subprocess.run([_binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name], check=True,
                       capture_output=True)  # fmt: skip
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*_as_server_user(), _binary("pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "stop"],
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> PostgresServer:
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="psct-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    run_as = _as_server_user()
    data, port = folder / "data", free_port()
    subprocess.run([*run_as, _binary("initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)  # fmt: skip
    # fsync off: these tests are about PSCT's processes, not about PostgreSQL's durability.
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run([*run_as, _binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"),
                    "-w", "-t", str(int(START_TIMEOUT_S)), "start"], check=True, capture_output=True)  # fmt: skip
    return PostgresServer(folder, port)
