"""One course, two assignments: the kit grades any notebook written with its conventions, not just
backprop. `backprop` (the kit's own) and `logreg` (tests/fixtures/logreg, released with `release
--from`) share a course, a gradebook and two students; every verb runs per assignment, and neither
assignment's grades, statuses, feedback or exports reach the other's."""
import copy
import csv
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from support import sandbox_ok

from autograder.course import Course
from autograder.testcells import read_notebook
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.collect import collect
from autograder.verbs.export import export
from autograder.verbs.feedback import feedback
from autograder.verbs.grade import grade
from autograder.verbs.release import release
from autograder.verbs.report import report

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "logreg"

# logreg's points, as written in tests/fixtures/logreg/logreg.ipynb (why_mean is graded by hand).
LOGREG_POINTS = {"test_sigmoid": 2, "test_loss_value": 3, "test_gradient": 3}
LOGREG_MAX = 10
# What each logreg student must score, worked out from the code below: alan's dw is a sum over the
# messages, not a mean, so his dw disagrees with finite differences of his own (correct) loss in the
# visible gradient test; his sigmoid and loss are right. eve hands the release back untouched.
LOGREG_SCORES = {
    "ada": {"test_sigmoid": 2, "test_loss_value": 3, "test_gradient": 3},
    "alan": {"test_sigmoid": 2, "test_loss_value": 3, "test_gradient": 0},
    "eve": {"test_sigmoid": 0, "test_loss_value": 0, "test_gradient": 0},
}
# backprop's points (assignment.ipynb) and the cells each student loses (variants.py: alan's dZ lacks
# 1/n, which his own loss_and_grad inherits; linus's functions all raise NotImplementedError).
BACKPROP_POINTS = {"test_softmax": 2, "test_one_hot": 1, "test_sce_loss": 2, "test_sce_grad": 3, "test_relu": 1,
                   "test_forward": 2, "test_loss_value": 2, "test_gradients": 4, "test_weight_decay": 2,
                   "test_predict": 1, "test_train": 2}
BACKPROP_MAX = 30
BACKPROP_MANUAL = ("derivation", "reflection_curves", "reflection_speed")
EVERY_CELL = {*LOGREG_POINTS, "why_mean", *BACKPROP_POINTS, *BACKPROP_MANUAL}  # graded cells of either
BACKPROP_CLASS = {"ada": "perfect", "alan": "dz_missing_1_over_n", "linus": "untouched"}
BACKPROP_LOST = {"ada": set(), "alan": {"test_sce_grad", "test_gradients"}, "linus": set(BACKPROP_POINTS)}
BACKPROP_SCORES = {student: {cell: 0 if cell in lost else points for cell, points in BACKPROP_POINTS.items()}
                   for student, lost in BACKPROP_LOST.items()}

# The students' code for logreg, written here rather than taken from the fixture's reference.
SIGMOID = '''def sigmoid(z):
    z = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
'''
LOSS = '''def logistic_loss_and_grad(w, b, X, y):
    z = X @ w + b
    loss = float(np.mean(np.logaddexp(0, z) - y * z))
    r = sigmoid(z) - y
    return loss, X.T @ r / len(y), float(np.mean(r))
'''
LOSS_DW_SUMMED = LOSS.replace("X.T @ r / len(y)", "X.T @ r")
ANSWER = "The mean keeps the gradient's size independent of n, so one learning rate fits every batch."

quiet = lambda *args, **kwargs: None  # noqa: E731


def _logreg_submission(release_nb, codes, answer=None):
    """The release notebook with `codes` ({solution grade_id: source}) typed into its answer cells."""
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in codes:
            cell.source = codes[gid]
        elif gid == "why_mean" and answer:
            cell.source = answer
    return nb


