"""The mark scheme beside each written answer, where a TA grades it: formgrader's grading view shows
the autograded notebook, so ShowMarkScheme (an autograde preprocessor) puts a read-only Markdown
cell after each written answer there, holding the instructor's model answer and mark scheme: the
answer cell's solution region in the source notebook.

Only the autograded notebook gets it. The release is built from the source by nbgrader's
generate_assignment (ClearSolutions), and the student's feedback page is built from the submitted
notebook and the release (autograder.grading.feedback_page), so the guidance never reaches a student.
"""
import re
from pathlib import Path

from nbformat.v4 import new_markdown_cell
from nbgrader.preprocessors import NbGraderPreprocessor

from autograder.grading.manual import is_written_answer
from autograder.notebook import read_notebook

# the cell's own metadata key: it marks the cell as the grader's, so a later run can replace it
METADATA_KEY = "autograder_mark_scheme"
HEADING = "Mark scheme for `{gid}` (from the source notebook; formgrader only, never shown to students)"
DELIMITER = re.compile(r"^\s*(?:#+|//|<!--)?\s*(BEGIN|END) SOLUTION\b.*$")


def guidance(source_cell):
    """The grading guidance of a written answer's source cell: its solution region (the text between
    BEGIN/END SOLUTION, or the whole cell when it has no delimiters)."""
    lines = source_cell.source.splitlines()
    marks = [i for i, line in enumerate(lines) if DELIMITER.match(line)]
    if len(marks) >= 2:
        lines = lines[marks[0] + 1:marks[-1]]
    return "\n".join(line for line in lines if not DELIMITER.match(line)).strip()


def mark_scheme_cell(gid, text):
    """The read-only cell shown after the answer `gid`: a quoted block under a heading."""
    quoted = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
    return new_markdown_cell(source=f"**{HEADING.format(gid=gid)}**\n\n{quoted}",
                             metadata={METADATA_KEY: gid, "editable": False, "deletable": False})


def with_mark_schemes(nb, source_nb):
    """`nb` with a mark-scheme cell after each written answer (once per answer; any cell a previous
    run or the submission put under the same key is dropped first: a student cannot plant one)."""
    schemes = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if is_written_answer(meta) and meta.get("grade_id") and guidance(cell):
            schemes.setdefault(meta["grade_id"], guidance(cell))
    cells = []
    for cell in nb.cells:
        if METADATA_KEY in cell.get("metadata", {}):
            continue
        cells.append(cell)
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in schemes:
            cells.append(mark_scheme_cell(gid, schemes.pop(gid)))
    nb.cells = cells
    return nb


class ShowMarkScheme(NbGraderPreprocessor):
    """Autograde preprocessor: adds the mark-scheme cells (with_mark_schemes) to the autograded
    notebook, from source/<assignment>/<notebook>.ipynb."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        coursedir = self._coursedir()
        source_dir = Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"]))
        if not source_dir.is_absolute():
            source_dir = Path(coursedir.root) / source_dir
        source_nb = read_notebook(source_dir / f"{info['notebook']}.ipynb")
        return with_mark_schemes(nb, source_nb), resources

    def _coursedir(self):
        node = self
        while node is not None:  # the converter, which knows the course's folders (see manual.py)
            if getattr(node, "coursedir", None) is not None:
                return node.coursedir
            node = getattr(node, "parent", None)
        from nbgrader.coursedir import CourseDirectory
        return CourseDirectory(config=self.config)
