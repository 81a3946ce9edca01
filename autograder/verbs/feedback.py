"""`feedback`: per-student HTML feedback -- every test's verdict line and the scores that count,
never hidden tests, hidden inputs or anything the grading run produced.

nbgrader renders it (GenerateFeedback), with the kit's TrustedFeedback preprocessor first: the page is
built from the student's submitted notebook, the release version of the locked cells, the grader's
verdict per test cell and the gradebook's scores (autograder/feedback_page.py says why each is
trusted). `feedback/<student>/<assignment>/` then holds the HTML only. As defence in depth every page
is scanned for hidden-test lines, in the encodings a student's code could produce, before anyone can
hand it out: a page that shows one is deleted, and the TA is told in one line.
"""
import base64
import html
import re
import shutil
import urllib.parse

from traitlets.config import Config

from autograder.course import Course, failure_line, open_api
from autograder.grading.feedback_page import clear_folder
from autograder.notebook import hidden_lines
from autograder.testcells import read_notebook

# How nbgrader's GenerateFeedback must be configured for trusted pages. The course's nbgrader_config.py
# says the same (so `nbgrader generate_feedback` and the formgrader agree); the kit's verb passes it
# explicitly too, so a course released with an older config still gets trusted pages.
PREPROCESSORS = [
    "autograder.grading.feedback_page.TrustedFeedback",
    "nbgrader.preprocessors.GetGrades",
    "autograder.grading.feedback_page.PendingFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
FILTERS = {"markdown2html": "autograder.grading.feedback_page.markdown2html"}


def feedback_config():
    config = Config()
    config.GenerateFeedback.preprocessors = list(PREPROCESSORS)
    config.HTMLExporter.filters = dict(FILTERS)
    return config


def secret_lines(source_nb, public_texts=()):
    """The hidden-test lines a student has no other way to see: `hidden_lines` minus every line that
    also occurs in the release version of the notebook (a visible test may share a line with a hidden
    one) or in `public_texts` (files handed out with it, e.g. helpers.py)."""
    from autograder.grading.feedback_page import release_cells
    public = _collapse("\n".join([cell.source for cell in release_cells(source_nb, every_cell=True)]
                                  + list(public_texts)))
    return {line for line in hidden_lines(source_nb) if _collapse(line) not in public}


def course_secrets(course):
    """secret_lines of the assignment's source notebook, with the text of the Python files handed
    out with it (helpers.py) as public."""
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in sorted(course.source.rglob("*.py"))
             if path.is_file() and not path.is_symlink()]
    return secret_lines(read_notebook(course.notebook(course.source)), texts)


def _collapse(text):
    return " ".join(text.split())


def _readable_forms(text):
    """The page's text as a reader (or a decoder) would see it: as is, with HTML entities decoded
    (twice: escaped twice is still readable after one copy-paste), without tags (syntax highlighting
    splits a line into spans), and URL-decoded. Whitespace collapsed."""
    # Embedded images are base64 (checked as such in leaked_lines); as text they only cost time.
    text = IMAGE_DATA.sub("data:", text)
    forms = []
    for base in (text, re.sub(r"<[^>]*>", "", text)):
        plain = html.unescape(html.unescape(base))
        forms += [base, plain, urllib.parse.unquote(plain), urllib.parse.unquote_plus(plain)]
    return list(dict.fromkeys(_collapse(form) for form in forms))  # distinct, in order


IMAGE_DATA = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=\s]*")


URLSAFE = str.maketrans("+/", "-_")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]*")


def _base64_cores(line):
    """Substrings that base64 of any text containing `line` must contain, one for each of the 3
    byte alignments: the first and last 4-character groups also depend on neighbouring bytes, so
    they are dropped; a core always starts on a group boundary."""
    cores = []
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + line.encode()).decode()
        core = encoded[4 if pad else 0: len(encoded) - 4]
        if len(core) >= 12:
            cores.append(core)
    return cores


def _in_base64(line, compact):
    """Whether `compact` (text without whitespace) holds base64, standard or URL-safe, of text that
    contains `line`. A core found is only a candidate: the groups around it are decoded and must
    hold the whole line (a line that shares all but its last bytes with it is not it)."""
    data = line.encode()
    for core in _base64_cores(line):
        for form, altchars in ((core, None), (core.translate(URLSAFE), b"-_")):
            start = compact.find(form)
            while start != -1:
                before = compact[max(0, start - 4):start]
                lo = start - len(before) if len(before) == 4 and BASE64_RUN.fullmatch(before) else start
                chunk = BASE64_RUN.match(compact, lo, start + len(form) + 8).group()
                chunk = chunk[: len(chunk) // 4 * 4]
                try:
                    if data in base64.b64decode(chunk, altchars=altchars):
                        return True
                except ValueError:  # binascii.Error: '=' inside the chunk, not base64 after all
                    pass
                start = compact.find(form, start + 1)
    return False


def leaked_lines(text, secrets):
    """The secret lines `text` shows, in any of the encodings above (sorted)."""
    forms = _readable_forms(text)
    compact = re.sub(r"\s+", "", text)  # base64 may be wrapped over lines
    leaked = []
    for line in secrets:
        wanted = _collapse(line)
        if any(wanted in form for form in forms) or _in_base64(line, compact):
            leaked.append(line)
    return sorted(leaked)


def feedback(course=None, students=None, echo=print):
    """Generate feedback for graded students; returns {student: html path or None}."""
    course = course or Course()
    course.require_release()
    graded = sorted(p.parent.name for p in (course.root / "autograded").glob(f"*/{course.assignment}")) \
        if (course.root / "autograded").is_dir() else []
    made = {}
    for student in students or []:
        if student not in graded:  # asked for by name: say why there is nothing, rather than nothing
            echo(f"{student}: no feedback: not graded; run `python -m autograder grade --student {student}` first")
            made[student] = None
    students = [s for s in (students or graded) if s in graded]
    if not students:
        if not made:
            echo("no graded submissions: run `python -m autograder grade` first")
        return made
    secrets = course_secrets(course)
    api = open_api(course, feedback_config())
    for student in students:
        result = api.generate_feedback(course.assignment, student)
        folder = course.feedback(student)
        page = folder / f"{course.notebook_name}.html"
        # TrustedFeedback already emptied the folder before the page was written; this makes sure,
        # whatever nbgrader version or config wrote it.
        clear_folder(folder, keep=page.name)
        if not result["success"] or not page.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # an older page must not look current
            echo(f"{student}: no feedback: {failure_line(result)}")
            made[student] = None
            continue
        leaks = leaked_lines(page.read_text(encoding="utf-8"), secrets)
        if leaks:
            page.unlink()
            count = f"{len(leaks)} hidden-test line" + ("s" if len(leaks) > 1 else "")
            echo(f"{student}: feedback withheld: the page showed {count} (e.g. {leaks[0][:60]!r}); nothing handed out")
            made[student] = None
            continue
        made[student] = page
        echo(f"{student}: {page}")
    return made


HELP = "per-student HTML feedback, hidden tests removed"


def add_arguments(parser):
    parser.add_argument("--student", action="append", metavar="ID")


def run(course, args):
    feedback(course, args.student)
