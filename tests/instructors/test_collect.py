"""collect: the mess an LMS download really is — one clear line per student, nothing stops the rest."""
import json
import zipfile

import pytest

from autograder.course import Course, CourseError
from autograder.verbs.collect import collect

GOOD = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def course(collect_course):
    return collect_course


def test_folder_of_student_folders_with_renamed_nested_and_stray_files(course, tmp_path):
    lines = collect(_write(tmp_path / "in", {
        "ada/assignment.ipynb": GOOD,
        "bob/work/hw3/Assignment (1).ipynb": GOOD,
        "carol/notes.pdf": "%PDF",
        "carol/backprop.ipynb": GOOD,
        "carol/.ipynb_checkpoints/backprop-checkpoint.ipynb": GOOD,
        "__MACOSX/ada/._assignment.ipynb": "junk",
        ".DS_Store": "junk",
    }), course, echo=lambda *_: None)
    assert lines["ada"] == "collected"
    assert lines["bob"] == "collected from bob/work/hw3/Assignment (1).ipynb"
    assert lines["carol"] == "collected from carol/backprop.ipynb"
    assert lines["(other files)"].startswith("4 other files ignored")
    assert course.submitted_students() == ["ada", "bob", "carol"]
    assert (course.submitted("ada") / "timestamp.txt").is_file()


def test_duplicate_students_take_the_assignment_named_or_newest_and_say_so(course, tmp_path):
    root = _write(tmp_path / "in", {"dan/old.ipynb": GOOD, "dan/new.ipynb": GOOD, "eve/assignment.ipynb": GOOD,
                                    "eve/scratch.ipynb": GOOD})
    import os
    os.utime(root / "dan/old.ipynb", (1_000_000, 1_000_000))
    lines = collect(root, course, echo=lambda *_: None)
    assert lines["dan"] == "collected from dan/new.ipynb (also found dan/old.ipynb: took dan/new.ipynb)"
    assert lines["eve"] == "collected (also found eve/scratch.ipynb: took eve/assignment.ipynb)"


def test_corrupt_notebook_is_collected_with_a_warning_so_grading_records_it(course, tmp_path):
    lines = collect(_write(tmp_path / "in", {"fay/assignment.ipynb": '{"cells": [', "gus/assignment.ipynb": GOOD}),
                    course, echo=lambda *_: None)
    assert lines["fay"].startswith("collected, but it is not a readable notebook (")
    assert lines["gus"] == "collected"


def test_lms_zip_of_flat_files_wrapped_in_one_folder(course, tmp_path):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("submissions/hana_1234_attempt.ipynb", GOOD)
        z.writestr("submissions/ivan_99_backprop.ipynb", GOOD)
        z.writestr("submissions/ivan_99_backprop_late.ipynb", GOOD)
        z.writestr("submissions/readme.txt", "hi")
    lines = collect(archive, course, echo=lambda *_: None)
    assert lines["hana"] == "collected from hana_1234_attempt.ipynb"
    assert lines["ivan"].startswith("collected from ivan_99_backprop") and "also found" in lines["ivan"]
    assert course.submitted_students() == ["hana", "ivan"]


def test_hostile_names_never_escape_submitted(course, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../escape.ipynb", GOOD)
        z.writestr("..__x.ipynb", GOOD)
        z.writestr("a b c/assignment.ipynb", GOOD)
    lines = collect(archive, course, echo=lambda *_: None)
    assert not (tmp_path / "escape.ipynb").exists() and not (course.root.parent / "escape.ipynb").exists()
    assert all("not collected" in line for student, line in lines.items() if student.startswith("?"))
    assert course.submitted_students() == []
    assert sorted(lines) == ["? '..'", "? 'a b c'"]


def test_custom_pattern_for_other_lms_names(course, tmp_path):
    lines = collect(_write(tmp_path / "in", {"assignment-jo.ipynb": GOOD}), course,
                    pattern=r"assignment-(?P<student_id>\w+)", echo=lambda *_: None)
    assert lines == {"jo": "collected from assignment-jo.ipynb"}


def test_missing_path_and_unreleased_course_are_one_line_errors(course, tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        collect(tmp_path / "nowhere", course)
    with pytest.raises(CourseError, match="run `python -m autograder release` first"):
        collect(tmp_path, Course(tmp_path / "empty"))
