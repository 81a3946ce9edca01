"""The instructor's workflow end to end on the bundled sample class: release → collect (a folder
and an LMS zip) → grade → feedback → export → report, then re-grades and plain nbgrader."""
import csv
import html
import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from support import sandbox_ok

from autograder.course import Course
from autograder.samples.demo import SAMPLE_CLASS, write_sample_class
from autograder.verbs.collect import collect
from autograder.verbs.export import export
from autograder.verbs.feedback import course_secrets, feedback, leaked_lines
from autograder.verbs.grade import grade
from autograder.verbs.release import release
from autograder.verbs.report import report

POINTS = {"test_softmax": 2, "test_one_hot": 1, "test_sce_loss": 2, "test_sce_grad": 3, "test_relu": 1,
          "test_forward": 2, "test_loss_value": 2, "test_gradients": 4, "test_weight_decay": 2,
          "test_predict": 1, "test_train": 2}
# Cells each sample student must lose, worked out from what they submitted (autograder/variants.py):
# alan's dZ lacks 1/n, so his own loss_and_grad disagrees with finite differences of his own loss in
# the visible gradient test too; every other bug stays in the cell that owns it.
LOST = {
    "ada": set(), "grace": set(), "margaret": set(),  # margaret: grace's code disguised (demo.COPIES), same points
    "alan": {"test_sce_grad", "test_gradients"},
    "edsger": {"test_weight_decay"},
    "barbara": {"test_gradients"},
    "donald": {"test_softmax"},
    "ken": {"test_softmax"},
    "linus": set(POINTS),
}
MANUAL = ("derivation", "reflection_curves", "reflection_speed")
quiet = lambda *args, **kwargs: None  # noqa: E731


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("pipeline") / "course")
    release(course, echo=quiet)
    folders, zip_path = write_sample_class(course, course.root.parent / "sample_class")
    lines = {**collect(folders, course, echo=quiet), **collect(zip_path, course, echo=quiet)}
    outcomes = grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=quiet)
    pages = feedback(course, echo=quiet)
    export(course, echo=quiet)
    report(course, echo=quiet)
    return course, lines, outcomes, pages