def _cli(course, *args):
    return subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    """Both assignments released, collected (folder intake), graded, fed back, exported, reported."""
    root = tmp_path_factory.mktemp("many")
    backprop = Course(root / "course")
    logreg = backprop.with_assignment("logreg")
    release(backprop, echo=quiet)
    released = _cli(logreg, "--assignment", "logreg", "release", "--from", str(FIXTURE))
    assert released.returncode == 0, released.stderr[-2000:]

    source_nb, release_nb = (read_notebook(backprop.notebook(f)) for f in (backprop.source, backprop.release))
    for student, variant in BACKPROP_CLASS.items():
        (root / "in_backprop" / student).mkdir(parents=True)
        nbformat.write(make_submission(release_nb, source_nb, VARIANTS[variant]),
                       str(root / "in_backprop" / student / "assignment.ipynb"))
    logreg_release = read_notebook(logreg.notebook(logreg.release))
    logreg_class = {"ada": _logreg_submission(logreg_release, {"sigmoid": SIGMOID, "logistic_loss_and_grad": LOSS},
                                              ANSWER),
                    "alan": _logreg_submission(logreg_release, {"sigmoid": SIGMOID,
                                                                "logistic_loss_and_grad": LOSS_DW_SUMMED}),
                    "eve": _logreg_submission(logreg_release, {})}
    for student, nb in logreg_class.items():
        (root / "in_logreg" / student).mkdir(parents=True)
        nbformat.write(nb, str(root / "in_logreg" / student / "my logreg.ipynb"))  # renamed, as students do

    lines = {"backprop": collect(root / "in_backprop", backprop, echo=quiet),
             "logreg": collect(root / "in_logreg", logreg, echo=quiet)}
    outcomes = {}
    for course in (backprop, logreg):
        graded = grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=quiet)
        outcomes[course.assignment] = {o.student: o for o in graded}
    pages = {course.assignment: feedback(course, echo=quiet) for course in (backprop, logreg)}
    exports = {course.assignment: export(course, echo=quiet) for course in (backprop, logreg)}
    reports = {course.assignment: report(course, echo=quiet) for course in (backprop, logreg)}
    return backprop, logreg, lines, outcomes, pages, exports, reports


