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
# The kit's own assignment: what every verb works on unless given --assignment NAME.
ASSIGNMENT = "backprop"
# Its source, as `release` copies it from the kit's top level: the notebook and what a student
# receives besides it. Any other assignment's source is a folder given to `release --from DIR`.
KIT_NOTEBOOK = "assignment.ipynb"
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
    "autograder.grading.manual.KeepManualGrades",  # SaveAutoGrades that keeps a TA's grades (manual.py)
    "autograder.grading.pipeline.SaveVerdictComments",
    "autograder.grading.markscheme.ShowMarkScheme",  # the mark scheme under each written answer, for formgrader
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# nbgrader scores any stderr in a test cell as a failure; a warning from correct code must not cost points.
c.IgnorePattern.pattern = r":\\d+: (RuntimeWarning|DeprecationWarning|FutureWarning|PendingDeprecationWarning): "
c.LimitOutput.max_lines = 200

# Late submissions (autograder.grading.late.LatePolicy): nbgrader's AssignLatePenalties asks this plugin
# for the penalty of a submission whose timestamp.txt is past the due date set with `python -m autograder
# deadline --due ...`, after the student's extension (deadlines.json). Without a due date nobody is late.
# per_hour / per_day / cap are fractions of the notebook's maximum score (unit = "points": points);
# "started": a started day counts whole. Past cutoff_hours the score is 0. None switches cap/cut-off off.
c.AssignLatePenalties.plugin_class = "autograder.grading.late.LatePolicy"
c.LatePolicy.unit = "fraction"
c.LatePolicy.per_hour = 0.0
c.LatePolicy.per_day = 0.1
c.LatePolicy.partial = "started"
c.LatePolicy.cap = 0.5
c.LatePolicy.cutoff_hours = 168
c.LatePolicy.grace_minutes = 0

