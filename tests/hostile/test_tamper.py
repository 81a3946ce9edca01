"""Submissions that tamper with the grading, against autograder.judge.verify.

Each case is the reference solution with some solution cells replaced: wrong code plus an attempt
to forge passing verdicts (patching numpy, helpers or builtins, faking the grader's kit) or to
break the verifier (garbage on the protocol, dying, hanging, unsendable or huge results). The
verifier runs the tests in its own process, so the wrong cells get 0 and every honest cell passes.
"""
import copy
from pathlib import Path

import nbformat
import numpy as np
import pytest
from support import sandbox_ok

from autograder import testcells
from autograder.judge.verify import verify

ROOT = Path(__file__).resolve().parents[2]

SOURCE = ROOT / "assignment.ipynb"
SOURCE_NB = testcells.read_notebook(SOURCE)
GRADE_IDS = {gid for gid, _, _ in testcells.test_cells(SOURCE_NB)}
REFERENCE = testcells.reference_solutions(SOURCE_NB)
CALL_TIMEOUT = 2


SANDBOX_MODES = [False, pytest.param(True, marks=pytest.mark.skipif(
    not sandbox_ok(), reason="bubblewrap missing or unusable here"))]


def with_reference(gid, before="", after="", replace=()):
    """The reference solution of a cell, with lines put before/after it and text replaced."""
    src = REFERENCE[gid]
    for old, new in replace:
        assert src.count(old) == 1, (gid, old, "must occur exactly once in the reference")
        src = src.replace(old, new)
    return f"{before}\n{src}\n{after}"


BUG_WEIGHT_DECAY = [("2 * weight_decay * W1", "weight_decay * W1"), ("2 * weight_decay * W2", "weight_decay * W2")]
FAKE_KIT = """
import contextlib
_REFERENCE = {name: globals()[name] for name in ("softmax", "one_hot", "softmax_cross_entropy", "relu",
                                                 "forward", "loss_and_grad", "predict")}
def _using_reference(*names):
    return contextlib.nullcontext()
def _ref_forward(X, P):
    return forward(X, P)
"""
PROTOCOL_GARBAGE = """
import os
def _spray():
    for fd in range(3, 64):
        try:
            os.write(fd, b"\\xff" * 64 + b"not a frame")
        except OSError:
            pass
"""

# (name, {solution grade_id or "added": source}, test cells that must fail, part of a note or "": no notes)
CASES = [
    ("numpy_allclose_patched",
     {"loss_and_grad": with_reference("loss_and_grad", "np.allclose = lambda *a, **k: True\n"
                                      "np.testing.assert_allclose = lambda *a, **k: None", replace=BUG_WEIGHT_DECAY)},
     {"test_weight_decay"}, ""),
    ("helpers_assertions_disabled",
     {"softmax_cross_entropy": with_reference("softmax_cross_entropy", """
import helpers
helpers.assert_close = helpers.assert_gradient_close = helpers.assert_unchanged = lambda *a, **k: None
assert_close = assert_gradient_close = assert_unchanged = lambda *a, **k: None
""", replace=[("dZ /= n", "pass  # the 1/n left out")])},
     {"test_sce_grad", "test_gradients"}, ""),
    ("builtins_assertion_error_patched",
     {"one_hot": with_reference("one_hot", """
import builtins
class AssertionError(Warning):
    pass
builtins.AssertionError = AssertionError
""", replace=[("np.zeros((len(y), k))", "np.zeros((len(y), k), dtype=int)")])},
     {"test_one_hot"}, ""),
    ("fake_grader_kit",
     {"predict": with_reference("predict", replace=[("np.argmax", "np.argmin")]), "added": FAKE_KIT},
     {"test_predict"}, ""),
    ("garbage_on_stdout",
     {"relu": with_reference("relu", after="""
import os, sys
_relu = relu
def relu(X):
    os.write(1, b"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x10garbage on fd 1")
    sys.__stdout__.write("garbage on sys.__stdout__"); sys.__stdout__.flush()
    print("and a print")
    return _relu(X)
""")},
     set(), ""),
    ("garbage_on_the_protocol_fd",
     {"relu": with_reference("relu", before=PROTOCOL_GARBAGE,
                             replace=[("return np.maximum", "if np.ndim(X) == 3: _spray()\n    return np.maximum")])},
     {"test_relu"}, "worker sent garbage while running relu() (frame of"),
    ("os_exit_in_a_call",
     {"loss_and_grad": with_reference("loss_and_grad", "import os",
                                      replace=[('W1, W2 = params["W1"]',
                                                'if weight_decay: os._exit(0)\n    W1, W2 = params["W1"]')])},
     {"test_loss_value", "test_weight_decay", "test_train"},
     "worker died while running loss_and_grad() (exit code 0) during test_loss_value; restarted"),
    ("infinite_loop_in_softmax",  # only for the hidden test's input: the visible tests pass first
     {"softmax": with_reference("softmax",
                                replace=[("shifted = Z", "while np.shape(Z) == (7, 5): pass\n    shifted = Z")])},
     {"test_softmax"},
     f"timed out: the cell time limit of {CALL_TIMEOUT} s was reached while running softmax() during test_softmax; "
     "restarted"),
    ("object_dtype_result",
     {"relu": with_reference("relu", replace=[("return np.maximum(X, 0.0)",
                                               "R = np.maximum(X, 0.0)\n"
                                               "    return R.astype(object) if R.ndim == 3 else R")])},
     {"test_relu"}, ""),
    ("huge_result",
     {"predict": with_reference("predict", replace=[("return np.argmax(Z2, axis=1)",
                                                     "return np.zeros(40_000_000, dtype=np.int64)")])},
     {"test_predict"}, ""),
    ("callback_flood",  # keeps the pipe busy: every read returns at once, so only the clock can stop it
     {"forward": with_reference("forward", replace=[("A1 = relu(Z1)", "A1 = relu(Z1)\n"  # while relu calls back
                                                     "    while 'worker' in relu.__code__.co_filename: relu(Z1)")])},
     {"test_forward", "test_loss_value", "test_gradients", "test_weight_decay"},
     f"timed out: the cell time limit of {CALL_TIMEOUT} s was reached while running forward() during test_forward; "
     "restarted"),
    ("hangs_while_loading",  # a cell the student added never finishes: loaded again without it
     {"added_first": "while True:\n    pass"},
     set(), "while loading the submission (in cell "),
]


