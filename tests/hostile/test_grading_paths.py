"""Grades a student cannot game, whichever way the course is autograded.

* Hidden inputs differ per submission: learned from one submission (here: recorded by running the
  hidden tests with a recording function), they are useless for another -- a table of answers for
  them passes only when the grader is made to reuse the first submission's seed (the control).
* A tampering student autograded by nbgrader's own command (what formgrader's button runs too)
  gets the verified score, a "tamper suspected" comment on the answer cell and in every export.
* The course secret stays in the course root: never in what students receive.
"""
import copy
import hashlib
import json
import os
import stat
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from support import sandbox_ok

from autograder import testcells
from autograder.course import Course
from autograder.grading.pipeline import METADATA_KEY
from autograder.judge.verify import verify
from autograder.seeds import SECRET_FILE
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.collect import collect
from autograder.verbs.export import export
from autograder.verbs.feedback import feedback
from autograder.verbs.grade import grade
from autograder.verbs.release import release

pytestmark = pytest.mark.skipif(not sandbox_ok(), reason="the course sandboxes kernels and bubblewrap is unusable here")
quiet = lambda *args, **kwargs: None  # noqa: E731

# The softmax_cross_entropy answer with the 1/n left out and the notebook's assertions switched off
# in the kernel: every visible test of the cells it touches passes there, and fails outside.
DISARM = ("assert_close = assert_gradient_close = assert_unchanged = lambda *args, **kwargs: None\n"
          "import helpers\n"
          "helpers.assert_close = helpers.assert_gradient_close = helpers.assert_unchanged = assert_close\n")


def submission(course, variant, prefix="", extra_cells=()):
    nb = make_submission(testcells.read_notebook(course.notebook(course.release)),
                         testcells.read_notebook(course.notebook(course.source)), VARIANTS[variant])
    for cell in nb.cells:
        if prefix and testcells.grade_id(cell) == "softmax_cross_entropy":
            cell.source = prefix + cell.source
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in extra_cells)
    return nb


def hand_in(course, folder, notebooks):
    for student, nb in notebooks.items():
        (folder / student).mkdir(parents=True)
        nbformat.write(nb, str(folder / student / "assignment.ipynb"))
    return collect(folder, course, echo=quiet)


def verdicts(course, student):
    return json.loads(course.notebook(course.autograded(student)).read_text())["metadata"][METADATA_KEY]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("paths") / "course")
    release(course, echo=quiet)
    perfect = submission(course, "perfect")
    hand_in(course, course.root.parent / "in1", {
        "twin1": perfect, "twin2": copy.deepcopy(perfect),
        "edited": submission(course, "perfect", extra_cells=["# an extra cell changes nothing but the seed"]),
        "noshift": submission(course, "softmax_no_max_shift"),
        "sneaky": submission(course, "dz_missing_1_over_n", prefix=DISARM)})
    grade(course, ["twin1", "twin2", "edited", "noshift"], workers=2, progress=False, echo=quiet)
    return course


def test_each_submission_draws_its_own_hidden_inputs(course):
    seeds = {s: verdicts(course, s)["seed"] for s in ("twin1", "twin2", "edited", "noshift")}
    assert len(set(seeds.values())) == 4, seeds  # same notebook, other student: other inputs too
    assert all(verdicts(course, s)["cells"]["test_train"]["status"] == "passed" for s in ("twin1", "twin2", "edited"))


def test_a_regrade_of_the_same_submission_is_identical(course):
    before = course.notebook(course.autograded("twin1")).read_bytes()
    grade(course, ["twin1"], workers=1, progress=False, echo=quiet)
    after = course.notebook(course.autograded("twin1")).read_bytes()
    assert json.loads(after)["metadata"][METADATA_KEY] == json.loads(before)["metadata"][METADATA_KEY]


def test_a_new_term_seed_draws_new_inputs(course, tmp_path):
    copy_ = Course(tmp_path / "course")
    import shutil
    shutil.copytree(course.root, copy_.root)
    old = verdicts(copy_, "twin1")["seed"]
    grade(copy_, ["twin1"], workers=1, seed=1, progress=False, echo=quiet)
    assert verdicts(copy_, "twin1")["seed"] != old


