"""Shared fixtures: a released course built once per test session, in a temporary folder."""
import os
import sys
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent.parent
# nbgrader shells out to `alembic`, which lives beside this interpreter.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def released_course(tmp_path_factory):
    """A course with the assignment released (source/, release/, gradebook) — treat as read-only."""
    from autograder.course import Course
    from autograder.verbs.release import release

    course = Course(tmp_path_factory.mktemp("course"))
    release(course, echo=lambda *_: None)
    return course


@pytest.fixture(scope="session")
def source_nb(released_course):
    from autograder.testcells import read_notebook
    return read_notebook(released_course.notebook(released_course.source))


@pytest.fixture(scope="session")
def release_nb(released_course):
    from autograder.testcells import read_notebook
    return read_notebook(released_course.notebook(released_course.release))


@pytest.fixture
def collect_course(released_course, tmp_path):
    """A fresh course sharing the released source, for collect (which only writes submitted/)."""
    from autograder.course import Course

    fresh = Course(tmp_path / "course")
    fresh.root.mkdir()
    for name in ("nbgrader_config.py", "gradebook.db"):
        (fresh.root / name).write_bytes((released_course.root / name).read_bytes())
    fresh.source.parent.mkdir()
    fresh.source.symlink_to(released_course.source)
    return fresh
