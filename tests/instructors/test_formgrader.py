"""A TA grades written answers in nbgrader's real formgrader, in a browser: a released course with two
students graded by the kit, `jupyter server` with the formgrader on 127.0.0.1 in the course folder,
Playwright driving Debian's chromium (as tests/students/test_browser.py does).

The TA opens the formgrader (the assignment reads "released"), Manage Submissions (students have
readable names, not "None, None"), one submission (each written answer has its mark scheme under it),
enters points and a comment for the three written answers; `export` and `report` then show those
exact points, the other student's answers read "pending". A re-grade with the kit's `grade` keeps the
points and the comment and leaves the graded student out of formgrader's queue; a resubmitted answer
goes back to the queue. Screenshots: tests/artifacts/formgrader/ (git-ignored).
"""
import csv
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from support import sandbox_ok, stop_server

from autograder.course import Course
from autograder.testcells import grade_id, read_notebook
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.collect import collect
from autograder.verbs.export import export
from autograder.verbs.feedback import feedback
from autograder.verbs.grade import grade
from autograder.verbs.release import release
from autograder.verbs.report import report

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "formgrader"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions"]
SERVER_START = 90  # s: jupyter server importing nbgrader on two busy cores
PAGE = 60_000      # ms: a formgrader page and its API calls

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (requirements.txt; `make test` installs it)")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: Debian's chromium drives this test (`make browser-deps` as root installs it)")

TA = "ada"       # the student the TA grades (correct code)
OTHER = "alan"   # left ungraded (dZ lacks 1/n: loses test_sce_grad and test_gradients)
AUTO = {TA: 22, OTHER: 15}
WRITTEN = ("derivation", "reflection_curves", "reflection_speed")
MARKS = {"derivation": "3", "reflection_curves": "2", "reflection_speed": "1.5"}
COMMENT = "(c): the ReLU mask is used but never defined. -1"
quiet = lambda *args, **kwargs: None  # noqa: E731


def _answers(student):
    return {"derivation": f"{student}'s derivation: dL/dz = p - onehot(y); dW2 = A1^T dZ2 + 2cW2 ...",
            "reflection_curves": f"{student}: the best validation epoch; the gap is overfitting.",
            "reflection_speed": f"{student}: about 40 times faster: one BLAS product instead of a loop."}


