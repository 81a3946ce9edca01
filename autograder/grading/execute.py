"""nbgrader preprocessors of the kit, configured from the course's nbgrader_config.py."""
import os
import re
import stat
import time

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Bool, Enum, Integer

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def remove_special_files(root):
    """Delete every symlink, FIFO, socket and device below `root`; return their relative paths.

    The student's kernel can leave them in its working folder, which becomes the autograded folder:
    outside the sandbox, nbgrader and the grader would follow a symlink (copying the hidden tests
    back, or chmod-ing the target) and block on a FIFO.
    """
    removed = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                os.unlink(path)
                removed.append(os.path.relpath(path, root))
    return removed


def error_output(ename, message):
    return new_output("error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])


# kernel messages whose content nbclient stores in the notebook (or its widget state)
_STORED_MESSAGES = {"stream", "display_data", "execute_result", "error", "update_display_data"}
_ERROR_KEPT_CHARS = 2000  # how much of an error past the output cap is kept (it decides the score)


def _payload_bytes(value):
    """Size of a message's content as stored: the UTF-8 bytes of its strings, plus its buffers."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, dict):
        return sum(_payload_bytes(k) + _payload_bytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_payload_bytes(v) for v in value)
    return 8


def _head(text, limit):
    """The first `limit` UTF-8 bytes of `text`, cut at a character boundary."""
    return text.encode("utf-8", "surrogatepass")[:max(0, limit)].decode("utf-8", "ignore")


def _shortened_error(content):
    """An error's content cut to a few KB: it still makes nbgrader score the cell 0."""
    traceback = "\n".join(map(str, content.get("traceback") or []))
    return {"ename": str(content.get("ename", ""))[:200],
            "evalue": str(content.get("evalue", ""))[:_ERROR_KEPT_CHARS],
            "traceback": [traceback[:_ERROR_KEPT_CHARS]]}


class GradingExecute(Execute):
    """nbgrader's Execute, in a sandbox, within a time budget for the whole submission, and
    surviving a kernel that dies: the cells it could not run score 0 like any failure (and
    re-verification outside the kernel still judges the functions themselves).

    The cell timeout alone lets a notebook of many slow cells run for hours; past the budget the
    remaining cells are not run.

    Output is capped in bytes per cell and per notebook as messages arrive, before nbclient stores
    them: past a cap a cell keeps only one notice and (shortened) its error, so a failing cell
    still fails.  The kernel client itself refuses oversized messages (SandboxedKernelManager's
    ``max_message_mb``), so the grader's memory does not grow with what the kernel sends.
    """

    sandbox = Bool(True, help="Run student code in the bubblewrap sandbox (autograder.sandbox): the kernel here, "
                              "the verification worker in Reverify; off only for trusted code").tag(config=True)
    timeout = Integer(60, allow_none=True, help=(
        "Seconds a cell may run, in the kernel and in verification (nbgrader's own 30 s kills real notebooks)")
    ).tag(config=True)
    submission_timeout = Integer(300, help="Seconds for one submission: all cells in the kernel, and then "
                                           "all of verification").tag(config=True)
    max_cell_output_bytes = Integer(1 << 20, help=(
        "Output one cell may store, all types together (streams, images, display data, errors; "
        "bytes); the rest of that cell's output is replaced by one notice")).tag(config=True)
    max_output_bytes = Integer(4 << 20, help=(
        "Output the whole notebook may store (bytes); past it every cell keeps only a notice "
        "and its error")).tag(config=True)
    raise_on_iopub_timeout = Bool(False, help=(
        "Abort the whole notebook when a cell's output does not finish arriving in time. Off: "
        "a kernel that sends a message above the client's size cap is disconnected and loses "
        "that output; the cell then ends with a notice, the execute reply still decides")).tag(config=True)
    shutdown_kernel = Enum(["graceful", "immediate"], default_value="immediate", help=(
        "How the kernel is stopped after the last cell; immediate: nothing of it is kept, and a "
        "graceful shutdown costs ~0.6 s a submission")).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.sandbox:
            from autograder.sandbox.kernel import SandboxedKernelManager
            self.kernel_manager_class = SandboxedKernelManager
        else:
            self.kernel_manager_class = AsyncKernelManager
        self._deadline = None
        self._kernel_died = False
        self._notebook_bytes = 0
        self._new_cell_caps()
        self.timeout_func = self._cell_time_limit

    def _cell_time_limit(self, cell):
        """The cell timeout, shortened to what is left of the submission's budget."""
        remaining = self._deadline - time.monotonic()
        if self.timeout is None or self.timeout <= 0:
            return max(1, int(remaining))
        return max(1, int(min(self.timeout, remaining)))

    def _new_cell_caps(self):
        self._cell_bytes = 0
        self._cell_truncated = False
        self._cell_error_kept = False
        self._cell_idle_seen = False

    def process_message(self, msg, cell, cell_index):
        msg_type = msg["msg_type"]
        if msg_type == "status" and msg["content"].get("execution_state") == "idle":
            self._cell_idle_seen = True
        if msg_type not in _STORED_MESSAGES and not msg_type.startswith("comm"):
            return super().process_message(msg, cell, cell_index)
        size = _payload_bytes(msg["content"]) + _payload_bytes(msg.get("buffers") or [])
        left = min(self.max_cell_output_bytes - self._cell_bytes,
                   self.max_output_bytes - self._notebook_bytes)
        if size <= left:
            self._cell_bytes += size
            self._notebook_bytes += size
            return super().process_message(msg, cell, cell_index)
        kept = None
        if msg_type == "stream" and left > 0:
            text = _head(msg["content"].get("text", ""), left)
            kept = {**msg, "content": {**msg["content"], "text": text}}
            self._cell_bytes += left
            self._notebook_bytes += left
        elif msg_type == "error" and not self._cell_error_kept:
            self._cell_error_kept = True
            kept = {**msg, "content": _shortened_error(msg["content"])}
        result = super().process_message(kept, cell, cell_index) if kept else None
        if not self._cell_truncated:
            self._cell_truncated = True
            which = ("this cell", self.max_cell_output_bytes)
            if self.max_output_bytes - self._notebook_bytes < self.max_cell_output_bytes - self._cell_bytes:
                which = ("this notebook", self.max_output_bytes)
            cell.outputs.append(new_output("stream", name="stderr", text=(
                f"[output truncated: more than {which[1]} bytes in {which[0]}]\n")))
        return result

    def on_cell_executed(self, **kwargs):
        # nbgrader adds the execute reply's error when no output recorded it; that error came
        # from the kernel too, so it is cut like any output past the cap
        outputs = kwargs["cell"].outputs
        before = len(outputs)
        super().on_cell_executed(**kwargs)
        for out in outputs[before:]:
            if out.output_type == "error":
                out.update(_shortened_error(out))

    def preprocess(self, nb, resources=None, km=None):
        self._deadline = time.monotonic() + self.submission_timeout
        self._kernel_died = False
        self._notebook_bytes = 0
        try:
            return super().preprocess(nb, resources, km)
        finally:
            workdir = ((resources or {}).get("metadata") or {}).get("path")
            if workdir:
                for path in remove_special_files(workdir):
                    self.log.warning("removed %s left by the student's code (not a regular file)", path)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._kernel_died:
            cell.outputs = [error_output("KernelDied", "not run: the kernel died in an earlier cell")]
            return cell, resources
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            message = f"not run: the submission used up its {self.submission_timeout} s time budget"
            cell.outputs = [error_output("SubmissionTimeout", message)]
            return cell, resources
        self._new_cell_caps()
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
            if not self._cell_idle_seen:
                cell.outputs.append(new_output("stream", name="stderr", text=(
                    "[output lost: part of this cell's output never arrived (the grader refuses "
                    "messages above its size cap)]\n")))
                reconnect = getattr(self.kc, "reconnect_iopub", None)
                if reconnect is not None:
                    run_sync(reconnect)()
            return cell, resources
        except DeadKernelError:
            self._kernel_died = True
            limit = getattr(self.km, "limit_hit", lambda: None)()
            why = f"killed at {limit}" if limit else "it exited, crashed or hit a sandbox limit"
            cell.outputs.append(error_output("KernelDied", f"the kernel died running this cell ({why})"))
            return cell, resources
