"""`feedback`: per-student HTML feedback — every test's name, points and message, never hidden tests.

nbgrader renders it (GenerateFeedback, with the course's preprocessors: ClearHiddenTests and
RedactTestOutput). Every file is then scanned for hidden-test lines before anyone can hand it out:
a file that leaks is deleted, and the TA is told.
"""
from .course import ASSIGNMENT, NOTEBOOK, Course, failure_line, open_api
from .testcells import read_notebook

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def hidden_lines(source_nb):
    """Every distinctive line inside a hidden-test block of the source notebook."""
    lines = set()
    for cell in source_nb.cells:
        inside = False
        for line in cell.source.splitlines():
            if BEGIN in line:
                inside = True
            elif END in line:
                inside = False
            elif inside and len(line.strip()) >= 12:  # short lines ("else:", "break") prove nothing
                lines.add(line.strip())
    return lines


def leaked_lines(text, secrets):
    import html
    plain = html.unescape(text)
    return sorted(line for line in secrets if line in plain or html.escape(line) in text)


def feedback(course=None, students=None, echo=print):
    """Generate feedback for graded students; returns {student: html path or None}."""
    course = course or Course()
    course.require_release()
    graded = sorted(p.parent.name for p in (course.root / "autograded").glob(f"*/{ASSIGNMENT}")) \
        if (course.root / "autograded").is_dir() else []
    students = [s for s in (students or graded) if s in graded]
    if not students:
        echo("no graded submissions: run `python -m autograder grade` first")
        return {}
    secrets = hidden_lines(read_notebook(course.notebook(course.source)))
    api = open_api(course)
    made = {}
    for student in students:
        result = api.generate_feedback(ASSIGNMENT, student)
        page = course.feedback(student) / f"{NOTEBOOK}.html"
        if not result["success"] or not page.is_file():
            echo(f"{student}: no feedback: {failure_line(result)}")
            made[student] = None
            continue
        leaks = leaked_lines(page.read_text(encoding="utf-8"), secrets)
        if leaks:
            page.unlink()
            echo(f"{student}: feedback withheld: it showed {len(leaks)} hidden-test lines (e.g. {leaks[0][:60]!r})")
            made[student] = None
            continue
        made[student] = page
        echo(f"{student}: {page}")
    return made