def _submission(course, variant, answers):
    nb = make_submission(read_notebook(course.notebook(course.release)),
                         read_notebook(course.notebook(course.source)), VARIANTS[variant])
    for cell in nb.cells:
        if cell.cell_type == "markdown" and grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def _hand_in(course, folder, submissions):
    """Collect {student: notebook} as a class's folder of submissions."""
    for student, nb in submissions.items():
        (folder / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(folder / student / "assignment.ipynb"))
    lines = collect(folder, course, echo=quiet)
    assert all(lines[s] == "collected" or lines[s].startswith("collected") for s in submissions), lines


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A released course; ada (correct) and alan (a backprop bug) hand in answered notebooks, the kit grades."""
    root = tmp_path_factory.mktemp("formgrader")
    course = Course(root / "course")
    release(course, echo=quiet)
    _hand_in(course, root / "class", {TA: _submission(course, "perfect", _answers(TA)),
                                      OTHER: _submission(course, "dz_missing_1_over_n", _answers(OTHER))})
    outcomes = grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=quiet)
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    return course


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log, lines=30):
    return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def formgrader(course, tmp_path_factory):
    """`jupyter server` in the course folder (formgrader reads nbgrader_config.py there), token-less on
    127.0.0.1, with a private Jupyter config and the venv's nbgrader extensions. Yields the base URL;
    skips (saying why) when the server or the formgrader does not come up."""
    home = tmp_path_factory.mktemp("jupyter")
    for sub in ("config", "data", "runtime"):
        (home / sub).mkdir()
    env = dict(os.environ, MNIST_OFFLINE="1", JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    port = _free_port()
    log = home / "server.log"
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token="]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        server = subprocess.Popen(cmd, cwd=course.root, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START
        while True:
            if server.poll() is not None:
                pytest.skip(f"jupyter server exited with {server.returncode}:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/formgrader/api/assignments", timeout=10) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.skip(f"the formgrader did not answer on {base} in {SERVER_START} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield base
    finally:
        stop_server(server)


def _grades(course, student):
    """{grade_id: (manual_score, needs_manual_grade, manual_comment)} from the gradebook."""
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        nb = gb.find_submission_notebook(course.notebook_name, course.assignment, student)
        comments = {c.name: c.manual_comment for c in nb.comments}
        return {g.name: (g.manual_score, bool(g.needs_manual_grade), comments.get(g.name)) for g in nb.grades}


def _wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds} s")
        time.sleep(0.3)


def _csv(course):
    with open(course.root / "exports" / course.assignment / "grades.csv", newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def graded_by_ta(course, formgrader):
    """The TA's session in chromium; returns the texts the pages showed."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()  # an earlier run's screenshots would pass for this run's
    seen, console = {}, []
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as error:
            pytest.skip(f"chromium does not start here: {str(error).splitlines()[0]}")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(PAGE)
            page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))

            # 1. The formgrader's first page: Manage Assignments.
            page.goto(f"{formgrader}/formgrader")
            row = page.locator("tr", has=page.locator(f"a[href$='/manage_submissions/{course.assignment}']"))
            row.wait_for()
            seen["status"] = row.locator("td.status").inner_text().strip()
            page.screenshot(path=ARTIFACTS / "1-manage-assignments.png")

            # 2. Manage Submissions of the assignment: one row per student.
            row.locator(f"a[href$='/manage_submissions/{course.assignment}']").click()
            page.locator(f"a[href*='/manage_students/{TA}/']").wait_for()
            page.locator(f"a[href*='/manage_students/{OTHER}/']").wait_for()
            seen["names"] = {s: page.locator(f"a[href*='/manage_students/{s}/']").inner_text().strip()
                             for s in (TA, OTHER)}
            page.screenshot(path=ARTIFACTS / "2-manage-submissions.png")

            # 3. The TA's student, then the notebook: formgrader's grading view of the submission.
            page.locator(f"a[href*='/manage_students/{TA}/']").click()
            page.locator("a[href*='/formgrader/submissions/']").first.click()
            page.locator("input.score#derivation").wait_for()
            seen["scheme_text"] = page.locator("body").inner_text()
            seen["schemes"] = {gid: seen["scheme_text"].count(f"Mark scheme for {gid}") for gid in WRITTEN}
            page.get_by_text("Mark scheme for derivation").first.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "3-grading-view-mark-scheme.png")

            # 4. Points for each written answer and a comment on the derivation; formgrader saves a
            #    field when it changes (the Tab moves the focus away).
            for gid, points in MARKS.items():
                page.locator(f"input.score#{gid}").fill(points)
                page.keyboard.press("Tab")
            page.locator("textarea#derivation-comment").fill(COMMENT)
            page.keyboard.press("Tab")
            _wait_for(lambda: all(_grades(course, TA)[g][0] == float(p) for g, p in MARKS.items())
                      and _grades(course, TA)["derivation"][2] == COMMENT, 30, "formgrader did not save the grades")
            page.locator("input.score#derivation").scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "4-graded.png")
        finally:
            (ARTIFACTS / "console-errors.txt").write_text("\n".join(console) + "\n" if console else "")
            browser.close()
    return seen


def test_formgrader_shows_the_released_assignment_as_released(graded_by_ta):
    assert graded_by_ta["status"] == "released"


def test_formgrader_shows_readable_names_not_none_none(graded_by_ta):
    for student, name in graded_by_ta["names"].items():
        assert "None" not in name and name.startswith(student), name


def test_the_grading_view_shows_each_mark_scheme_once(graded_by_ta):
    assert graded_by_ta["schemes"] == {gid: 1 for gid in WRITTEN}
    # the source notebook's guidance, word for word
    assert "deduct the point for a missing factor" in graded_by_ta["scheme_text"]
    assert "1 pt: the measured factor from their own run." in graded_by_ta["scheme_text"]


def test_export_and_report_show_the_manual_points_and_pending(course, graded_by_ta):
    export(course, echo=quiet)
    rows = _csv(course)
    ta, other = rows[TA], rows[OTHER]
    assert {gid: ta[gid] for gid in WRITTEN} == MARKS
    assert ta["score"] == "28.5" and ta["pending"] == ""                     # 22 + 3 + 2 + 1.5
    assert {gid: other[gid] for gid in WRITTEN} == {gid: "" for gid in WRITTEN}  # pending, not 0
    assert other["score"] == "15" and other["pending"] == " ".join(WRITTEN)

    out = report(course, echo=quiet)
    table, written = (out / "grades.txt").read_text().split("\n\n")
    lines = {line.split()[0]: line.split() for line in table.splitlines()}
    assert lines[TA][1:3] == ["28.5/30", "final"] and lines[TA][-4:-1] == ["3", "2", "1.5"]  # late: empty
    assert lines[OTHER][1:3] == ["15/30", "provisional"] and lines[OTHER][-4:-1] == ["pending"] * 3
    assert [line.split() for line in written.splitlines()[1:]] == [
        ["derivation", "4", "1", "1", "3.00"], ["reflection_curves", "2", "1", "1", "2.00"],
        ["reflection_speed", "2", "1", "1", "1.50"]]


