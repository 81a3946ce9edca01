"""nbgrader preprocessors of the kit, configured from the course's nbgrader_config.py."""
import os
import re
import stat
import time

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Integer

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def is_test_cell(cell):
    return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)


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


class GradingExecute(Execute):
    """nbgrader's Execute, in a sandbox, within a time budget for the whole submission, and
    surviving a kernel that dies: the cells it could not run score 0 like any failure (and
    re-verification outside the kernel still judges the functions themselves).

    The cell timeout alone lets a notebook of many slow cells run for hours; past the budget the
    remaining cells are not run.
    """

    sandbox = Bool(True, help="Run the kernel in a bubblewrap sandbox (autograder.sandbox)").tag(config=True)
    submission_timeout = Integer(300, help="Seconds for all cells of one submission").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.sandbox:
            from .sandbox import SandboxedKernelManager
            self.kernel_manager_class = SandboxedKernelManager
        else:
            self.kernel_manager_class = AsyncKernelManager
        self._deadline = None
        self._kernel_died = False
        self._cell_timeout = self.timeout

    def preprocess(self, nb, resources=None, km=None):
        self._deadline = time.monotonic() + self.submission_timeout
        self._kernel_died = False
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
        self.timeout = max(1, int(min(self._cell_timeout, remaining)))
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._kernel_died = True
            cell.outputs.append(error_output(
                "KernelDied", "the kernel died running this cell (it exited, crashed or hit a sandbox limit)"))
            return cell, resources
