"""A cap on the total memory and process count of everything one sandboxed launch runs.

Per-process limits (RLIMIT_AS, RLIMIT_NPROC) do not bound a submission that spreads its work over
several processes; a cgroup does, and it is enforced by the OS kernel whatever the processes do.
Each launch gets a :class:`Jail`: a fresh cgroup (v1: one group in each of the ``memory`` and
``pids`` hierarchies; v2: one group in the unified hierarchy) with the limits set, joined by the
launch's first process *before* bwrap runs (:meth:`Jail.join_argv`, put in front by
``sandbox_argv``), so nothing the student runs starts outside it.  :meth:`Jail.close` kills what is
left and removes the group.

Where no cgroup can be made (not root, read-only cgroupfs, controllers not delegated), the jail
falls back to a watchdog thread in the grader that polls the summed resident memory of the
sandbox's process tree (bwrap's pid namespace keeps every descendant below the watched pid) and
kills the tree above the limit; the process count then rests on RLIMIT_NPROC alone.  The watchdog
samples, so a burst between two polls can briefly exceed the limit: the cgroup is the real defence.

Groups are named ``autograder-<owner pid>-<owner start time>-...`` so that :func:`reap_stale` can
remove the groups of a grader process that died (or was killed) before it could close them.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import secrets
import shutil
import signal
import threading
import time

PREFIX = "autograder"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-(\d+)-")
_SEQ = itertools.count(1)
_V1_CONTROLLERS = ("memory", "pids")
WATCHDOG_INTERVAL = 0.05  # seconds between two samples of the fallback's memory watchdog


# --- discovery ---------------------------------------------------------------------------------

def _unescape(path):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _mounts():
    """(mount point, root inside the hierarchy, fs type, super options) of each cgroup mount."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((_unescape(fields[4]), _unescape(fields[3]), tail[0], tail[2].split(",")))
    return found


def _own_paths():
    """{controller or "" for v2: our cgroup path inside that hierarchy} from /proc/self/cgroup."""
    paths = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f.read().splitlines():
                _, controllers, path = line.split(":", 2)
                for c in controllers.split(",") if controllers else [""]:
                    paths[c] = path
    except (OSError, ValueError):
        pass
    return paths


def _host_dir(mount_point, mount_root, path):
    """Where cgroup `path` of a hierarchy mounted from `mount_root` at `mount_point` lives."""
    if path != mount_root and not path.startswith(mount_root.rstrip("/") + "/"):
        return None
    return os.path.join(mount_point, path[len(mount_root):].lstrip("/"))


def _v1_bases():
    """{controller: [candidate parent dirs]}: our own group first, then the hierarchy's root."""
    own = _own_paths()
    bases = {}
    for controller in _V1_CONTROLLERS:
        for mount_point, root, fstype, options in _mounts():
            if fstype == "cgroup" and controller in options:
                dirs = [_host_dir(mount_point, root, own.get(controller, "/")), mount_point]
                bases[controller] = list(dict.fromkeys(d for d in dirs if d))
                break
    return bases


def _v2_base():
    own = _own_paths().get("")
    for mount_point, root, fstype, _ in _mounts():
        if fstype == "cgroup2" and own is not None:
            return _host_dir(mount_point, root, own)
    return None


# --- small file helpers ------------------------------------------------------------------------

def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _start_ticks(pid):
    """Start time of process `pid` (clock ticks since boot), or None if it does not exist."""
    stat = _read(f"/proc/{pid}/stat")
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (AttributeError, IndexError, ValueError):
        return None


def _new_name():
    pid = os.getpid()
    return f"{PREFIX}-{pid}-{_start_ticks(pid) or 0}-{next(_SEQ)}-{secrets.token_hex(3)}"


def _procs(group_dir):
    text = _read(os.path.join(group_dir, "cgroup.procs")) or ""
    return [int(p) for p in text.split() if p.isdigit()]