def _csv(course):
    with open(course.root / "exports" / course.assignment / "grades.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_collect_took_every_student_from_folder_and_zip(graded_class):
    _, lines, _, _ = graded_class
    for student in SAMPLE_CLASS:
        assert lines[student].startswith("collected from"), (student, lines[student])


def test_grades_csv_has_the_contract_columns_and_exact_scores(graded_class):
    course, _, _, _ = graded_class
    rows = _csv(course)
    assert list(rows[0])[:18] == ["student_id", "score", "max_score", "derivation", *POINTS, "reflection_curves",
                                  "reflection_speed", "pending"]
    assert sorted(row["student_id"] for row in rows) == sorted(SAMPLE_CLASS)
    for row in rows:
        lost = LOST[row["student_id"]]
        expected = {cell: 0 if cell in lost else points for cell, points in POINTS.items()}
        got = {cell: float(row[cell]) for cell in POINTS}
        assert got == expected, row["student_id"]
        assert float(row["score"]) == sum(expected.values())  # provisional: the written answers await a TA
        assert float(row["max_score"]) == 30
        if row["student_id"] == "linus":  # handed the release back: nbgrader marks a blank answer 0 itself
            assert all(row[cell] == "0" for cell in MANUAL) and row["pending"] == ""
        else:
            assert all(row[cell] == "" for cell in MANUAL)  # pending, not 0
            assert row["pending"] == "derivation reflection_curves reflection_speed"


def test_grades_json_has_per_cell_detail_and_status(graded_class):
    course, _, outcomes, _ = graded_class
    records = json.loads((course.root / "exports" / course.assignment / "grades.json").read_text())["students"]
    assert records["alan"]["cells"]["test_sce_grad"] == {
        "score": 0.0, "max_score": 3.0, "kind": "auto", "needs_manual_grade": False, "pending": False,
        "status": "failed", "in_kernel": "failed"}
    assert records["ada"]["cells"]["derivation"]["needs_manual_grade"] is True
    assert records["ada"]["cells"]["derivation"]["pending"] is True
    assert records["ada"]["cells"]["derivation"]["score"] is None
    assert records["ada"]["pending"] == list(MANUAL) and records["ada"]["provisional"] is True
    assert {r["status"] for r in records.values()} == {"graded"}
    assert all(outcome.ok and not outcome.tamper_cells for outcome in outcomes)


def test_feedback_names_each_test_with_its_message_and_hint(graded_class):
    course, _, _, pages = graded_class
    assert set(pages) == set(SAMPLE_CLASS) and all(pages.values())
    alan = pages["alan"].read_text()
    assert "test_sce_grad failed" in alan and "times too large" in alan
    assert "test_softmax passed" in alan
    linus = pages["linus"].read_text()
    assert "test_train failed: NotImplementedError" in linus
    for student, page in pages.items():  # the header's total is the gradebook's, provisional until marked
        total = sum(points for cell, points in POINTS.items() if cell not in LOST[student])
        text = page.read_text()
        pending = "" if student == "linus" else ": provisional, 3 answers awaiting grading"  # linus: blank answers
        assert f"<h4>assignment{pending} (Score: {float(total)} / 30.0)</h4>" in text, student
        assert text.count("Awaiting grading.") == (0 if student == "linus" else 3), student


def test_no_feedback_file_contains_a_hidden_test_line(graded_class):
    course, _, _, pages = graded_class
    secrets = course_secrets(course)
    assert len(secrets) > 50  # the scan looks for something real
    for student, page in pages.items():
        text = page.read_text()
        # through the markup too: syntax highlighting splits a code line into spans
        seen = html.unescape(re.sub(r"<[^>]*>", "", text))
        leaked = [line for line in secrets if line in seen]
        assert not leaked, f"{student}'s feedback shows hidden lines: {leaked[:3]}"
        assert leaked_lines(text, secrets) == []
        assert "BEGIN HIDDEN" not in text and "_grader_rng" not in text
        assert sorted(p.name for p in page.parent.iterdir()) == ["assignment.html"], student


def test_report_draws_both_plots_and_the_table(graded_class):
    course, _, _, _ = graded_class
    for name in ("grade_histogram.png", "test_pass_rates.png"):
        data = (course.root / "reports" / course.assignment / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    text = (course.root / "reports" / course.assignment / "grades.txt").read_text()
    table, written = text.split("\n\n")
    table = table.splitlines()
    assert table[0].split()[:3] == ["student", "score", "marking"] and len(table) == 1 + len(SAMPLE_CLASS)
    assert table[0].split()[-5:] == [*MANUAL, "late", "status"]
    alan = next(line for line in table if line.startswith("alan")).split()
    assert alan[1:3] == ["15/30", "provisional"] and alan[-4:-1] == ["pending"] * 3  # late column empty
    linus = next(line for line in table if line.startswith("linus")).split()
    assert linus[1:3] == ["0/30", "final"] and linus[-4:-1] == ["0"] * 3
    assert [line.split() for line in written.splitlines()] == [
        ["written", "answer", "points", "graded", "pending", "mean"],
        ["derivation", "4", "1", str(len(SAMPLE_CLASS) - 1), "0.00"],  # linus's blank answer: 0
        ["reflection_curves", "2", "1", str(len(SAMPLE_CLASS) - 1), "0.00"],
        ["reflection_speed", "2", "1", str(len(SAMPLE_CLASS) - 1), "0.00"]]


def test_regrading_one_student_is_idempotent(graded_class, tmp_path):
    course = Course(tmp_path / "copy")
    shutil.copytree(graded_class[0].root, course.root)
    before = _csv(graded_class[0])
    export(course, echo=quiet)
    outcomes = grade(course, ["alan"], workers=1, sandbox=sandbox_ok(), progress=False, echo=quiet)
    export(course, echo=quiet)
    assert [o.student for o in outcomes] == ["alan"]
    assert _csv(course) == before


def _seed(course, student):
    return json.loads(course.notebook(course.autograded(student)).read_text())["metadata"]["autograder"]["seed"]


def test_a_changed_resubmission_draws_new_hidden_inputs(graded_class, tmp_path):
    """The same student hands in again with one harmless cell more: the seed of the hidden inputs
    follows the notebook's content, so inputs recorded during the first grading are worth nothing."""
    course = Course(tmp_path / "copy")
    shutil.copytree(graded_class[0].root, course.root)
    first = _seed(course, "alan")
    nb = nbformat.read(str(course.notebook(course.submitted("alan"))), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("# checked my answers again"))
    (tmp_path / "again" / "alan").mkdir(parents=True)
    nbformat.write(nb, str(tmp_path / "again" / "alan" / "assignment.ipynb"))
    assert collect(tmp_path / "again", course, echo=quiet)["alan"] == "collected"
    [outcome] = grade(course, ["alan"], workers=1, sandbox=sandbox_ok(), progress=False, echo=quiet)
    assert outcome.ok and sum(outcome.scores.values()) == 15  # the extra cell changes no verdict
    assert _seed(course, "alan") != first


def test_a_failed_regrade_leaves_no_stale_score(graded_class, tmp_path):
    course = Course(tmp_path / "copy")
    shutil.copytree(graded_class[0].root, course.root)
    broken = tmp_path / "resubmitted" / "alan"
    broken.mkdir(parents=True)
    (broken / "assignment.ipynb").write_text('{"cells": [')  # a truncated upload
    line = collect(broken.parent, course, echo=quiet)["alan"]
    assert "not a readable notebook" in line
    lines = []
    outcomes = grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=lines.append)
    export(course, echo=quiet)
    by_student = {row["student_id"]: row for row in _csv(course)}
    assert by_student["alan"]["score"] == "" and by_student["alan"]["test_softmax"] == ""
    assert by_student["ada"]["score"] == "22"  # the batch went on
    assert not course.autograded("alan").exists()
    assert any(line.startswith("alan: not graded:") and "not a readable notebook" in line for line in lines)
    assert sum(not o.ok for o in outcomes) == 1
    status = json.loads((course.root / "grading_status.json").read_text())["backprop"]  # one section per assignment
    assert status["alan"]["status"] == "failed"


def test_plain_nbgrader_autograde_works_on_the_course(graded_class, tmp_path):
    if not sandbox_ok():
        pytest.skip("the course's config sandboxes kernels and bubblewrap is missing")
    course = Course(tmp_path / "copy")
    shutil.copytree(graded_class[0].root, course.root)
    result = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", "backprop", "--student", "edsger",
                             "--force"], cwd=course.root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        notebook = gb.find_submission_notebook("assignment", "backprop", "edsger")
        scores = {g.name: g.score for g in notebook.grades if g.name in POINTS}
    assert scores == {cell: 0 if cell == "test_weight_decay" else points for cell, points in POINTS.items()}


def test_cli_says_what_to_do_on_a_course_that_is_not_released(tmp_path):
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", "--course", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not a released course: run `python -m autograder release` first"]
