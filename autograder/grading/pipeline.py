"""nbgrader preprocessors that make every autograde judge the student's code from outside.

They sit in nbgrader's own Autograde pipeline (the course's nbgrader_config.py names them), so
the kit's `grade`, `nbgrader autograde` and formgrader's Autograde button all grade the same way:

* `StripHiddenTests` (sanitize step): the student's kernel runs the notebook with the hidden
  blocks of the test cells removed. No process that runs student code ever holds hidden tests.
* `Reverify` (before SaveAutoGrades): the grader runs every test cell of the SOURCE notebook
  itself -- visible part, then hidden part -- against proxies of the student's functions in a
  sandboxed worker (verify.py), with inputs seeded per submission (seeds.py). Each test cell's
  outputs become the grader's verdict line, so SaveAutoGrades stores verified scores only; the
  verdicts go into the notebook's metadata["autograder"] for feedback and export.
* `SaveVerdictComments` (after SaveAutoGrades): failures, timeouts and "tamper suspected" become
  the auto comment of the answer cell they concern, where a TA looks in formgrader.
"""
import tempfile
import time
from pathlib import Path

from nbformat.v4 import new_code_cell, new_output
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Float, Integer, default

from autograder import notebook, seeds

METADATA_KEY = "autograder"
TAMPER = ("passed in the student's kernel but failed when the grader ran it again outside the kernel: "
          "the notebook's own result was not trusted")


class StripHiddenTests(NbGraderPreprocessor):
    """Remove the hidden blocks of autograded test cells before the student's kernel runs them.

    Unlike nbgrader's ClearHiddenTests (whose delimiters it uses), it touches test cells only: a
    student who types the delimiters into an answer cell changes nothing but their own code.
    """

    def preprocess_cell(self, cell, resources, index):
        if notebook.is_test_cell(cell):
            cell.source = notebook.split_hidden(cell.source, self.config).visible
        return cell, resources


class InertNotebook(NbGraderPreprocessor):
    """After the student's kernel ran: its outputs keep only text, PNG and JPEG (no HTML, JavaScript,
    SVG, widgets), each capped, and long Markdown becomes plain text. The autograded notebook is
    what formgrader renders on the Jupyter server's own origin: a script there would act as the TA.
    """

    def preprocess(self, nb, resources):
        from autograder.grading.feedback_page import inert_outputs, limit_markdown
        inert_outputs(nb.cells)
        limit_markdown(nb.cells)
        return nb, resources


class Reverify(NbGraderPreprocessor):
    """The grader's verdict on every autograded test cell decides its points (see module doc)."""

    term_seed = Integer(help="Course-wide seed mixed into every submission's seed; change it to draw "
                             "new hidden inputs for a new term (default: $BACKPROP_GRADER_SEED or 0)").tag(config=True)
    deadline = Float(0.0, help="time.monotonic() by which verification must end (the kit's grade sets "
                               "it so autograde and verification share one budget); 0: none").tag(config=True)

    @default("term_seed")
    def _term_seed_default(self):
        return seeds.term_seed_from_env()

    def preprocess(self, nb, resources):
        from autograder.grading.execute import GradingExecute  # the time limits are its settings

        limits = GradingExecute(parent=self)  # the course's time limits and sandbox setting: one source
        info = resources["nbgrader"]
        coursedir = CourseDirectory(config=self.config)
        source_dir = Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"]))
        submitted = Path(coursedir.format_path(coursedir.submitted_directory, info["student"],
                                               info["assignment"])) / f"{info['notebook']}.ipynb"
        source_nb = notebook.read_notebook(source_dir / f"{info['notebook']}.ipynb")
        seed = seeds.submission_seed(seeds.ensure_secret(coursedir.root), self.term_seed, info["student"],
                                     submitted.read_bytes())
        total = float(limits.submission_timeout)
        if self.deadline:
            total = max(0.0, min(total, self.deadline - time.monotonic()))
        verdicts, notes, loaded = self._verify(source_dir / f"{info['notebook']}.ipynb", submitted, seed,
                                               float(limits.timeout), total, source_nb, limits.sandbox)
        record = _record(nb, source_nb, verdicts, notes, seed, loaded)
        _write_verdicts(nb, source_nb, record, self.config)
        nb.metadata[METADATA_KEY] = record
        return nb, resources

    def _verify(self, source_path, submitted, seed, cell_timeout, total, source_nb, sandbox):
        from autograder.judge.verify import Verdict, verify

        try:
            with tempfile.TemporaryDirectory(prefix="autograder-verify-") as workdir:
                result = verify(source_path, submitted, workdir, sandbox=sandbox, seed=seed,
                                cell_timeout=cell_timeout, total_timeout=total, config=self.config)
            return (result.cells, result.notes + [f"{label}: {message}" for label, message in
                                                  sorted(result.load_errors.items())], not result.load_errors)
        except Exception as exc:  # noqa: BLE001 - no verdict must never fall back to the kernel's
            message = f"the grader could not verify this submission ({type(exc).__name__}: {str(exc)[:200]})"
            self.log.error(message)
            return ({cell.grade_id: Verdict(False, message, False) for cell in notebook.test_cells(source_nb)},
                    [message], False)