def _kill_and_remove(group_dirs, timeout=10.0):
    """SIGKILL every process of the groups, then remove them; True when all are gone."""
    for d in group_dirs:
        # no fork can outrun the killing below once pids.max is 0
        if os.path.exists(os.path.join(d, "pids.max")):
            try:
                _write(os.path.join(d, "pids.max"), 0)
            except OSError:
                pass
        if os.path.exists(os.path.join(d, "cgroup.kill")):
            try:
                _write(os.path.join(d, "cgroup.kill"), 1)
            except OSError:
                pass
    deadline = time.monotonic() + timeout
    remaining = [d for d in group_dirs if os.path.isdir(d)]
    while remaining:
        for d in remaining:
            for pid in _procs(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        still = []
        for d in remaining:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                still.append(d)
        remaining = still
        if remaining:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
    return True


# --- the jail ----------------------------------------------------------------------------------

class Jail:
    """The memory and process cap of one sandboxed launch.

    ``Jail.create(...)`` never fails for lack of cgroups: ``kind`` says which mechanism applies
    ("cgroup v1", "cgroup v2" or "fallback: <why>").  Put :meth:`join_argv` in front of the
    command (``sandbox_argv(..., jail=jail)`` does), call :meth:`watch` with the launched pid, and
    :meth:`close` when the launch is over.
    """

    def __init__(self, kind, memory_bytes, max_processes, group_dirs=()):
        self.kind = kind
        self.memory_bytes = memory_bytes
        self.max_processes = max_processes
        self.group_dirs = list(group_dirs)
        self.killed_for = None  # set by the fallback's watchdog when it killed the tree
        self._watched = None
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def create(cls, *, memory_mb, max_processes, use_cgroups):
        """A jail capping the total resident memory at ``memory_mb`` MiB (swap included where the
        controller can count it) and the number of processes and threads at ``max_processes``;
        0 leaves that limit off.  ``use_cgroups=False`` forces the fallback."""
        memory_bytes = int(memory_mb) << 20 if memory_mb else 0
        max_processes = int(max_processes or 0)
        if not use_cgroups:
            return cls("fallback: cgroups switched off", memory_bytes, max_processes)
        reasons = []
        for attempt in (cls._create_v1, cls._create_v2):
            try:
                return attempt(memory_bytes, max_processes)
            except _Unusable as exc:
                reasons.append(str(exc))
        return cls("fallback: " + "; ".join(reasons), memory_bytes, max_processes)

    @classmethod
    def _create_v1(cls, memory_bytes, max_processes):
        bases = _v1_bases()
        if set(bases) != set(_V1_CONTROLLERS):
            raise _Unusable("no cgroup v1 memory+pids hierarchies")
        name = _new_name()
        made = []
        try:
            for controller in _V1_CONTROLLERS:
                made.append(_make_group(bases[controller], name, "cgroup v1"))
            memory_dir, pids_dir = made
            if memory_bytes:
                _write(os.path.join(memory_dir, "memory.limit_in_bytes"), memory_bytes)
                memsw = os.path.join(memory_dir, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):  # absent when the kernel does not account swap
                    _write(memsw, memory_bytes)
            if max_processes:
                _write(os.path.join(pids_dir, "pids.max"), max_processes)
        except OSError as exc:
            _kill_and_remove(made)
            raise _Unusable(f"cgroup v1 limits not settable: {exc.strerror or exc}") from None
        return cls("cgroup v1", memory_bytes, max_processes, made)

    @classmethod
    def _create_v2(cls, memory_bytes, max_processes):
        base = _v2_base()
        if not base or not os.path.exists(os.path.join(base, "cgroup.controllers")):
            raise _Unusable("no cgroup v2 hierarchy")
        available = (_read(os.path.join(base, "cgroup.controllers")) or "").split()
        missing = [c for c in ("memory", "pids") if c not in available]
        if missing:
            raise _Unusable(f"cgroup v2 lacks the {'+'.join(missing)} controller here")
        enabled = (_read(os.path.join(base, "cgroup.subtree_control")) or "").split()
        if not {"memory", "pids"} <= set(enabled):
            try:
                _write(os.path.join(base, "cgroup.subtree_control"), "+memory +pids")
            except OSError as exc:
                # EBUSY: our own group holds processes (v2 forbids controllers there)
                raise _Unusable(f"cgroup v2 controllers not delegated to {base}: "
                                f"{exc.strerror or exc}") from None
        group = _make_group([base], _new_name(), "cgroup v2")
        try:
            if memory_bytes:
                _write(os.path.join(group, "memory.max"), memory_bytes)
                if os.path.exists(os.path.join(group, "memory.swap.max")):
                    _write(os.path.join(group, "memory.swap.max"), 0)
            if max_processes:
                _write(os.path.join(group, "pids.max"), max_processes)
        except OSError as exc:
            _kill_and_remove([group])
            raise _Unusable(f"cgroup v2 limits not settable: {exc.strerror or exc}") from None
        return cls("cgroup v2", memory_bytes, max_processes, [group])

    @property
    def is_cgroup(self):
        return bool(self.group_dirs)

    def join_argv(self):
        """A command prefix that moves itself into the group, then execs the rest of the argv.

        The move happens in the launched process before bwrap exists, so the sandbox and every
        descendant start inside.  A failed move stops the launch (exit status 125)."""
        if not self.is_cgroup:
            return []
        sh = shutil.which("sh") or "/bin/sh"
        script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
        return [sh, "-c", script, "cgroup-join",
                *(os.path.join(d, "cgroup.procs") for d in self.group_dirs), "--"]

    def watch(self, pid):
        """Record the launched process; the fallback starts its watchdog on that process tree."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this jail is closed: create a new one for each launch")
            self._watched = pid
            if self.is_cgroup or not self.memory_bytes or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._watchdog, args=(pid,),
                                            name=f"jail-watchdog-{pid}", daemon=True)
            self._thread.start()

    def _watchdog(self, pid):
        import psutil

        try:
            top = psutil.Process(pid)
        except psutil.Error:
            return
        while not self._stop.wait(WATCHDOG_INTERVAL):
            try:
                if not top.is_running() or top.status() == psutil.STATUS_ZOMBIE:
                    return
                tree = [top, *top.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for proc in tree:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            if total > self.memory_bytes:
                self.killed_for = (f"the {self.memory_bytes >> 20} MiB memory limit "
                                   f"({total >> 20} MiB resident)")
                _kill_tree(tree)
                return

    def peak_memory(self):
        """Highest memory use of the group so far in bytes (None when not measurable)."""
        for d in self.group_dirs:
            for name in ("memory.max_usage_in_bytes", "memory.peak"):
                text = _read(os.path.join(d, name))
                if text and text.strip().isdigit():
                    return int(text)
        return None

    def oom_kills(self):
        """How many processes the OS killed for the group's memory limit (None: not known)."""
        for d in self.group_dirs:
            for name in ("memory.oom_control", "memory.events"):
                match = re.search(r"^oom_kill (\d+)$", _read(os.path.join(d, name)) or "", re.M)
                if match:
                    return int(match.group(1))
        if not self.is_cgroup:
            return int(self.killed_for is not None)
        return None

    def close(self):
        """Kill every process left in the jail and remove its group; safe to call again.

        Never raises (it runs in cleanup paths); a group it could not remove is logged and stays
        for :func:`reap_stale` once this process has exited."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self.is_cgroup:
            try:
                removed = _kill_and_remove(self.group_dirs)
            except OSError as exc:
                removed, why = False, exc.strerror or str(exc)
            else:
                why = "processes still in it"
            if not removed:
                logging.getLogger(__name__).warning(
                    "cgroup %s not removed (%s)", self.group_dirs[0], why)
        elif self._watched is not None:
            try:
                import psutil
                top = psutil.Process(self._watched)
                _kill_tree([top, *top.children(recursive=True)])
            except Exception:  # noqa: BLE001 - already gone
                pass

    def __repr__(self):
        return f"<Jail {self.kind} memory={self.memory_bytes >> 20} MiB processes={self.max_processes}>"


class _Unusable(Exception):
    pass


def _make_group(bases, name, kind):
    """mkdir `name` below the first of `bases` that allows it; its path."""
    errors = []
    for base in bases:
        path = os.path.join(base, name)
        try:
            os.mkdir(path)
            return path
        except OSError as exc:
            errors.append(f"{base}: {exc.strerror or exc}")
    raise _Unusable(f"{kind} group not creatable ({'; '.join(errors)})")


def _kill_tree(procs):
    for proc in procs:
        try:
            proc.kill()
        except Exception:  # noqa: BLE001 - gone in the meantime
            pass


def _owner_dead(name):
    match = _NAME.match(name)
    if not match:
        return False
    pid, ticks = int(match.group(1)), int(match.group(2))
    current = _start_ticks(pid)
    return current is None or (ticks and current != ticks)


def reap_stale():
    """Remove the groups (killing their processes) whose owning grader process is dead.

    Call it after killing a grading job that could not close its jails.  Returns the paths of
    the groups removed."""
    bases = [d for dirs in _v1_bases().values() for d in dirs]
    v2 = _v2_base()
    if v2:
        bases.append(v2)
    removed = []
    for base in dict.fromkeys(bases):
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            path = os.path.join(base, name)
            if os.path.isdir(path) and _owner_dead(name):
                try:
                    if _kill_and_remove([path]):
                        removed.append(path)
                except OSError:
                    pass
    return removed