# Feedback is built only from trusted data (autograder.grading.feedback_page): the student's submitted
# notebook, the release version of the locked cells, the grader's verdict line per test cell and the
# gradebook's scores -- never what the grading run printed or wrote. The feedback folder keeps the
# HTML only; student Markdown is sanitized (the markdown2html filter). Same as autograder.verbs.feedback.
c.GenerateFeedback.preprocessors = [
    "autograder.grading.feedback_page.TrustedFeedback",
    "nbgrader.preprocessors.GetGrades",
    "autograder.grading.feedback_page.PendingFeedback",  # an answer awaiting a TA reads "awaiting grading"
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
c.HTMLExporter.filters = {{"markdown2html": "autograder.grading.feedback_page.markdown2html"}}
c.HTMLExporter.sanitize_html = True  # nbconvert's own sanitizer too, for every page rendered here

# Collecting from nbgrader's exchange (`collect --exchange`, `nbgrader collect`, formgrader's button):
# the kit's intake checks (no links, no special files, size limit, reserved ids) and a submission time
# the student cannot set (autograder.term.exchange says why nbgrader's own timestamp.txt is not used).
c.ExchangeFactory.collect = "autograder.term.exchange.KitExchangeCollect"

# `nbgrader export` writes its own CSV (all assignments, nbgrader's columns) beside the kit's
# grades.csv, not over it.
c.CsvExportPlugin.to = "nbgrader_grades.csv"
'''

# The gradebook's database when it is not nbgrader's default SQLite file (`release --db URL`).
DB_TEMPLATE = '''
# The gradebook (nbgrader's key: every verb, `nbgrader` command and formgrader use this database).
c.CourseDirectory.db_url = {db_url!r}
'''


class Course:
    """Paths of one assignment in a course directory (default `course/` beside the kit).

    A course holds any number of nbgrader assignments (source/<name>/, one notebook each); a Course
    object is the course seen through one of them, `assignment`. Not nbgrader's
    CourseDirectory.format_path: these paths are needed before a course (and its config) exists,
    and the kit writes the course's config itself, with nbgrader's default folder names, so both
    name the same folders.
    """

    def __init__(self, root=None, assignment=None):
        self.root = Path(root or KIT / "course").resolve()
        self.assignment = assignment or ASSIGNMENT
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", self.assignment) or ".." in self.assignment:
            raise CourseError(f"{self.assignment!r} is not an assignment name: letters, digits, '-', '_' and '.'")

    def with_assignment(self, assignment):
        """The same course seen through another of its assignments."""
        return Course(self.root, assignment)

    def assignments(self):
        """Every assignment of the course with a source notebook, sorted."""
        base = self.root / "source"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.ipynb")))

    @property
    def notebook_name(self):
        """The stem of the assignment's one notebook (nbgrader's notebook id), from its source."""
        if self.assignment == ASSIGNMENT and not self.source.is_dir():
            return Path(KIT_NOTEBOOK).stem
        found = sorted(p.stem for p in self.source.glob("*.ipynb")) if self.source.is_dir() else []
        if len(found) != 1:
            raise CourseError(f"assignment '{self.assignment}' must have exactly one notebook in {self.source}, "
                              f"found {len(found)}" + ("" if found else ": release it first"))
        return found[0]

    @property
    def config_file(self):
        return self.root / "nbgrader_config.py"

    @property
    def gradebook(self):
        return self.root / "gradebook.db"

    @property
    def db_url(self):
        """The gradebook's database: the course config's CourseDirectory.db_url (`release --db URL`,
        e.g. PostgreSQL), else nbgrader's default, gradebook.db in the course root."""
        from autograder.gradebook_db import configured_db_url
        return configured_db_url(self.load_config()) or f"sqlite:///{self.gradebook}"

    @property
    def source(self):
        return self.root / "source" / self.assignment

    @property
    def release(self):
        return self.root / "release" / self.assignment

    def submitted(self, student):
        return self.root / "submitted" / student / self.assignment

    def autograded(self, student):
        return self.root / "autograded" / student / self.assignment

    def feedback(self, student):
        return self.root / "feedback" / student / self.assignment

    def notebook(self, folder):
        return folder / f"{self.notebook_name}.ipynb"

    def submitted_students(self):
        """Students with a submitted notebook, sorted."""
        base = self.root / "submitted"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if self.notebook(p / self.assignment).is_file())

    def load_config(self):
        """The course's nbgrader_config.py as a traitlets Config (empty if not released yet)."""
        if not self.config_file.is_file():
            return Config()
        return PyFileConfigLoader(self.config_file.name, path=str(self.root)).load_config()

    def require_release(self):
        from autograder.gradebook_db import check_driver, sqlite_path
        sqlite_file = sqlite_path(self.db_url) if self.config_file.is_file() else None
        if not self.config_file.is_file() or (sqlite_file is not None and not sqlite_file.is_file()):
            raise CourseError(f"{self.root} is not a released course: run `python -m autograder release` first")
        if sqlite_file is None:
            check_driver(self.db_url, self.config_file.name)
        if not self.source.is_dir():
            known = ", ".join(self.assignments()) or "none"
            source = "" if self.assignment == ASSIGNMENT else " --from DIR"
            raise CourseError(f"'{self.assignment}' is not an assignment of {self.root} (it has: {known}): run "
                              f"`python -m autograder release --assignment {self.assignment}{source}` first")


RESERVED_NAMES = frozenset({
    # the course root (the kit's files and nbgrader's)
    "gradebook.db", "nbgrader_config.py", "nbgrader_config.json", "grading_status.json", "graded_answers.json",
    "grades.csv", "grades.json", "nbgrader_grades.csv", "reports", "exports", "exchange", "deadlines.json",
    "lms_roster.json",
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


def write_config(course, *, sandbox=True, cell_timeout=None, submission_timeout=None, db_url=None):
    """The course's nbgrader_config.py; a limit left None is GradingExecute's default, a db_url left
    None nbgrader's default gradebook (gradebook.db in the course root)."""
    from autograder.grading.execute import GradingExecute
    defaults = GradingExecute.class_traits()
    if cell_timeout is None:
        cell_timeout = defaults["timeout"].default_value
    if submission_timeout is None:
        submission_timeout = defaults["submission_timeout"].default_value
    course.root.mkdir(parents=True, exist_ok=True)
    from autograder.gradebook_db import has_password
    if db_url and has_password(db_url):  # the password goes into the file: readable by its owner only
        course.config_file.touch()
        course.config_file.chmod(0o600)
    course.config_file.write_text(CONFIG_TEMPLATE.format(
        sandbox=bool(sandbox), cell_timeout=int(cell_timeout),
        submission_timeout=int(submission_timeout)) + DB_TEMPLATE.format(db_url=db_url) * bool(db_url))


def copy_sources(course, from_dir=None):
    """Fill source/<assignment>/ (the instructor version): from `from_dir` (a folder with one
    notebook and the files students receive), from the kit for its own assignment, or else keep
    what is there (a source edited in place)."""
    if from_dir is None and course.assignment != ASSIGNMENT:
        if not course.source.is_dir():
            raise CourseError(f"assignment '{course.assignment}' has no source yet: give its folder "
                              f"(one notebook and the files students receive) with --from DIR")
        return
    if from_dir is not None:
        from_dir = Path(from_dir)
        notebooks = sorted(from_dir.glob("*.ipynb")) if from_dir.is_dir() else []
        if len(notebooks) != 1:
            raise CourseError(f"{from_dir} must be a folder with exactly one notebook (found {len(notebooks)})")
    staged = course.source.with_name(f".{course.assignment}.incoming")
    shutil.rmtree(staged, ignore_errors=True)
    if from_dir is not None:
        shutil.copytree(from_dir, staged, symlinks=False,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc"))
    else:
        staged.mkdir(parents=True)
        shutil.copy2(KIT / KIT_NOTEBOOK, staged / KIT_NOTEBOOK)
        for name in STUDENT_FILES:
            dest = staged / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(KIT / name, dest)
    shutil.rmtree(course.source, ignore_errors=True)
    staged.rename(course.source)


def coursedir_of(preprocessor):
    """The CourseDirectory an nbgrader preprocessor runs in, or None: nbgrader builds preprocessors
    with the exporter as parent, and the exporter with the converter (which knows the course's
    folders) as parent."""
    node = preprocessor
    while node is not None:
        if getattr(node, "coursedir", None) is not None:
            return node.coursedir
        node = getattr(node, "parent", None)
    return None


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
