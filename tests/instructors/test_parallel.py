"""Parallel grading gives the grades of a serial run; grading refuses to run unsandboxed by accident."""
import shutil

import nbformat
import pytest
from conftest import sandbox_ok

from autograder.course import Course, CourseError
from autograder.testcells import read_notebook
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.grade import grade

CLASS = ("perfect", "dz_missing_1_over_n", "relu_mask_missing", "untouched", "loss_and_grad_per_row_loop")


def _course_with_class(released_course, root):
    course = Course(root)
    shutil.copytree(released_course.root, course.root)
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    for name in CLASS:
        course.submitted(name).mkdir(parents=True)
        nbformat.write(make_submission(release_nb, source_nb, VARIANTS[name]),
                       str(course.notebook(course.submitted(name))))
    return course


def test_two_workers_give_the_grades_of_one(released_course, tmp_path):
    results = {}
    for workers in (1, 2):
        course = _course_with_class(released_course, tmp_path / f"w{workers}")
        outcomes = grade(course, workers=workers, sandbox=sandbox_ok(), progress=False, echo=lambda *_: None)
        results[workers] = {o.student: (o.ok, o.scores, o.tamper_cells) for o in outcomes}
    assert results[1] == results[2]
    assert set(results[1]) == set(CLASS)


def test_grading_refuses_without_bubblewrap_and_says_how_to_fix_it(released_course, monkeypatch):
    import autograder.sandbox.bwrap as sandbox
    monkeypatch.setattr(sandbox, "bwrap_available", lambda: False)
    with pytest.raises(CourseError, match=r"apt-get install bubblewrap.*--no-sandbox"):
        grade(released_course, progress=False, echo=lambda *_: None)
