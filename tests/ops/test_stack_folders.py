"""deploy/local/stack.sh works from a clone in any folder: a 700 folder (like /root or `mktemp -d`),
with a space in its path, and `purge` leaves nothing behind outside the clone.

Postgres runs as `postgres`, which cannot enter such a folder; the stack keeps its cluster in a folder
`postgres` owns, keyed by the clone's path. This runs the real script (initdb, pg_ctl, redis-server)
on ports of its own, from a copy of `deploy/` in a private folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.ops.conftest import free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local stack is set up as root (the README's machine)")


def _stack(clone: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(clone / "deploy" / "local" / "stack.sh"), *args], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=180)


def test_services_start_from_a_private_folder_with_a_space_and_purge_removes_them(tmp_path: Path) -> None:
    # given a clone in a 700 folder whose path has a space, as `cd ~ && git clone … "my mams"` gives
    home = tmp_path / "home dir"
    home.mkdir()
    home.chmod(0o700)
    clone = home / "my mams"
    shutil.copytree(ROOT / "deploy", clone / "deploy")
    pg_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMS_")}
    env.update(MAMS_DB_PORT=str(pg_port), MAMS_REDIS_PORT=str(redis_port), MAMS_PG_FSYNC="off")
    cluster = Path("/var/lib/postgresql/mams") / hashlib.sha1(str(clone).encode()).hexdigest()[:12]  # noqa: S324
    try:
        # when the stack's services are started from there
        out = _stack(clone, "services", env=env)
        assert out.returncode == 0, out.stderr
        # then Postgres and Redis answer on their ports, and the cluster is outside the clone, owned by postgres
        psql = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "mams", "-d", "mams", "-qtAc",
                               "select current_user"], capture_output=True, text=True, timeout=30)
        assert psql.stdout.strip() == "mams", psql.stderr
        assert subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, text=True,
                              timeout=10).stdout.strip() == "PONG"
        assert (cluster / "data" / "PG_VERSION").exists()
        assert cluster.owner() == "postgres" and (clone / ".local" / "pg").resolve() == cluster
        assert (cluster / "clone").read_text().strip() == str(clone)
        # and a second start reuses them
        again = _stack(clone, "services", env=env)
        assert again.returncode == 0 and "initialising" not in again.stderr, again.stderr
        # when it is purged
        purged = _stack(clone, "purge", env=env)
        assert purged.returncode == 0, purged.stderr
        # then the cluster and .local are gone, and nothing listens on the ports any more
        assert not cluster.exists() and not (clone / ".local").exists()
        assert subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, text=True,
                              timeout=10).stdout.strip() != "PONG"
    finally:
        _stack(clone, "purge", env=env)


def test_a_port_taken_by_another_clone_is_refused_not_shared(tmp_path: Path) -> None:
    # given a port already in use (another clone's Redis, say)
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        clone = tmp_path / "clone"
        shutil.copytree(ROOT / "deploy", clone / "deploy")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAMS_")}
        env.update(MAMS_DB_PORT=str(free_port()), MAMS_REDIS_PORT=str(port), MAMS_PG_FSYNC="off")
        try:
            # when the stack starts
            out = _stack(clone, "services", env=env)
            # then it stops with a message that names the port and what to set
            assert out.returncode != 0
            assert f"port {port} (for Redis) is taken" in out.stderr and "MAMS_REDIS_PORT" in out.stderr
        finally:
            _stack(clone, "purge", env=env)
