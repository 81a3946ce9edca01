"""`demo`: the whole workflow on a bundled sample class — release, collect (a folder and an LMS
zip), grade, feedback, export, report — printing the grade table and where every file is."""
import io
import re
import shutil
import tokenize
import zipfile

import nbformat

from autograder.course import Course, CourseError
from autograder.testcells import read_notebook
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.collect import collect
from autograder.verbs.export import export
from autograder.verbs.feedback import feedback
from autograder.verbs.grade import grade
from autograder.verbs.release import release
from autograder.verbs.report import report
from autograder.verbs.similarity import similarity

# The sample class: who submitted what (variants.py describes each).
SAMPLE_CLASS = {
    "ada": "perfect",
    "grace": "loss_and_grad_per_row_loop",
    "alan": "dz_missing_1_over_n",
    "edsger": "weight_decay_grad_c_not_2c",
    "barbara": "relu_mask_missing",
    "donald": "softmax_no_max_shift",
    "ken": "softmax_hardcoded",
    "linus": "untouched",
    "margaret": "loss_and_grad_per_row_loop",  # grace's notebook, disguised: see COPIES
}
# Who handed in a classmate's code with the local variables renamed and the layout changed; the
# similarity report must put the pair first, and grading gives both the same points.
COPIES = {"margaret": "grace"}
MARKER = ".autograder-demo"


def write_sample_class(course, folder):
    """Half the class as per-student folders (notebooks renamed, as students do), half as an LMS zip."""
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "folders").mkdir(parents=True)
    zip_path = folder / "lms_download.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, (student, variant) in enumerate(SAMPLE_CLASS.items()):
            submission = make_submission(release_nb, source_nb, VARIANTS[variant])
            if variant != "untouched":
                _answer_questions(submission, student)
            if student in COPIES:
                disguise(submission)
            text = nbformat.writes(submission)
            if i % 2 == 0:
                (folder / "folders" / student).mkdir()
                (folder / "folders" / student / f"{student} backprop.ipynb").write_text(text)
            else:
                archive.writestr(f"{student}_12345_backprop.ipynb", text)
    return folder / "folders", zip_path


# Local variables of the per-row loss_and_grad and what the copier calls them.
RENAMES = {"grads": "gradient", "loss": "total", "n": "count", "i": "row", "z1": "hidden_in", "a1": "hidden",
           "z2": "scores", "shifted": "stable", "log_p": "log_probs", "dz2": "d_scores", "dz1": "d_hidden",
           "name": "key", "value": "val"}


def disguise(nb, cell="loss_and_grad"):
    """What a student does to a classmate's notebook to hide a copy: the locals of `cell` renamed
    (name tokens only: strings and attributes stay), 2-space indents, a comment and blank lines added.
    The code computes exactly what it did."""
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == cell:
            lines = c.source.splitlines(keepends=True)
            names = [t for t in tokenize.generate_tokens(io.StringIO(c.source).readline)
                     if t.type == tokenize.NAME and t.string in RENAMES]
            for token in reversed(names):  # right to left, so earlier columns stay valid
                (row, start), (_, end) = token.start, token.end
                lines[row - 1] = lines[row - 1][:start] + RENAMES[token.string] + lines[row - 1][end:]
            text = "".join(re.sub(r"^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), line) for line in lines)
            c.source = "# my own version: one sample at a time\n" + text.replace("\n  return", "\n\n  return")


def _answer_questions(nb, student):
    """Written answers, so the demo's gradebook has manual grading to do, as a real one would."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            cell.source = f"{student}'s answer to {meta['grade_id']}: the gradient is softmax minus one-hot."


def demo(course=None, echo=print):
    course = course or Course()
    if course.root.exists():
        if not (course.root / MARKER).exists():
            raise CourseError(f"{course.root} exists and is not a demo course: pass --course DIR for the demo")
        shutil.rmtree(course.root)
    course.root.mkdir(parents=True)
    (course.root / MARKER).write_text("made by `python -m autograder demo`; safe to delete\n")

    echo("== release")
    release(course, echo=echo)
    folders, zip_path = write_sample_class(course, course.root / "sample_class")
    for intake in (folders, zip_path):
        echo(f"== collect {intake}")
        collect(intake, course, echo=echo)
    from autograder.sandbox.bwrap import bwrap_available
    sandbox = bwrap_available()
    if not sandbox:
        echo("warning: bubblewrap is missing, so the demo grades WITHOUT the sandbox (see README)")
    echo("== grade")
    grade(course, sandbox=sandbox, echo=echo)
    for name, verb in (("feedback", feedback), ("export", export), ("report", report), ("similarity", similarity)):
        echo(f"== {name}")
        verb(course, echo=echo)
    echo("\nWhat each sample student submitted:")
    for student, variant in SAMPLE_CLASS.items():
        copied = f" (copied from {COPIES[student]}: names and layout changed)" if student in COPIES else ""
        echo(f"  {student:8s} {VARIANTS[variant].description}{copied}")
    echo(f"\nCourse: {course.root}  (a standard nbgrader course: "
         f"`cd {course.root} && nbgrader autograde backprop` works too)")


HELP = "the whole workflow on a bundled sample class"


def add_arguments(parser):
    pass


def run(course, args):
    demo(course)
