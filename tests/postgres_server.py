"""A throwaway PostgreSQL server for tests: a fresh cluster in a temporary folder, listening only on a
Unix socket there (no TCP port, so parallel test workers never collide), trust authentication,
stopped and deleted afterwards. Debian's `postgresql` package provides the binaries (`make test`
installs it as root). PostgreSQL refuses to run as root, so as root the server runs as `nobody`
(or, on a machine without it, a system user `autograder-pg` created for it).
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "autograder"
UNPRIVILEGED = "nobody"
OWN_USER = "autograder-pg"  # created when a machine has no `nobody`


def server_user():
    """The unprivileged account the server runs as when we are root (pwd entry)."""
    for name in (UNPRIVILEGED, OWN_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OWN_USER],
                   check=True, capture_output=True, timeout=60)
    return pwd.getpwnam(OWN_USER)


def postgres_bin_dir():
    """The folder of initdb/pg_ctl (the newest Debian cluster version, else PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")])
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """start() a cluster, url(dbname) for each new database, stop() it (always: use try/finally)."""

    def __init__(self, bin_dir):
        self.bin_dir = Path(bin_dir)
        self.folder = None
        self.running = False

    def _run(self, *argv):
        """A PostgreSQL program, as the unprivileged user when we are root."""
        kwargs = {}
        if os.geteuid() == 0:
            entry = server_user()
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        done = subprocess.run([str(self.bin_dir / argv[0]), *argv[1:]], capture_output=True, text=True,
                              env=env, cwd=self.folder, timeout=120, **kwargs)
        if done.returncode:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}{tail}")
        return done

    def start(self):
        # not under pytest's tmp folders: those are root's, mode 0700, and the server user must enter
        self.folder = Path(tempfile.mkdtemp(prefix="autograder-pg-"))
        if os.geteuid() == 0:
            entry = server_user()
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8")
        options = (f"-k {self.folder} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections=50")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(self.folder / "server.log"),
                  "-o", options)
        self.running = True
        return self

    def url(self, dbname):
        """A new, empty database `dbname` on this server, as a SQLAlchemy URL (Unix socket)."""
        import psycopg2
        conn = psycopg2.connect(host=str(self.folder), user=SUPERUSER, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            conn.close()
        return f"postgresql+psycopg2://{SUPERUSER}@/{dbname}?host={self.folder}"

    def stop(self):
        try:
            if self.running:
                self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.folder / "data"))
                self.running = False
        finally:
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
