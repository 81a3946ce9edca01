"""Manual grading without a browser: what a re-grade does to a TA's marks (autograder/grading/manual.py),
how pending answers read in the report and on the feedback page, and the mark-scheme cells of the
autograded notebook (autograder/grading/markscheme.py). The browser session is test_formgrader.py."""
from types import SimpleNamespace

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.grading import manual
from autograder.grading.feedback_page import AWAITING, mark_pending
from autograder.grading.markscheme import METADATA_KEY, guidance, with_mark_schemes
from autograder.verbs.export import pending_cell
from autograder.verbs.report import table, written_answers


def _grade(auto=None, manual_score=None, needs=True):
    return SimpleNamespace(auto_score=auto, manual_score=manual_score, needs_manual_grade=needs)


# --- (a) a re-grade and the TA's marks -------------------------------------------------------------

def test_a_written_answer_never_graded_by_hand_waits_for_a_ta():
    grade = _grade()
    manual.apply_regrade(grade, None, True, written=True, changed=None)
    assert (grade.manual_score, grade.needs_manual_grade) == (None, True)


def test_a_graded_written_answer_whose_text_is_unchanged_keeps_its_mark_out_of_the_queue():
    grade = _grade(manual_score=3.0, needs=False)
    manual.apply_regrade(grade, None, True, written=True, changed=False)
    assert (grade.manual_score, grade.needs_manual_grade) == (3.0, False)


def test_a_graded_written_answer_whose_text_changed_is_cleared_and_queued():
    grade = _grade(manual_score=3.0, needs=False)
    manual.apply_regrade(grade, None, True, written=True, changed=True)
    assert (grade.manual_score, grade.needs_manual_grade) == (None, True)


def test_a_mark_from_before_fingerprints_is_kept_but_queued_for_a_look():
    grade = _grade(manual_score=3.0, needs=False)
    manual.apply_regrade(grade, None, True, written=True, changed=None)
    assert (grade.manual_score, grade.needs_manual_grade) == (3.0, True)


@pytest.mark.parametrize("new_auto, queued", [(0.0, False), (2.0, True)])
def test_a_test_cell_override_is_reviewed_only_when_the_automatic_score_moved(new_auto, queued):
    grade = _grade(auto=0.0, manual_score=2.0, needs=False)
    manual.apply_regrade(grade, new_auto, False, written=False, changed=None)
    assert (grade.manual_score, grade.auto_score, grade.needs_manual_grade) == (2.0, new_auto, queued)


def test_fingerprints_see_the_text_not_its_line_endings(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("dL/dz = p - y\r\n", metadata={"nbgrader": {"grade": True, "solution": True,
                                                                      "grade_id": "derivation"}}),
        new_code_cell("x = 1", metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "test_x"}})])
    found = manual.answer_fingerprints(nb)
    assert list(found) == ["derivation"]
    assert found["derivation"] == manual.fingerprint("dL/dz = p - y")
    assert found["derivation"] != manual.fingerprint("dL/dz = y - p")
    manual.save_fingerprints(tmp_path, "backprop", "ada", found)
    manual.save_fingerprints(tmp_path, "backprop", "alan", {})
    assert manual.load_fingerprints(tmp_path, "backprop", "ada") == found
    assert manual.answer_changed("derivation", found, found) is False
    assert manual.answer_changed("derivation", found, {"derivation": "other"}) is True
    assert manual.answer_changed("derivation", {}, found) is None
    (tmp_path / manual.ANSWERS_FILE).write_text("{torn")
    assert manual.load_fingerprints(tmp_path, "backprop", "ada") == {}


# --- (b) (c) pending reads as pending ----------------------------------------------------------------

CELLS = [("test_a", 2.0, "auto"), ("essay", 4.0, "manual")]