def _rows(exports, assignment):
    csv_path, _ = exports[assignment]
    with open(csv_path, newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def _gradebook(course, student):
    """{grade_id: (score, needs_manual_grade)} of one student's notebook of `course`'s assignment."""
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        notebook = gb.find_submission_notebook(course.notebook_name, course.assignment, student)
        return {grade.name: (grade.score, bool(grade.needs_manual_grade)) for grade in notebook.grades}


def test_the_second_assignment_is_released_beside_the_first(term):
    backprop, logreg, lines, *_ = term
    assert backprop.assignments() == ["backprop", "logreg"]
    assert logreg.notebook_name == "logreg"
    assert sorted(p.name for p in logreg.release.iterdir()) == ["logreg.ipynb", "logreg_helpers.py"]
    release_text = logreg.notebook(logreg.release).read_text()
    assert "HIDDEN TESTS" not in release_text and "_ref_loss" not in release_text
    assert "BEGIN SOLUTION" not in release_text and "np.logaddexp(0.0, z) - y * z" not in release_text
    for assignment, students in (("backprop", BACKPROP_CLASS), ("logreg", LOGREG_SCORES)):
        assert {s: lines[assignment][s].split(" from ")[0] for s in students} == {s: "collected" for s in students}
    assert backprop.submitted_students() == sorted(BACKPROP_CLASS)
    assert logreg.submitted_students() == sorted(LOGREG_SCORES)


def test_every_submission_of_both_assignments_was_graded(term):
    _, _, _, outcomes, *_ = term
    assert sorted(outcomes["backprop"]) == sorted(BACKPROP_CLASS)
    assert sorted(outcomes["logreg"]) == sorted(LOGREG_SCORES)
    for assignment in outcomes:
        for student, outcome in outcomes[assignment].items():
            assert outcome.ok and not outcome.tamper_cells and not outcome.timed_out_cells, (assignment, outcome)


def test_logreg_per_cell_scores_are_exact(term):
    _, logreg, _, outcomes, _, exports, _ = term
    rows = _rows(exports, "logreg")
    header = list(next(iter(rows.values())))
    assert header[:3] == ["student_id", "score", "max_score"]
    assert [column for column in header if column in EVERY_CELL] == [*LOGREG_POINTS, "why_mean"]
    for student, expected in LOGREG_SCORES.items():
        assert outcomes["logreg"][student].scores == expected, student
        assert {cell: float(rows[student][cell]) for cell in LOGREG_POINTS} == expected, student
        assert float(rows[student]["score"]) == sum(expected.values())  # why_mean: not graded by hand yet
        assert float(rows[student]["max_score"]) == LOGREG_MAX
        gradebook = _gradebook(logreg, student)
        assert {cell: gradebook[cell][0] for cell in LOGREG_POINTS} == expected
        # ada wrote an answer: it awaits a TA (no points yet: "0", or "" where awaiting reads as pending);
        # an answer left as released scores 0 and awaits nobody (nbgrader's rule for unchanged cells).
        assert gradebook["why_mean"] == (0.0, student == "ada")
        assert rows[student]["why_mean"] in (("0", "") if student == "ada" else ("0",))


def test_backprop_per_cell_scores_are_exact(term):
    backprop, _, _, outcomes, _, exports, _ = term
    rows = _rows(exports, "backprop")
    for student, expected in BACKPROP_SCORES.items():
        assert outcomes["backprop"][student].scores == expected, student
        assert {cell: float(rows[student][cell]) for cell in BACKPROP_POINTS} == expected, student
        assert float(rows[student]["score"]) == sum(expected.values())
        assert float(rows[student]["max_score"]) == BACKPROP_MAX
        gradebook = _gradebook(backprop, student)
        assert {cell: gradebook[cell][0] for cell in BACKPROP_POINTS} == expected


def test_a_failing_gradient_is_explained_in_its_own_assignment_only(term):
    _, logreg, _, outcomes, *_ = term
    record = json.loads(logreg.notebook(logreg.autograded("alan")).read_text())["metadata"]["autograder"]
    assert sorted(record["cells"]) == sorted(LOGREG_POINTS)
    assert record["cells"]["test_gradient"]["status"] == "failed"
    assert "dw (against finite differences of your loss)" in record["cells"]["test_gradient"]["message"]
    assert outcomes["logreg"]["alan"].kernel_scores == LOGREG_SCORES["alan"]  # the kernel agreed


def test_each_export_lists_only_its_own_cells_and_students(term):
    *_, exports, _ = term
    backprop_rows, logreg_rows = _rows(exports, "backprop"), _rows(exports, "logreg")
    # test_loss_value is a cell of both (3 points in logreg, 2 in backprop): each export has its own
    assert [c for c in next(iter(logreg_rows.values())) if c in EVERY_CELL] == [*LOGREG_POINTS, "why_mean"]
    assert [c for c in next(iter(backprop_rows.values())) if c in EVERY_CELL] == \
        ["derivation", *BACKPROP_POINTS, "reflection_curves", "reflection_speed"]
    assert logreg_rows["ada"]["test_loss_value"] == "3" and backprop_rows["ada"]["test_loss_value"] == "2"
    # A student of one assignment only has no grade in the other, and the other's status is not borrowed.
    for rows, students, path in ((logreg_rows, ["linus"], exports["logreg"][1]),
                                 (backprop_rows, ["eve"], exports["backprop"][1])):
        data = json.loads(Path(path).read_text())
        for student in students:
            assert rows.get(student, {}).get("score", "") == ""
            assert data["students"].get(student, {}).get("status", "not graded") == "not graded", student
    assert json.loads(Path(exports["logreg"][1]).read_text())["assignment"] == "logreg"
    assert exports["logreg"][0].parent != exports["backprop"][0].parent


def test_grading_status_keeps_one_outcome_per_assignment(term):
    backprop, *_ = term
    status = json.loads((backprop.root / "grading_status.json").read_text())
    assert sorted(status) == ["backprop", "logreg"]
    assert sorted(status["backprop"]) == sorted(BACKPROP_CLASS)
    assert sorted(status["logreg"]) == sorted(LOGREG_SCORES)
    assert status["backprop"]["alan"]["scores"] == BACKPROP_SCORES["alan"]  # alan in both: two outcomes
    assert status["logreg"]["alan"]["scores"] == LOGREG_SCORES["alan"]


def test_the_report_of_each_assignment_has_its_own_columns(term):
    *_, reports = term
    logreg_table = (reports["logreg"] / "grades.txt").read_text()
    backprop_table = (reports["backprop"] / "grades.txt").read_text()
    assert reports["logreg"] != reports["backprop"]
    assert _table_row(logreg_table, "alan", ("score", "sigmoid", "loss_value", "gradient")) == ["5/10", "2", "3", "0"]
    assert _table_row(logreg_table, "ada", ("score", "sigmoid", "loss_value", "gradient")) == ["8/10", "2", "3", "3"]
    assert not {"softmax", "gradients", "train"} & set(logreg_table.splitlines()[0].split())
    assert _table_row(backprop_table, "alan", ("score", "sce_grad", "gradients", "relu")) == ["15/30", "0", "0", "1"]
    assert "sigmoid" not in backprop_table.splitlines()[0].split()


def _table_row(table, student, columns):
    """The values of `columns` in the student's row of report's text table (columns left-aligned)."""
    header, *rows = table.splitlines()
    [row] = [r for r in rows if r.split()[:1] == [student]]
    starts = {name: m.start() for m in re.finditer(r"\S+", header) for name in [m.group()]}
    return [row[starts[name]:].split()[0] for name in columns]


def _hidden_lines(source_path, release_path):
    """Lines inside a hidden block of the source notebook that the release does not show (own parser)."""
    hidden, inside = set(), False
    for cell in read_notebook(source_path).cells:
        for line in cell.source.splitlines():
            if "### BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "### END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) >= 12:
                hidden.add(line.strip())
    public = "\n".join([cell.source for cell in read_notebook(release_path).cells]
                       + [path.read_text() for path in Path(release_path).parent.glob("*.py")])
    return {line for line in hidden if line not in public}


@pytest.mark.parametrize("assignment", ["backprop", "logreg"])
def test_feedback_pages_exist_and_show_no_hidden_test_line(term, assignment):
    backprop, logreg, _, _, pages, *_ = term
    course = {"backprop": backprop, "logreg": logreg}[assignment]
    students = BACKPROP_CLASS if assignment == "backprop" else LOGREG_SCORES
    assert sorted(pages[assignment]) == sorted(students)
    secrets = _hidden_lines(course.notebook(course.source), course.notebook(course.release))
    assert len(secrets) > 5
    for student in students:
        page = course.feedback(student) / f"{course.notebook_name}.html"
        assert pages[assignment][student] == page and page.is_file(), (assignment, student)
        assert sorted(p.name for p in page.parent.iterdir()) == [page.name]
        text = html.unescape(re.sub(r"<[^>]*>", "", page.read_text()))
        shown = [line for line in secrets if line in text]
        assert not shown, (assignment, student, shown[:3])
    alan = html.unescape(re.sub(r"<[^>]*>", "", (course.feedback("alan") / f"{course.notebook_name}.html").read_text()))
    failing = "test_gradient failed" if assignment == "logreg" else "test_gradients failed"
    assert failing in alan


def test_cli_exports_the_second_assignment(term):
    backprop, logreg, _, _, _, exports, _ = term
    exports["logreg"][0].unlink()
    result = _cli(logreg, "--assignment", "logreg", "export")
    assert result.returncode == 0, result.stderr[-2000:]
    assert exports["logreg"][0].is_file()
    assert _rows(exports, "logreg")["alan"]["score"] == "5"
    assert "logreg" in result.stdout


@pytest.mark.parametrize("verb", [["export"], ["grade"], ["feedback"], ["report"], ["collect", "."]])
def test_a_verb_on_an_unknown_assignment_names_the_course_assignments(term, verb):
    backprop, *_ = term
    result = _cli(backprop, verb[0], "--assignment", "nosuch", *verb[1:])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "'nosuch'" in lines[0] and "backprop, logreg" in lines[0]


def test_regrading_one_assignment_leaves_the_other_untouched(term):
    backprop, logreg, *_ = term
    before = _gradebook(backprop, "alan")
    page = backprop.feedback("alan") / f"{backprop.notebook_name}.html"
    autograded = backprop.notebook(backprop.autograded("alan")).read_bytes()
    [outcome] = grade(logreg, ["alan"], workers=1, sandbox=sandbox_ok(), progress=False, echo=quiet)
    assert outcome.ok and outcome.scores == LOGREG_SCORES["alan"]
    assert _gradebook(backprop, "alan") == before
    assert backprop.notebook(backprop.autograded("alan")).read_bytes() == autograded
    assert page.is_file()
    assert _gradebook(logreg, "alan") == {**{cell: (points, False) for cell, points in LOGREG_SCORES["alan"].items()},
                                          "why_mean": (0.0, False)}


def _broken_fixture(folder, breakage):
    """A copy of the logreg fixture with one convention broken."""
    nb = read_notebook(FIXTURE / "logreg.ipynb")
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if breakage == "imports" and gid == "imports":
            cell.metadata["nbgrader"]["grade_id"] = "setup"
        elif breakage == "unclosed" and gid == "test_gradient":
            cell.source = cell.source[:cell.source.rindex("### END HIDDEN TESTS")]
        elif breakage == "no_def" and gid in ("sigmoid", "logistic_loss_and_grad"):
            cell.source = "### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"
        elif breakage == "other_cell" and gid == "test_loss_value":  # X_blobs: the locked train_demo cell's
            cell.source += "\nassert X_blobs.shape == (100, 2)"
    if breakage == "locked_global":  # the answer uses a constant of a locked cell the grader does not load
        at = next(i for i, cell in enumerate(nb.cells) if cell.metadata["nbgrader"]["grade_id"] == "sigmoid")
        nb.cells[at].source = nb.cells[at].source.replace("np.asarray(z, dtype=float)",
                                                          "np.clip(np.asarray(z, dtype=float), -CLIP, CLIP)")
        assert "CLIP" in nb.cells[at].source
        nb.cells.insert(at, nbformat.v4.new_code_cell("CLIP = 750.0", metadata={"nbgrader": {
            "grade": False, "grade_id": "constants", "locked": True, "schema_version": 3, "solution": False,
            "task": False}}))
    folder.mkdir()
    nbformat.write(nb, str(folder / "logreg.ipynb"))
    (folder / "logreg_helpers.py").write_text((FIXTURE / "logreg_helpers.py").read_text())
    return folder


@pytest.mark.parametrize("breakage, says", [
    ("imports", "no code cell has grade_id 'imports'"),
    ("unclosed", "test cell test_gradient: a hidden-test block is never closed"),
    ("no_def", "no solution cell defines a function with `def`"),
    ("other_cell", "test cell test_loss_value uses X_blobs, which no test cell, the imports cell or a student"),
    ("locked_global", "solution cell sigmoid uses CLIP, which only a cell the grader does not load defines"),
])
def test_release_refuses_a_notebook_the_grader_could_not_grade(tmp_path, breakage, says):
    from autograder.course import CourseError
    course = Course(tmp_path / "course", "logreg")
    with pytest.raises(CourseError) as refused:
        release(course, from_dir=_broken_fixture(tmp_path / "broken", breakage), echo=quiet)
    message = str(refused.value)
    assert message.startswith("logreg.ipynb cannot be graded by this kit: ") and says in message, message
    assert "\n" not in message
    assert not course.root.exists()  # refused before anything was written


def test_both_notebooks_follow_the_conventions():
    from autograder.testcells import convention_problems
    kit = Path(__file__).resolve().parents[2] / "assignment.ipynb"
    assert convention_problems(read_notebook(kit)) == []
    assert convention_problems(read_notebook(FIXTURE / "logreg.ipynb")) == []


def test_helper_modules_may_import_each_other(tmp_path):
    """The grader imports an assignment's helpers as the kernel does: a helper module may import a
    sibling module or a package of the source folder; afterwards the grader's process forgets them."""
    import shutil

    from autograder.judge.verify import verify
    source = tmp_path / "logreg"
    shutil.copytree(FIXTURE, source)
    helpers = (source / "logreg_helpers.py").read_text()
    blobs = helpers[helpers.index("def make_blobs"):helpers.index("def numerical_gradient")]
    (source / "logreg_data").mkdir()
    (source / "logreg_data" / "__init__.py").write_text("import numpy as np\n\n\n" + blobs)
    (source / "logreg_checks.py").write_text("from logreg_helpers import assert_close  # noqa: F401\n")
    (source / "logreg_helpers.py").write_text(helpers.replace(blobs, "").replace(
        "import numpy as np\n", "import numpy as np\n\nfrom logreg_data import make_blobs  # noqa: F401\n", 1))
    nb = read_notebook(source / "logreg.ipynb")
    imports = next(cell for cell in nb.cells if cell.metadata["nbgrader"]["grade_id"] == "imports")
    old = "from logreg_helpers import assert_close, make_blobs"
    assert old in imports.source
    imports.source = imports.source.replace(old, "from logreg_checks import assert_close\n"
                                                 "from logreg_helpers import make_blobs")
    nbformat.write(nb, str(source / "logreg.ipynb"))
    submission = tmp_path / "ada.ipynb"
    nbformat.write(_logreg_submission(nb, {"sigmoid": SIGMOID, "logistic_loss_and_grad": LOSS_DW_SUMMED}),
                   str(submission))

    result = verify(source / "logreg.ipynb", submission, tmp_path / "work", sandbox=sandbox_ok(), seed=7)
    assert not result.load_errors and not result.notes, (result.load_errors, result.notes)
    assert {gid: verdict.passed for gid, verdict in result.cells.items()} == \
        {"test_sigmoid": True, "test_loss_value": True, "test_gradient": False}
    assert not {"logreg_helpers", "logreg_data", "logreg_checks"} & set(sys.modules)
    assert str(source) not in sys.path
