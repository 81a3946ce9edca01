"""A Jupyter kernel manager whose kernel runs in the bubblewrap sandbox (see bwrap.py), talks over
unix sockets in a private folder, and is capped in what it may send the grader."""
from __future__ import annotations

import os
import queue
import shutil
import tempfile
import time
import weakref

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager, KernelManager
from traitlets import Bool, Dict, DottedObjectName, Integer, List, Type, Unicode, default

from autograder.sandbox.bwrap import (
    BWRAP_MISSING_HELP,
    DEFAULT_ENV_PASSTHROUGH,
    DEFAULT_SANDBOX_UID,
    _is_within,
    _running_as_root,
    bwrap_available,
    make_sandbox_readable,
    python_paths,
    sandbox_argv,
)
from autograder.sandbox.cgroup import Jail


def _short_tmp_root():
    # unix socket paths are limited to ~107 bytes: keep the socket directory short
    for candidate in ("/tmp", tempfile.gettempdir()):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK) and len(candidate) < 60:
            return candidate
    return None


def _capped_context(manager):
    """A zmq context whose sockets refuse messages above the manager's size cap.

    Set before connect on every socket the grader opens to the kernel: a peer sending a larger
    frame is disconnected by libzmq, so the grader never holds it; the small receive queue keeps
    the grader from buffering many large messages (the kernel's side blocks or drops instead).
    """
    traits = SandboxedKernelManager.class_traits()
    max_mb = getattr(manager, "max_message_mb", traits["max_message_mb"].default_value)
    hwm = getattr(manager, "receive_hwm", traits["receive_hwm"].default_value)
    context = zmq.asyncio.Context()
    if max_mb:
        context.setsockopt(zmq.MAXMSGSIZE, int(max_mb) << 20)
    if hwm:
        context.setsockopt(zmq.RCVHWM, int(hwm))
    return context