def _record(student, essay):
    cells = {"test_a": {"score": 2.0, "pending": False},
             "essay": {"score": None, "pending": True} if essay is None else {"score": essay, "pending": False}}
    pending = [gid for gid, cell in cells.items() if cell["pending"]]
    return {"student_id": student, "score": 2.0 + (essay or 0), "max_score": 6.0, "cells": cells,
            "pending": pending, "status": "graded"}


def test_report_table_says_pending_and_provisional_and_itemises_written_answers():
    records = {"ada": _record("ada", 0.0), "bob": _record("bob", None), "cy": _record("cy", 3.0)}
    rows = [line.split() for line in table(CELLS, records).splitlines()]
    assert rows[0] == ["student", "score", "marking", "a", "essay", "late", "status"]
    assert rows[1][:5] == ["ada", "2/6", "final", "2", "0"]    # a graded 0 ...
    assert rows[2][:5] == ["bob", "2/6", "provisional", "2", "pending"]  # ... is not a pending answer
    assert written_answers(CELLS, records) == {"essay": {"points": 4.0, "graded": 2, "pending": 1, "mean": 1.5}}
    assert pending_cell(records["bob"]) == "essay" and pending_cell(records["ada"]) == ""


def test_the_feedback_page_says_awaiting_grading_and_provisional():
    nb = new_notebook(cells=[new_markdown_cell("my essay", metadata={"nbgrader": {
        "grade_id": "essay", "grade": True, "solution": True, "comment": "old note on other text"}})])
    resources = {"nbgrader": {"notebook": "assignment"}}
    mark_pending(nb, resources, {"essay"})
    assert nb.cells[0].metadata.nbgrader["comment"] == AWAITING
    assert resources["nbgrader"]["notebook"] == "assignment: provisional, 1 answer awaiting grading"
    resources = {"nbgrader": {"notebook": "assignment"}}
    mark_pending(nb, resources, set())
    assert resources["nbgrader"]["notebook"] == "assignment"


# --- (f) the mark scheme in the autograded notebook --------------------------------------------------

SOURCE = new_notebook(cells=[
    new_markdown_cell("### Question 1"),
    new_markdown_cell("### BEGIN SOLUTION\nModel answer: p - y.\n\n**Mark scheme.** 1 pt: the sign.\n### END SOLUTION",
                      metadata={"nbgrader": {"grade": True, "solution": True, "grade_id": "q1", "points": 1}}),
])


def test_guidance_is_the_solution_region_without_its_delimiters():
    assert guidance(SOURCE.cells[1]) == "Model answer: p - y.\n\n**Mark scheme.** 1 pt: the sign."


def test_the_mark_scheme_goes_under_the_answer_once_and_a_planted_one_is_dropped():
    planted = new_markdown_cell("**Mark scheme for q1**: full marks!", metadata={METADATA_KEY: "q1"})
    answer = new_markdown_cell("my answer", metadata={"nbgrader": {"grade": True, "solution": True, "grade_id": "q1"}})
    nb = new_notebook(cells=[new_markdown_cell("### Question 1"), planted, answer])
    out = with_mark_schemes(nb, SOURCE)
    assert [c.source.splitlines()[0] for c in out.cells][:2] == ["### Question 1", "my answer"]
    assert len(out.cells) == 3 and out.cells[2].metadata[METADATA_KEY] == "q1"
    assert "> **Mark scheme.** 1 pt: the sign." in out.cells[2].source and "full marks" not in out.cells[2].source
    again = with_mark_schemes(out, SOURCE)  # a second autograde: still one
    assert sum(METADATA_KEY in c.metadata for c in again.cells) == 1


def test_pending_means_no_mark_yet_not_merely_flagged():
    from autograder.results import is_pending
    assert is_pending(_grade())                                    # a written answer nobody marked
    assert not is_pending(_grade(auto=0.0, needs=False))           # a blank answer: nbgrader's own 0
    assert not is_pending(_grade(manual_score=3.0, needs=True))    # marked, flagged for a look: shows 3
    assert not is_pending(_grade(auto=2.0, needs=True))            # flagged test cell with its score