def _in_kernel(cell):
    if cell is None:
        return "not run"
    failed = any(out.output_type == "error" or out.output_type == "stream" and out.name == "stderr"
                 for out in cell.outputs)
    return "failed" if failed else "passed"


def _record(nb, source_nb, verdicts, notes, seed, loaded):
    """nb.metadata["autograder"]: the verdict of every test cell, and what the kernel said.

    "Tamper suspected" needs the grader to have run exactly what the kernel ran: the student's
    code all loaded (`loaded`), the visible part failing outside, no time limit involved. A cell
    the grader could not load fails as itself (its load error is in the notes), never as tampering.
    """
    cells_here = {cell.metadata["nbgrader"]["grade_id"]: cell for cell in nb.cells if notebook.is_test_cell(cell)}
    record = {"version": 1, "cells": {}, "tamper_cells": [], "notes": list(notes), "seed": seed}
    for test in notebook.test_cells(source_nb):
        verdict = verdicts[test.grade_id]
        in_kernel = _in_kernel(cells_here.get(test.grade_id))
        if in_kernel == "not run":
            record["notes"].append(f"{test.grade_id}: missing from the notebook (deleted?); put back and "
                                   f"{'passed' if verdict.passed else 'failed'} when checked outside it")
        if verdict.passed:
            status = "passed"
            if in_kernel == "failed":
                record["notes"].append(f"{test.grade_id}: failed in the notebook but passed when checked outside it")
        elif verdict.timed_out:
            status = "timed out"
        elif in_kernel == "passed" and not verdict.visible_passed and loaded:
            status = "tamper suspected"
            record["tamper_cells"].append(test.grade_id)
        else:
            status = "failed"
        record["cells"][test.grade_id] = {
            "points": test.points, "score": test.points if verdict.passed else 0.0, "status": status,
            "message": "" if verdict.passed else (TAMPER if status == "tamper suspected" else verdict.message)[:600],
            "in_kernel": in_kernel}
    return record


def verdict_line(grade_id, entry):
    """The one line a student or TA reads for a test cell."""
    if entry["status"] == "passed":
        return f"{grade_id} passed"
    return f"{grade_id} failed: {entry['message']}"  # a timeout's message says "timed out: ..."


def _write_verdicts(nb, source_nb, record, config):
    """Each test cell's outputs become its verdict line (a failure is an error output, so nbgrader
    scores it 0); a test cell the student deleted comes back, so it is scored too."""
    present = set()
    for cell in nb.cells:
        if notebook.is_test_cell(cell):
            gid = cell.metadata["nbgrader"]["grade_id"]
            if gid in record["cells"]:
                cell.outputs = [_verdict_output(gid, record["cells"][gid])]
                present.add(gid)
            else:
                cell.outputs = [_verdict_output(gid, {"status": "failed", "message": "not a test of this assignment"})]
    for test in notebook.test_cells(source_nb):
        if test.grade_id not in present:
            source = next(c for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == test.grade_id)
            cell = new_code_cell(notebook.split_hidden(source.source, config).visible, metadata=source.metadata)
            cell.outputs = [_verdict_output(test.grade_id, record["cells"][test.grade_id])]
            nb.cells.append(cell)


def _verdict_output(grade_id, entry):
    line = verdict_line(grade_id, entry)
    if entry["status"] == "passed":
        return new_output("stream", name="stdout", text=line + "\n")
    return new_output("error", ename="TestFailed", evalue=entry["message"], traceback=[line])


class SaveVerdictComments(NbGraderPreprocessor):
    """After SaveAutoGrades: what went wrong in a test becomes the auto comment of the answer cell
    it tests (the closest solution cell above it), which formgrader shows beside the answer."""

    def preprocess(self, nb, resources):
        record = nb.metadata.get(METADATA_KEY)
        if not record:
            return nb, resources
        lines, owner = {}, None
        for cell in nb.cells:
            if utils.is_solution(cell) and cell.cell_type == "code":
                owner = cell.metadata["nbgrader"]["grade_id"]
            elif notebook.is_test_cell(cell) and owner:
                gid = cell.metadata["nbgrader"]["grade_id"]
                entry = record["cells"].get(gid)
                if entry and entry["status"] != "passed":
                    prefix = "TAMPER SUSPECTED: " if entry["status"] == "tamper suspected" else ""
                    lines.setdefault(owner, []).append(prefix + verdict_line(gid, entry))
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            for owner, texts in lines.items():
                try:
                    comment = gb.find_comment(owner, info["notebook"], info["assignment"], info["student"])
                except MissingEntry:
                    continue
                comment.auto_comment = "\n".join(filter(None, [comment.auto_comment, "Autograder:", *texts]))
            gb.db.commit()
        return nb, resources