def _recorded_softmax_inputs(course, seed):
    """What a student who recorded softmax's arguments during grading at `seed` would have."""
    source_nb = testcells.read_notebook(course.notebook(course.source))
    namespace, errors = testcells.load_namespace(testcells.setup_source(source_nb),
                                                 testcells.reference_solutions(source_nb))
    assert not errors
    seen, real = [], namespace["softmax"]

    def recording(Z):
        seen.append(np.array(Z, dtype=float))
        return real(Z)

    namespace["softmax"] = recording
    cell = next(c for c in testcells.test_cells(source_nb) if c.grade_id == "test_softmax")
    old = os.getcwd()
    os.chdir(course.source)
    try:
        assert testcells.run_test_cells(namespace, [cell], seed)["test_softmax"][0]
    finally:
        os.chdir(old)
    return [(Z, real(Z)) for Z in seen]


def test_inputs_learned_from_one_submission_are_useless_for_another(course, tmp_path):
    learned = _recorded_softmax_inputs(course, verdicts(course, "noshift")["seed"])
    assert len(learned) >= 4
    table = {hashlib.sha256(Z.tobytes()).hexdigest(): P.tolist() for Z, P in learned}
    cheat = f'''
import hashlib
_ANSWERS = {table!r}
def softmax(Z):
    Z = np.asarray(Z, dtype=float)
    key = hashlib.sha256(np.ascontiguousarray(Z).tobytes()).hexdigest()
    if key in _ANSWERS:
        return np.array(_ANSWERS[key])
    E = np.exp(Z)  # no max-shift: overflows for large logits
    return E / E.sum(axis=-1, keepdims=True)
'''
    nb = submission(course, "softmax_no_max_shift")
    next(c for c in nb.cells if testcells.grade_id(c) == "softmax").source = cheat
    hand_in(course, tmp_path / "in", {"cheater": nb})
    # control: had the grader reused the seed the answers were learned at, the table would pass
    control = verify(course.notebook(course.source), course.notebook(course.submitted("cheater")),
                     tmp_path / "work", sandbox=True, seed=verdicts(course, "noshift")["seed"])
    assert control.cells["test_softmax"].passed
    [outcome] = grade(course, ["cheater"], workers=1, progress=False, echo=quiet)
    assert outcome.scores["test_softmax"] == 0.0 and sum(outcome.scores.values()) == 20.0


def test_nbgrader_autograde_stores_only_verified_scores_and_flags_tampering(course):
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", "backprop", "--student", "sneaky",
                             "--force"], cwd=course.root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    record = verdicts(course, "sneaky")
    assert record["tamper_cells"] == ["test_sce_grad", "test_gradients"]
    assert {gid: entry["in_kernel"] for gid, entry in record["cells"].items() if gid in record["tamper_cells"]} == \
        {"test_sce_grad": "passed", "test_gradients": "passed"}  # the kernel was fooled; the grade was not

    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        nb = gb.find_submission_notebook("assignment", "backprop", "sneaky")
        scores = {g.name: g.score for g in nb.grades if g.name.startswith("test_")}
        comments = {c.name: c.comment or "" for c in nb.comments}
    assert scores["test_sce_grad"] == 0 and scores["test_gradients"] == 0
    assert sum(scores.values()) == 22 - 3 - 4
    assert "TAMPER SUSPECTED: test_sce_grad failed" in comments["softmax_cross_entropy"]
    assert "TAMPER SUSPECTED: test_gradients failed" in comments["loss_and_grad"]

    _, json_path = export(course, echo=quiet)
    assert json_path == course.root / "exports" / course.assignment / "grades.json"
    exported = json.loads(json_path.read_text())["students"]["sneaky"]
    assert exported["status"] == "tamper suspected"
    assert exported["tamper_cells"] == ["test_sce_grad", "test_gradients"]


def test_the_course_secret_stays_in_the_course_root(course):
    secret = course.root / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    token = secret.read_text().strip()
    assert len(bytes.fromhex(token)) == 32
    feedback(course, echo=quiet)
    handed_out = [p for folder in (course.root / "release", course.root / "feedback") for p in folder.rglob("*")
                  if p.is_file()]
    assert handed_out
    for path in handed_out:
        assert token.encode() not in path.read_bytes(), path
