"""`demo`: a term on a bundled sample class — release, roster, deadline and an extension, collect
(a folder and an LMS zip), grade, feedback, export (with Canvas's import file), report, similarity —
printing the grade table and where every file is."""
import csv
import datetime as dt
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
from autograder.verbs.deadline import extend, set_due
from autograder.verbs.export import export
from autograder.verbs.feedback import feedback
from autograder.verbs.grade import grade
from autograder.verbs.release import release
from autograder.verbs.report import report
from autograder.verbs.roster import import_roster
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
# The LMS zip's hand-in times, in hours after the due date (a real LMS writes them; the others
# handed in two days early): edsger is late; donald is later still but has a 48 h extension.
HANDED_IN_LATE = {"edsger": 25, "donald": 30}
EXTENSIONS = {"donald": 48}
# What a TA enters in formgrader for the written answers (points per answer); ken's are left for
# later, so the exports show a pending answer next to graded ones.
WRITTEN_MARKS = {"derivation": 3, "reflection_curves": 2, "reflection_speed": 1.5}
NOT_YET_MARKED = ("ken",)
MARKER = ".autograder-demo"


def write_sample_class(course, folder, due=None):
    """Half the class as per-student folders (notebooks renamed, as students do), half as an LMS zip
    whose entry dates are the hand-in times (HANDED_IN_LATE hours after `due`, else two days early)."""
    due = due or sample_due()
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
                handed_in = due + dt.timedelta(hours=HANDED_IN_LATE.get(student, -48))
                entry = zipfile.ZipInfo(f"{student}_12345_backprop.ipynb", _zip_date(handed_in))
                archive.writestr(entry, text, zipfile.ZIP_DEFLATED)
    return folder / "folders", zip_path


def sample_due():
    """The demo's due date: in a week, at 23:59 UTC (the sample class mostly hands in early)."""
    return dt.datetime.combine(dt.date.today() + dt.timedelta(days=7), dt.time(23, 59), dt.timezone.utc)


def _zip_date(when):
    """A zip entry's date: the machine's local time, as an LMS's zip stores it (no time zone)."""
    return when.astimezone().timetuple()[:6]


def write_canvas_roster(path, students):
    """The class as Canvas's "Export Entire Gradebook" writes it (its Points Possible row included)."""
    with open(path, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Backprop (4410231)"])
        writer.writerow(["    Points Possible", "", "", "", "", "30.00"])
        for number, student in enumerate(students, start=1001):
            writer.writerow([f"{student.capitalize()}, Sample", number, f"S{number}", student, "Demo section", ""])
    return path


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


def mark_written_answers(course, echo=print):
    """The TA's part, as formgrader stores it: a manual score and a comment on each written answer
    of every student who wrote one (WRITTEN_MARKS), except NOT_YET_MARKED."""
    from nbgrader.api import Gradebook
    marked = []
    with Gradebook(course.db_url) as gb:
        for submission in gb.assignment_submissions(course.assignment):
            student = submission.student.id
            if student in NOT_YET_MARKED:
                continue
            notebook = gb.find_submission_notebook(course.notebook_name, course.assignment, student)
            pending = {g.name: g for g in notebook.grades if g.name in WRITTEN_MARKS and g.needs_manual_grade}
            for name, grade in pending.items():
                grade.manual_score = WRITTEN_MARKS[name]
                grade.needs_manual_grade = False
            for comment in notebook.comments:
                if comment.name in pending:
                    comment.manual_comment = "Marked in the demo, as a TA would in formgrader."
            if pending:
                marked.append(student)
        gb.db.commit()
    echo(f"written answers marked for {', '.join(sorted(marked))}; left pending: {', '.join(NOT_YET_MARKED)}")


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
    due = sample_due()
    folders, zip_path = write_sample_class(course, course.root / "sample_class", due)
    roster = write_canvas_roster(course.root / "sample_class" / "canvas_gradebook_export.csv", SAMPLE_CLASS)
    echo(f"== roster import {roster}")
    import_roster(course, roster, echo=echo)
    echo("== deadline")
    set_due(course, due.strftime("%Y-%m-%d %H:%M"), "UTC", echo=echo)
    for intake in (folders, zip_path):
        echo(f"== collect {intake}")
        collect(intake, course, echo=echo)
    for student, hours in EXTENSIONS.items():
        echo(f"== deadline --extend {student} --hours {hours}")
        extend(course, student, hours=hours, echo=echo)
    from autograder.sandbox.bwrap import bwrap_available
    sandbox = bwrap_available()
    if not sandbox:
        echo("warning: bubblewrap is missing, so the demo grades WITHOUT the sandbox (see README)")
    echo("== grade")
    grade(course, sandbox=sandbox, echo=echo)
    echo("== written answers (what a TA enters in formgrader)")
    mark_written_answers(course, echo=echo)
    echo("== feedback")
    feedback(course, echo=echo)
    echo("== export --lms canvas")
    export(course, echo=echo, lms="canvas")
    for name, verb in (("report", report), ("similarity", similarity)):
        echo(f"== {name}")
        verb(course, echo=echo)
    echo("\nWhat each sample student submitted:")
    for student, variant in SAMPLE_CLASS.items():
        copied = f" (copied from {COPIES[student]}: names and layout changed)" if student in COPIES else ""
        late = f" (handed in {HANDED_IN_LATE[student]} h after the due date)" if student in HANDED_IN_LATE else ""
        extension = f" (extension: {EXTENSIONS[student]} h)" if student in EXTENSIONS else ""
        echo(f"  {student:8s} {VARIANTS[variant].description}{copied}{late}{extension}")
    echo(f"\nCourse: {course.root}  (a standard nbgrader course: "
         f"`cd {course.root} && nbgrader autograde backprop` works too)")


HELP = "the whole workflow on a bundled sample class"


def add_arguments(parser):
    pass


def run(course, args):
    demo(course)
