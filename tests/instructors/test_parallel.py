"""Parallel grading gives the grades of a serial run; grading refuses to run unsandboxed by accident."""

import pytest
from support import course_with_class, sandbox_ok

from autograder.course import CourseError
from autograder.verbs.grade import grade

POINTS = {"test_softmax": 2, "test_one_hot": 1, "test_sce_loss": 2, "test_sce_grad": 3, "test_relu": 1,
          "test_forward": 2, "test_loss_value": 2, "test_gradients": 4, "test_weight_decay": 2,
          "test_predict": 1, "test_train": 2}
# The cells each student loses (as in tests/instructors/test_pipeline.py's sample class): a missing
# 1/n in dZ also fails the visible gradient check of the student's own loss_and_grad.
LOST = {
    "perfect": set(),
    "dz_missing_1_over_n": {"test_sce_grad", "test_gradients"},
    "relu_mask_missing": {"test_gradients"},
    "untouched": set(POINTS),
    "loss_and_grad_per_row_loop": set(),
}
CLASS = tuple(LOST)


def test_two_workers_give_the_grades_of_one(released_course, tmp_path):
    results = {}
    for workers in (1, 2):
        course = course_with_class(released_course, tmp_path / f"w{workers}", CLASS)
        outcomes = grade(course, workers=workers, sandbox=sandbox_ok(), progress=False, echo=lambda *_: None)
        results[workers] = {o.student: (o.ok, o.scores, o.tamper_cells) for o in outcomes}
    assert results[1] == results[2]
    # Identical is not enough (every student failing the same way in both runs is identical too):
    # each was graded, nothing flagged, with exactly the points its code deserves.
    expected = {name: (True, {cell: 0.0 if cell in LOST[name] else float(points) for cell, points in POINTS.items()},
                       []) for name in CLASS}
    assert results[1] == expected


def test_grading_refuses_without_bubblewrap_and_says_how_to_fix_it(released_course, monkeypatch):
    import autograder.sandbox.bwrap as sandbox
    monkeypatch.setattr(sandbox, "bwrap_available", lambda: False)
    with pytest.raises(CourseError, match=r"apt-get install bubblewrap.*--no-sandbox"):
        grade(released_course, progress=False, echo=lambda *_: None)