class CappedKernelClient(AsyncKernelClient):
    """The kernel client nbclient gets from :class:`SandboxedKernelManager`: its sockets take the
    manager's message size cap (``max_message_mb``, ``receive_hwm``)."""

    @default("context")
    def _default_capped_context(self):
        self._created_context = True
        return _capped_context(self.parent)

    async def reconnect_iopub(self, timeout=5.0):
        """Open a fresh iopub socket; True once it receives again.

        libzmq drops a connection that sent an oversized frame and does not reconnect it (a
        protocol error), so every later output would be lost.  A new SUB socket also misses what
        is published before its subscription reaches the kernel: kernel_info requests make the
        kernel publish until one arrives."""
        if self._iopub_channel is not None:
            self._iopub_channel.close()
            self._iopub_channel = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.kernel_info()
            try:
                await self.iopub_channel.get_msg(timeout=0.2)
                return True
            except queue.Empty:
                continue
        return False


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel runs in the bubblewrap sandbox of :func:`sandbox_argv`.

    The kernel talks over ipc (unix sockets) in a private temporary directory bound into the
    sandbox; its cwd (the ``cwd`` launch argument, e.g. nbgrader's autograded submission folder)
    is a private tmpfs showing that folder's entries read-only, so nothing it writes reaches the
    host.  Each launch gets its own :class:`~autograder.sandbox.cgroup.Jail` (total memory and processes),
    closed when the kernel's resources are cleaned up.  Interrupts are sent as
    ``interrupt_request`` messages on the control channel (the kernel runs in a pid namespace
    behind bwrap; a SIGINT to bwrap would kill the sandbox instead of interrupting).  Shutdown
    kills bwrap, which kills the whole pid namespace; closing the jail kills anything left.
    """

    memory_limit_mb = Integer(2048, help=(
        "Memory of all the sandbox's processes together (MiB; a cgroup, swap and tmpfs files "
        "included), and the address-space limit of each; 0: none")).tag(config=True)
    cpu_seconds = Integer(120, help="CPU-time limit of each sandboxed process (s); 0: none").tag(config=True)
    max_processes = Integer(64, help=(
        "Processes and threads the sandbox may have at once, all together (a cgroup) and per "
        "user namespace (RLIMIT_NPROC); 0: none")).tag(config=True)
    use_cgroups = Bool(True, help=(
        "Cap total memory and processes with a cgroup (v1 or v2) where the machine allows; "
        "False forces the fallback (a memory watchdog polling the process tree)")).tag(config=True)
    max_file_size_mb = Integer(64, help="Largest file the sandbox may write (MiB); 0: none").tag(config=True)
    tmp_size_mb = Integer(256, help="Size of the sandbox's private /tmp and /dev/shm (MiB)").tag(config=True)
    workdir_size_mb = Integer(256, help=(
        "Size of the private tmpfs that is the sandbox's working directory: all the kernel may "
        "write there (MiB); 0: no cap")).tag(config=True)
    max_message_mb = Integer(4, help=(
        "Largest message frame the grader accepts from the kernel (MiB); a larger one "
        "disconnects the kernel's socket instead of being buffered; 0: no cap")).tag(config=True)
    receive_hwm = Integer(16, help=(
        "Messages the grader queues per socket from the kernel before it stops reading; "
        "0: libzmq's default")).tag(config=True)
    sandbox_uid = Integer(DEFAULT_SANDBOX_UID, help="Host uid of the kernel when grading as root").tag(config=True)
    extra_ro_paths = List(Unicode(), help="More host paths visible read-only in the sandbox").tag(config=True)
    extra_rw_paths = List(Unicode(), help="More host paths visible read-write in the sandbox").tag(config=True)
    env_passthrough = List(Unicode(), list(DEFAULT_ENV_PASSTHROUGH),
                           help="Variables copied from the grader's environment if set").tag(config=True)
    extra_env = Dict(help="Variables set in the sandbox").tag(config=True)

    client_class = DottedObjectName("autograder.sandbox.bwrap.CappedKernelClient")
    client_factory = Type(CappedKernelClient, klass=AsyncKernelClient)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.transport = "ipc"
        self.cache_ports = False
        self.jail = None
        self._jail_finalizer = None
        self._sandbox_dir = None
        self._sandbox_finalizer = None

    @default("context")
    def _default_capped_context(self):
        self._created_context = True
        return _capped_context(self)

    def make_jail(self):
        """A new :class:`~autograder.sandbox.cgroup.Jail` with this manager's limits."""
        return Jail.create(memory_mb=self.memory_limit_mb, max_processes=self.max_processes,
                           use_cgroups=self.use_cgroups)

    def sandbox_limits(self):
        """This manager's limits as keyword arguments of :func:`sandbox_argv`."""
        return {name: getattr(self, name) for name in (
            "memory_limit_mb", "cpu_seconds", "max_processes", "max_file_size_mb", "tmp_size_mb",
            "workdir_size_mb", "sandbox_uid")}

    def limit_hit(self):
        """Why the OS or the watchdog killed a process of the running kernel's jail, or None."""
        jail = self.jail
        if jail is None:
            return None
        if jail.killed_for:
            return jail.killed_for
        if jail.oom_kills():
            return f"the {jail.memory_bytes >> 20} MiB memory limit"
        return None

    def _make_sandbox_dir(self, workdir):
        outer = os.path.realpath(tempfile.mkdtemp(prefix="nbsbx-", dir=_short_tmp_root()))
        # the sockets and connection file (with the message-signing key) live one level down,
        # under a random name in a directory that only its owner may list
        d = tempfile.mkdtemp(dir=outer)
        if _running_as_root():
            os.chmod(outer, 0o711)
            os.chown(d, self.sandbox_uid, self.sandbox_uid)
        self._sandbox_dir = d
        self._sandbox_finalizer = weakref.finalize(self, _cleanup_sandbox_dir, outer)
        self.connection_file = os.path.join(d, "kernel.json")
        self.ip = os.path.join(d, "k")

    async def _async_pre_start_kernel(self, **kw):
        if not bwrap_available():
            raise RuntimeError(BWRAP_MISSING_HELP)
        workdir = os.path.realpath(kw.get("cwd") or os.getcwd())
        if self._sandbox_dir is None or not os.path.isdir(self._sandbox_dir):
            self._make_sandbox_dir(workdir)
        make_sandbox_readable(workdir)
        self.transport = "ipc"
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        if _running_as_root() and os.path.exists(self.connection_file):
            os.chown(self.connection_file, self.sandbox_uid, self.sandbox_uid)
        self.kernel_spec.interrupt_mode = "message"
        launch_env = kw.get("env") or os.environ
        self._close_jail()
        self.jail = self.make_jail()
        # closes the jail (killing what is left in it) should the manager be dropped unclosed
        self._jail_finalizer = weakref.finalize(self, self.jail.close)
        prefix = sandbox_argv(
            workdir,
            ro_paths=[*self.extra_ro_paths, *_kernel_prefix(kernel_cmd)],
            rw_paths=[self._sandbox_dir, *self.extra_rw_paths],
            # the kernel's parent inside the pid namespace is bwrap's init (pid 1); saying so
            # keeps ipykernel from polling for a parent change and from printing a console note
            env={"JPY_PARENT_PID": "1", **self.extra_env},
            env_passthrough=self.env_passthrough,
            source_env=launch_env,
            jail=self.jail,
            **self.sandbox_limits(),
        )
        kw["cwd"] = workdir
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # bwrap's own; cleared inside
        return prefix + list(kernel_cmd), kw

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        await super()._async_launch_kernel(kernel_cmd, **kw)
        self.jail.watch(self.provisioner.pid)

    def _close_jail(self):
        finalizer = self._jail_finalizer
        if finalizer is not None:
            finalizer()  # jail.close(), once
            self._jail_finalizer = None

    async def _async_cleanup_resources(self, restart=False):
        await KernelManager._async_cleanup_resources(self, restart=restart)
        self._close_jail()
        if not restart and self._sandbox_finalizer is not None:
            self._sandbox_finalizer()
            self._sandbox_dir = None
            self._sandbox_finalizer = None

    cleanup_resources = _async_cleanup_resources
    pre_start_kernel = _async_pre_start_kernel
    _launch_kernel = _async_launch_kernel


def _kernel_prefix(kernel_cmd):
    """A kernelspec may name an absolute interpreter outside this venv: bind its prefix too."""
    if not kernel_cmd or not os.path.isabs(kernel_cmd[0]):
        return []
    exe = os.path.realpath(kernel_cmd[0])
    known = python_paths() + ["/usr"]
    if any(_is_within(exe, p) for p in known):
        return []
    return [os.path.dirname(os.path.dirname(exe))]


def _cleanup_sandbox_dir(path):
    shutil.rmtree(path, ignore_errors=True)