def write_submission(path, overrides):
    nb = copy.deepcopy(SOURCE_NB)
    overrides = dict(overrides)
    added = overrides.pop("added", None)
    added_first = overrides.pop("added_first", None)  # a cell the student put above every test
    for cell in nb.cells:
        if cell.cell_type == "code" and testcells.grade_id(cell) in overrides:
            cell.source = overrides.pop(testcells.grade_id(cell))
    assert not overrides
    if added:
        nb.cells.append(nbformat.v4.new_code_cell(added))
    if added_first:
        nb.cells.insert(2, nbformat.v4.new_code_cell(added_first))
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
@pytest.mark.parametrize("name, overrides, must_fail, note", CASES, ids=[case[0] for case in CASES])
def test_tampering_gains_nothing(tmp_path, sandbox, name, overrides, must_fail, note):
    submission = write_submission(tmp_path / "submission.ipynb", overrides)
    result = verify(SOURCE, submission, tmp_path / "work", sandbox=sandbox, cell_timeout=CALL_TIMEOUT)
    failed = {gid for gid, verdict in result.cells.items() if not verdict.passed}
    assert set(result.cells) == GRADE_IDS
    assert failed == must_fail, {gid: result.cells[gid].message for gid in failed ^ must_fail}
    if note:
        assert any(note in line for line in result.notes), result.notes
    else:
        assert result.notes == []


@pytest.mark.skipif(not sandbox_ok(), reason="bubblewrap missing or unusable here")
def test_sandboxed_worker_sees_nothing_of_the_kit(tmp_path):
    """A relu that is right only when it can read the source notebook (the hidden tests)."""
    probe = with_reference("relu", "import os", replace=[(
        "return np.maximum(X, 0.0)",
        f"return np.maximum(X, 0.0) * (2.0 if os.path.exists({str(SOURCE)!r}) else 1.0)")])
    submission = write_submission(tmp_path / "submission.ipynb", {"relu": probe})
    assert verify(SOURCE, submission, tmp_path / "work", sandbox=True).cells["test_relu"].passed is True
    assert verify(SOURCE, submission, tmp_path / "work2", sandbox=False).cells["test_relu"].passed is False


# A function that raises its hidden arguments, in the exception's message or in its class name: in
# the visible tests the inputs are public and the message helps; in the hidden tests only a builtin
# exception's name reaches the verdict.
LEAKY_RAISES = {
    "message": ("raise ValueError(repr(X.tolist()))", "ValueError"),
    "class name": ("raise type('Z_' + '_'.join(str(v).replace('.', 'p').replace('-', 'm') for v in X.ravel()[:5]), "
                   "(Exception,), {})()", "An exception"),
}


@pytest.mark.parametrize("channel", sorted(LEAKY_RAISES))
def test_exceptions_cannot_carry_hidden_inputs_out(tmp_path, channel):
    statement, shown = LEAKY_RAISES[channel]
    leaky = with_reference("relu", replace=[("return np.maximum(X, 0.0)",
                                             f"if np.ndim(X) == 3: {statement}\n    return np.maximum(X, 0.0)")])
    submission = write_submission(tmp_path / "submission.ipynb", {"relu": leaky})
    verdict = verify(SOURCE, submission, tmp_path / "work", sandbox=False).cells["test_relu"]
    assert not verdict.passed and verdict.visible_passed
    assert verdict.message == f"{shown} raised by your code on the grader's own inputs (its message is not shown)"


