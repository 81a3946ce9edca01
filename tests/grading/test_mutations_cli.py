"""The mutation suite through the instructor's CLI: every variant is a student of one class,
released, collected, autograded by nbgrader (sandboxed, re-verified) and exported — the same path
a real class takes. The in-process suite (test_mutations.py) covers 20 seeds; this covers the
real pipeline at the default seed."""
import csv
import subprocess
import sys

import nbformat
import pytest
from support import sandbox_ok

from autograder.course import Course
from autograder.testcells import read_notebook, test_cells
from autograder.variants import VARIANTS, make_submission


def _cli(*args, course):
    result = subprocess.run([sys.executable, "-m", "autograder", *args, "--course", str(course.root)],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def class_grades(tmp_path_factory):
    root = tmp_path_factory.mktemp("mutations-cli")
    course = Course(root / "course")
    _cli("release", course=course)
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    for name, variant in VARIANTS.items():
        folder = root / "submissions" / name
        folder.mkdir(parents=True)
        nbformat.write(make_submission(release_nb, source_nb, variant), str(folder / "assignment.ipynb"))
    _cli("collect", str(root / "submissions"), course=course)
    grade_args = ["grade", "--workers", "2"] + ([] if sandbox_ok() else ["--no-sandbox"])
    out = _cli(*grade_args, course=course)
    _cli("export", course=course)
    with open(course.root / "exports" / course.assignment / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    points = {gid: pts for gid, pts, _ in test_cells(source_nb)}
    return rows, points, out


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_gets_what_it_deserves_through_the_cli(class_grades, name):
    rows, points, out = class_grades
    variant = VARIANTS[name]
    row = rows[name]
    assert row["score"] != "", f"{name} was not graded: {[line for line in out.splitlines() if line.startswith(name)]}"
    scores = {gid: float(row[gid]) for gid in points}
    if variant.must_fail:
        kept = {gid: scores[gid] for gid in variant.must_fail if scores[gid] > 0}
        assert not kept, f"{name} ({variant.description}) kept points in {kept}"
    else:
        lost = {gid: scores[gid] for gid in points if scores[gid] < points[gid]}
        assert not lost, f"correct variant {name} lost points: {lost}"


def test_no_variant_is_flagged_as_tampering(class_grades):
    _, _, out = class_grades
    flagged = [line for line in out.splitlines() if "TAMPER" in line]
    assert not flagged, "honest (if buggy) code must agree in and out of the kernel: " + "; ".join(flagged)
