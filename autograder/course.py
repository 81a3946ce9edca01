"""The course directory: a standard nbgrader course assembled from the kit's top-level files.

Layout (nbgrader's own): nbgrader_config.py, gradebook.db, source/, release/, submitted/,
autograded/, feedback/ — so plain `nbgrader` commands keep working on it.
"""
import re
import shutil
import warnings
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

KIT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "backprop"
NOTEBOOK = "assignment"
# What a student receives besides the notebook (paths relative to the kit's root).
STUDENT_FILES = ("helpers.py", "data/mnist_sample.npz")

# nbgrader's gradebook trips this SQLAlchemy warning on every re-grade; it is noise to a TA.
warnings.filterwarnings("ignore", message=r"Object of type <\w+> not in session")

CONFIG_TEMPLATE = '''\
# nbgrader configuration of this course, written by `python -m autograder release`.
# Plain `nbgrader` commands run in this folder use it too (with the kit's venv: its
# preprocessors are the installed `autograder` package).

c = get_config()
c.CourseDirectory.course_id = "backprop"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".DS_Store"]

# Time limits (autograder.grading.execute.GradingExecute says what each means): a cell may take
# {cell_timeout} s in the kernel and again in verification; a whole submission {submission_timeout} s for each.
c.GradingExecute.timeout = {cell_timeout}
c.GradingExecute.startup_timeout = 60
c.GradingExecute.submission_timeout = {submission_timeout}

# Student code is untrusted: it runs in a bubblewrap sandbox (no network, no view of the course),
# without the hidden tests; the grader then judges every test cell itself, outside the kernel
# (autograder.grading.pipeline). Every way of autograding this course -- the kit's `grade`, `nbgrader
# autograde`, formgrader's button -- goes through this pipeline and stores verified scores only.
c.GradingExecute.sandbox = {sandbox}
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "autograder.grading.pipeline.StripHiddenTests",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "autograder.grading.execute.GradingExecute",
    "autograder.grading.pipeline.InertNotebook",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "autograder.grading.pipeline.Reverify",
    "nbgrader.preprocessors.SaveAutoGrades",
    "autograder.grading.pipeline.SaveVerdictComments",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# nbgrader scores any stderr in a test cell as a failure; a warning from correct code must not cost points.
c.IgnorePattern.pattern = r":\\d+: (RuntimeWarning|DeprecationWarning|FutureWarning|PendingDeprecationWarning): "
c.LimitOutput.max_lines = 200

# Feedback is built only from trusted data (autograder.grading.feedback_page): the student's submitted
# notebook, the release version of the locked cells, the grader's verdict line per test cell and the
# gradebook's scores -- never what the grading run printed or wrote. The feedback folder keeps the
# HTML only; student Markdown is sanitized (the markdown2html filter). Same as autograder.verbs.feedback.
c.GenerateFeedback.preprocessors = [
    "autograder.grading.feedback_page.TrustedFeedback",
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
c.HTMLExporter.filters = {{"markdown2html": "autograder.grading.feedback_page.markdown2html"}}
c.HTMLExporter.sanitize_html = True  # nbconvert's own sanitizer too, for every page rendered here
'''


class Course:
    """Paths of one course directory (default `course/` beside the kit).

    Not nbgrader's CourseDirectory.format_path: these paths are needed before a course (and its
    config) exists, and the kit writes the course's config itself, with nbgrader's default folder
    names, so both name the same folders.
    """

    def __init__(self, root=None):
        self.root = Path(root or KIT / "course").resolve()

    @property
    def config_file(self):
        return self.root / "nbgrader_config.py"

    @property
    def gradebook(self):
        return self.root / "gradebook.db"

    @property
    def db_url(self):
        return f"sqlite:///{self.gradebook}"

    @property
    def source(self):
        return self.root / "source" / ASSIGNMENT

    @property
    def release(self):
        return self.root / "release" / ASSIGNMENT

    def submitted(self, student):
        return self.root / "submitted" / student / ASSIGNMENT

    def autograded(self, student):
        return self.root / "autograded" / student / ASSIGNMENT

    def feedback(self, student):
        return self.root / "feedback" / student / ASSIGNMENT

    def notebook(self, folder):
        return folder / f"{NOTEBOOK}.ipynb"

    def submitted_students(self):
        """Students with a submitted notebook, sorted."""
        base = self.root / "submitted"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if self.notebook(p / ASSIGNMENT).is_file())

    def load_config(self):
        """The course's nbgrader_config.py as a traitlets Config (empty if not released yet)."""
        if not self.config_file.is_file():
            return Config()
        return PyFileConfigLoader(self.config_file.name, path=str(self.root)).load_config()

    def require_release(self):
        if not (self.config_file.is_file() and self.gradebook.is_file() and self.source.is_dir()):
            raise CourseError(f"{self.root} is not a released course: run `python -m autograder release` first")