def test_callbacks_take_only_what_the_contract_takes():
    """A reference function runs in the grader's own process, outside the worker's limits: a
    student's function cannot make it compute on long doubles or huge arrays (minutes of CPU)."""
    from autograder.judge.session import CALLBACK_MAX_ENTRIES, _within_contract

    fine = (np.ones((50, 4)), np.arange(50), {"W1": np.ones((4, 6)), "b1": np.zeros(6)}, 0.1, None)
    assert _within_contract((list(fine), {"weight_decay": 0.0}))
    for bad in (np.ones((3, 3), dtype=np.longdouble), np.ones((2, 2, 2, 2)), np.ones((2, 2), dtype=object),
                np.zeros(CALLBACK_MAX_ENTRIES + 1, dtype=np.int8), np.longdouble(1.0), [[[[[[[[[[1]]]]]]]]]]):
        assert not _within_contract(([bad], {})), bad


def test_a_reference_callback_with_long_doubles_is_refused(tmp_path):
    """The forward under test calls the grader's relu with a long-double matrix: refused at once,
    the call fails in the worker, only test_forward's hidden part is lost."""
    slow = with_reference("forward", replace=[(
        "A1 = relu(Z1)", "A1 = relu(Z1)\n    if 'worker' in relu.__code__.co_filename:\n"
        "        relu(np.ones((1500, 1500), dtype=np.longdouble))")])
    submission = write_submission(tmp_path / "submission.ipynb", {"forward": slow})
    result = verify(SOURCE, submission, tmp_path / "work", sandbox=False, cell_timeout=CALL_TIMEOUT)
    verdict = result.cells["test_forward"]
    assert not verdict.passed and not verdict.timed_out  # refused, not computed until the deadline


# Honest notebooks the grader must run as the kernel did (a red team found each flagged as tampering).
HONEST_NOTEBOOK_HABITS = {
    "a docstring line starting with %": {"relu": with_reference("relu", replace=[(
        "return np.maximum(X, 0.0)", '"""Zeroes about 50\n    % of the inputs."""\n    return np.maximum(X, 0.0)')])},
    "name? and !shell left in a cell": {"relu": with_reference("relu", after="np.maximum?\nfiles = !ls")},
    "a %%script false cell keeping an old attempt": {"added": "%%script false --no-raise-error\n"
                                                     "def softmax(Z):\n    return np.exp(Z) / np.exp(Z).sum()"},
    "%time defining a name a function uses": {
        "relu": with_reference("relu", before="%time SCALE = 1.0", replace=[("return np.maximum(X, 0.0)",
                                                                            "return SCALE * np.maximum(X, 0.0)")])},
    "display() called in a function": {"relu": with_reference("relu", replace=[(
        "return np.maximum(X, 0.0)", "display(X.shape)\n    return np.maximum(X, 0.0)")])},
}


@pytest.mark.parametrize("habit", sorted(HONEST_NOTEBOOK_HABITS))
def test_honest_notebook_habits_are_run_as_ipython_runs_them(tmp_path, habit):
    submission = write_submission(tmp_path / "submission.ipynb", HONEST_NOTEBOOK_HABITS[habit])
    result = verify(SOURCE, submission, tmp_path / "work", sandbox=False)
    assert result.load_errors == {} and all(v.passed for v in result.cells.values()), \
        {gid: v.message for gid, v in result.cells.items() if not v.passed} or result.load_errors


def test_each_cell_of_the_submission_gets_the_cell_limit_while_loading(tmp_path):
    """Two slow self-checks of 0.6 cell limits each: fine in the kernel (60 s per cell), so fine here."""
    slow = "import time\ntime.sleep(6)"
    overrides = {"softmax": with_reference("softmax", after=slow), "relu": with_reference("relu", after=slow)}
    submission = write_submission(tmp_path / "submission.ipynb", overrides)
    result = verify(SOURCE, submission, tmp_path / "work", sandbox=False, cell_timeout=10)
    assert result.load_errors == {} and all(v.passed for v in result.cells.values()), result.notes


def test_a_cell_the_grader_could_not_load_is_a_failure_not_tampering():
    from autograder.grading.pipeline import _record
    from autograder.judge.verify import Verdict

    nb = copy.deepcopy(SOURCE_NB)  # its test cells have no error output: "passed" in the kernel
    verdicts = {gid: Verdict(gid != "test_relu", "" if gid != "test_relu" else "NameError: name 'relu' is not "
                             "defined", gid != "test_relu") for gid in GRADE_IDS}
    unclean = _record(nb, SOURCE_NB, verdicts, [], seed=1, loaded=False)
    assert unclean["tamper_cells"] == [] and unclean["cells"]["test_relu"]["status"] == "failed"
    clean = _record(nb, SOURCE_NB, verdicts, [], seed=1, loaded=True)
    assert clean["tamper_cells"] == ["test_relu"]  # the control: all loaded, the kernel's pass is suspect


def test_each_test_judges_the_code_above_it_as_the_kernel_did(tmp_path):
    """A student experiments after the training cells with a leaky relu: the kernel judged the relu
    above test_relu, and so does the grader (the later definition changes no verdict)."""
    submission = write_submission(tmp_path / "submission.ipynb",
                                  {"added": "def relu(X):\n    return np.where(X > 0, X, 0.01 * X)  # trying leaky"})
    result = verify(SOURCE, submission, tmp_path / "work", sandbox=False)
    assert all(v.passed for v in result.cells.values()), {g: v.message for g, v in result.cells.items() if not v.passed}