def test_feedback_shows_the_comment_and_awaiting_grading(course, graded_by_ta):
    pages = feedback(course, echo=quiet)
    ta, other = pages[TA].read_text(), pages[OTHER].read_text()
    assert "ReLU mask is used but never defined" in ta and "Awaiting grading" not in ta
    assert "<h4>assignment (Score: 28.5 / 30.0)</h4>" in ta
    assert other.count("Awaiting grading.") == 3
    assert "<h4>assignment: provisional, 3 answers awaiting grading (Score: 15.0 / 30.0)</h4>" in other
    assert "Mark scheme" not in ta and "Mark scheme" not in other  # the guidance is the TA's only


def test_a_regrade_keeps_the_manual_grades_out_of_the_queue(course, formgrader, graded_by_ta):
    outcomes = grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=quiet)
    assert all(o.ok for o in outcomes)
    grades = _grades(course, TA)
    assert {gid: grades[gid][:2] for gid in WRITTEN} == {gid: (float(p), False) for gid, p in MARKS.items()}
    assert grades["derivation"][2] == COMMENT
    assert all(_grades(course, OTHER)[gid][1] for gid in WRITTEN)  # still in the queue, ungraded

    # formgrader's own list of submissions: the graded student needs no manual grading
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 700})
            page.set_default_timeout(PAGE)
            page.goto(f"{formgrader}/formgrader/gradebook/{course.assignment}/{course.notebook_name}")
            flags = {}
            for student in (TA, OTHER):
                row = page.locator("tr", has=page.locator("a.name-shown", has_text=student))
                row.wait_for()
                flags[student] = row.locator("td.needs-manual-grade").get_attribute("data-search")
            page.screenshot(path=ARTIFACTS / "5-after-regrade-queue.png")
        finally:
            browser.close()
    assert flags == {TA: "", OTHER: "needs manual grade"}
    export(course, echo=quiet)
    assert _csv(course)[TA]["score"] == "28.5"


def _nbgrader(course, *args):
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course.root, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_plain_nbgrader_autograde_keeps_them_too_and_generate_feedback_force_shows_them(course, graded_by_ta):
    """The same rule when nbgrader's own autograde re-grades (formgrader's Autograde button runs it),
    and the README's `nbgrader generate_feedback ... --force` rebuilds the page with the TA's marks."""
    if not sandbox_ok():
        pytest.skip("the course's config sandboxes kernels and bubblewrap is missing")
    _nbgrader(course, "autograde", course.assignment, "--student", TA, "--force")
    grades = _grades(course, TA)
    assert {gid: grades[gid][:2] for gid in WRITTEN} == {gid: (float(p), False) for gid, p in MARKS.items()}
    assert grades["derivation"][2] == COMMENT
    _nbgrader(course, "generate_feedback", course.assignment, "--student", TA, "--force")
    page = (course.feedback(TA) / f"{course.notebook_name}.html").read_text()
    assert "ReLU mask is used but never defined" in page and "<h4>assignment (Score: 28.5 / 30.0)</h4>" in page


def test_a_changed_answer_goes_back_to_the_queue(course, graded_by_ta, tmp_path):
    """ada hands in again with another derivation: that mark belonged to other text, so it is
    cleared (the comment stays for the TA); her unchanged reflections keep their marks."""
    answers = dict(_answers(TA), derivation="A new derivation, written after the deadline.")
    _hand_in(course, tmp_path / "again", {TA: _submission(course, "perfect", answers)})
    [outcome] = grade(course, [TA], workers=1, sandbox=sandbox_ok(), progress=False, echo=quiet)
    assert outcome.ok
    grades = _grades(course, TA)
    assert grades["derivation"] == (None, True, COMMENT)
    assert grades["reflection_curves"][:2] == (2.0, False) and grades["reflection_speed"][:2] == (1.5, False)
    export(course, echo=quiet)
    row = _csv(course)[TA]
    assert row["derivation"] == "" and row["pending"] == "derivation" and row["score"] == "25.5"


def test_nbgrader_export_and_the_kits_export_keep_their_own_files(course, graded_by_ta):
    kit_csv, _ = export(course, echo=quiet)
    ours = kit_csv.read_text()
    _nbgrader(course, "export")
    theirs = (course.root / "nbgrader_grades.csv").read_text()
    assert kit_csv == course.root / "exports" / course.assignment / "grades.csv"
    assert kit_csv.read_text() == ours and theirs.startswith("assignment,duedate,timestamp,student_id")
    assert (course.root / "grades.csv").read_text() == ours  # the contract's path: the kit's assignment