RESERVED_NAMES = frozenset({
    # the course root (the kit's files and nbgrader's)
    "gradebook.db", "nbgrader_config.py", "nbgrader_config.json", "grading_status.json",
    "grades.csv", "grades.json", "reports", "exchange",
    # nbgrader's step folders and the folders of its exchange and zip_collect
    "source", "release", "submitted", "autograded", "feedback", "solution", "source_with_tests",
    "inbound", "outbound", "downloaded", "extracted", "archive",
})
# SQLite keeps "gradebook.db-journal" / "-wal" / "-shm" beside the gradebook.
RESERVED_PREFIXES = ("gradebook.db",)
RESERVED_SUFFIXES = ("-verify",)

def reserved_id(student):
    """Why `student` cannot be used as a student id because the grader uses that name, or ""."""
    name = student.casefold()
    if name.startswith("."):
        return f"{student!r} starts with a dot, as the grader's hidden and staging folders do"
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        return f"{student!r} is a name the grader uses"
    for suffix in RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"{student!r} ends in {suffix!r}, as the grader's own folders do"
    return ""


class CourseError(Exception):
    """A problem the instructor can fix, with a one-line message that says how."""


def write_config(course, *, sandbox=True, cell_timeout=None, submission_timeout=None):
    """The course's nbgrader_config.py; a limit left None is GradingExecute's default."""
    from autograder.grading.execute import GradingExecute
    defaults = GradingExecute.class_traits()
    if cell_timeout is None:
        cell_timeout = defaults["timeout"].default_value
    if submission_timeout is None:
        submission_timeout = defaults["submission_timeout"].default_value
    course.root.mkdir(parents=True, exist_ok=True)
    course.config_file.write_text(CONFIG_TEMPLATE.format(
        sandbox=bool(sandbox), cell_timeout=int(cell_timeout),
        submission_timeout=int(submission_timeout)))


def copy_sources(course):
    """Copy the kit's notebook and student files into source/<assignment>/ (the instructor version)."""
    if course.source.exists():
        shutil.rmtree(course.source)
    course.source.mkdir(parents=True)
    shutil.copy2(KIT / f"{NOTEBOOK}.ipynb", course.notebook(course.source))
    for name in STUDENT_FILES:
        dest = course.source / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(KIT / name, dest)


def open_api(course, config=None):
    """nbgrader's Python API on this course, with its nbgrader_config.py (and overrides) applied."""
    import logging

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    merged = course.load_config()
    merged.merge(config or Config())
    merged.CourseDirectory.root = str(course.root)
    merged.NbGraderAPI.log_level = logging.WARNING
    if "root" not in merged.Exchange:  # nbgrader's default exchange is a system folder it cannot write
        merged.Exchange.root = str(course.root / "exchange")
    coursedir = CourseDirectory(config=merged)
    return NbGraderAPI(coursedir=coursedir, config=merged)


# nbgrader's own closing lines say nothing about the cause.
GENERIC = ("Please see the the above traceback", "Please see the above traceback", "There was an error processing")


def failure_line(result):
    """The one line of an nbgrader API result that says why it failed: the exception at the end
    of the traceback, else the last specific [ERROR] line of the log."""
    error = [line.strip() for line in (result.get("error") or "").splitlines() if line.strip()]
    log = [line.strip() for line in (result.get("log") or "").splitlines() if line.strip()]
    exceptions = [line for line in error + log if re.match(r"^[\w.]+(Error|Exception|Exit): ", line)]
    errors = [line for line in log if line.startswith(("[ERROR]", "[CRITICAL]"))
              and not any(generic in line for generic in GENERIC)]
    return (exceptions or errors or error or log or ["unknown nbgrader error"])[-1][:300]
