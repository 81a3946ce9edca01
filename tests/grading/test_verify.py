"""autograder.judge.verify: the out-of-kernel re-verification, and the wire format it talks over.

The reference solution passes every cell (with and without the sandbox), the untouched release
notebook fails every cell, bug variants get exactly the verdicts the test cells give in-process,
verdicts are reproducible, and wire.py round-trips what the tests send and rejects the rest.
"""
import copy
import io
import resource
import struct
from pathlib import Path

import nbformat
import numpy as np
import pytest
from support import sandbox_ok

from autograder import testcells
from autograder.judge import wire
from autograder.judge.submission import student_code
from autograder.judge.verify import _memory_cap, verify
from autograder.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[2]

SOURCE = ROOT / "assignment.ipynb"
SOURCE_NB = testcells.read_notebook(SOURCE)
CELLS = testcells.test_cells(SOURCE_NB)
GRADE_IDS = [gid for gid, _, _ in CELLS]


SANDBOX_MODES = [False, pytest.param(True, marks=pytest.mark.skipif(
    not sandbox_ok(), reason="bubblewrap missing or unusable here"))]


def write_submission(path, overrides=(), added=()):
    """The source notebook with some solution cells replaced ({grade_id: source}) and code cells
    appended that the student added (no nbgrader metadata)."""
    nb = copy.deepcopy(SOURCE_NB)
    overrides = dict(overrides)
    for cell in nb.cells:
        gid = testcells.grade_id(cell)
        if cell.cell_type == "code" and gid in overrides:
            cell.source = overrides.pop(gid)
    assert not overrides, f"no solution cells {sorted(overrides)}"
    nb.cells += [nbformat.v4.new_code_cell(src) for src in added]
    nbformat.write(nb, str(path))
    return path


def verdicts(result):
    """{grade_id: (passed, message)} of a verification, comparable with in_process()."""
    return {gid: (verdict.passed, verdict.message) for gid, verdict in result.cells.items()}


def in_process(overrides, load_errors=()):
    """{grade_id: (passed, message)} of the test cells run in this process (trusted code only)."""
    codes = {**testcells.reference_solutions(SOURCE_NB), **overrides}
    namespace, errors = testcells.load_namespace(testcells.setup_source(SOURCE_NB), codes)
    assert set(errors) == set(load_errors)
    return testcells.run_test_cells(namespace, CELLS, seed=0)


# ---------------------------------------------------------------------------------------------
# whole submissions
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
def test_reference_solution_passes_every_cell(tmp_path, sandbox):
    result = verify(SOURCE, SOURCE, tmp_path / "work", sandbox=sandbox)
    assert verdicts(result) == {gid: (True, "") for gid in GRADE_IDS}
    assert all(verdict.visible_passed and not verdict.timed_out for verdict in result.cells.values())
    assert result.load_errors == {} and result.notes == []


def test_untouched_release_fails_every_cell(released_course, tmp_path):
    source = released_course.notebook(released_course.source)
    release = released_course.notebook(released_course.release)
    result = verify(source, release, tmp_path, sandbox=False)
    assert set(result.cells) == set(GRADE_IDS)
    for gid, (passed, message) in verdicts(result).items():
        assert not passed and message.startswith("NotImplementedError"), (gid, message)
        assert not result.cells[gid].visible_passed


# Bugs from the mutation catalogue; the in-place ones are seen out of the kernel because the worker
# reports changed arguments and the grader mirrors them onto its own arrays and dicts.
BUGS = {name: VARIANTS[name].code for name in (
    "dz_missing_1_over_n", "relu_mask_missing", "weight_decay_grad_c_not_2c", "softmax_inplace",
    "loss_and_grad_modifies_params")}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_bug_variants_get_the_in_process_verdicts(tmp_path, bug):
    submission = write_submission(tmp_path / "submission.ipynb", BUGS[bug])
    expected = in_process(BUGS[bug])
    assert not all(passed for passed, _ in expected.values())
    cells = verdicts(verify(SOURCE, submission, tmp_path / "work", sandbox=False))
    assert {gid: passed for gid, (passed, _) in cells.items()} == {gid: p for gid, (p, _) in expected.items()}
    if bug != "loss_and_grad_modifies_params":  # its grads alias params in-process, not over the wire,
        assert cells == expected                # so a later call changes earlier results only there


def test_same_seed_same_verdicts(tmp_path):
    submission = write_submission(tmp_path / "submission.ipynb", BUGS["relu_mask_missing"])
    runs = [verify(SOURCE, submission, tmp_path / "work", sandbox=False, seed=7).cells for _ in range(2)]
    assert runs[0] == runs[1]
    assert not runs[0]["test_gradients"][0]


def test_unreadable_submission_fails_every_cell(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ this is not a notebook")
    result = verify(SOURCE, broken, tmp_path / "work", sandbox=False)
    assert set(result.cells) == set(GRADE_IDS)
    assert all(not passed and "could not be read" in message for passed, message in verdicts(result).values())


def test_student_code_is_solution_cells_and_added_cells(tmp_path):
    path = write_submission(tmp_path / "s.ipynb", {"relu": "%time\nrelu = abs"}, added=["!ls\nx = 1"])
    nb = testcells.read_notebook(path)
    nb.cells[1].source = "import os; os._exit(1)"  # the locked imports cell, edited: ignored
    code = student_code(SOURCE_NB, nb)
    labels = [label for label, _ in code]
    assert labels == [gid for gid in testcells.solution_cells(SOURCE_NB)] + [f"cell {len(nb.cells) - 1}"]
    # magics and shell lines become what IPython runs (calls the worker answers), not deleted lines
    assert dict(code)["relu"] == "get_ipython().run_line_magic('time', '')\nrelu = abs\n"
    assert code[-1][1] == "get_ipython().system('ls')\nx = 1\n"


def test_load_errors_are_reported_and_the_rest_still_runs(tmp_path):
    broken = {"relu": "def relu(X):\n    return X +"}
    submission = write_submission(tmp_path / "submission.ipynb", broken, added=["raise ValueError('scratch work')"])
    result = verify(SOURCE, submission, tmp_path / "work", sandbox=False)
    assert result.load_errors["relu"].startswith("SyntaxError")
    # the scratch cell lies below every test: like the kernel, no test sees it, so the grader never runs it
    assert f"cell {len(SOURCE_NB.cells)}" not in result.load_errors
    assert verdicts(result) == in_process(broken, load_errors={"relu"})
    assert verdicts(result)["test_relu"] == (False, "NameError: name 'relu' is not defined")
    assert verdicts(result)["test_softmax"] == (True, "")


def test_total_timeout_bounds_the_verification(tmp_path):
    hang = "\n    while True:\n        pass\n"
    overrides = {"softmax": "def softmax(Z):" + hang, "one_hot": "def one_hot(y, k):" + hang,
                 "softmax_cross_entropy": "def softmax_cross_entropy(Z, y):" + hang}
    submission = write_submission(tmp_path / "submission.ipynb", overrides)
    result = verify(SOURCE, submission, tmp_path / "work", sandbox=False, cell_timeout=1, total_timeout=2.5)
    assert not any(verdict.passed for verdict in result.cells.values())
    assert all(verdict.timed_out for verdict in result.cells.values())
    # the total limit, not just each cell's, stopped it (no wall-clock assert: shared machines are noisy)
    assert verdicts(result)["test_predict"] == (
        False, "timed out: not run, the verification time limit of 2.5 s was reached")


def test_memory_cap_limits_allocations_in_the_grader():
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MemoryError):
        with _memory_cap(1 << 30):
            np.empty((3 << 30) // 8)
    assert resource.getrlimit(resource.RLIMIT_AS) == before


# ---------------------------------------------------------------------------------------------
# wire
# ---------------------------------------------------------------------------------------------

def roundtrip(value):
    stream = io.BytesIO()
    wire.send(stream, value)
    stream.seek(0)
    return wire.receive(stream)


def test_wire_round_trips_nested_values():
    value = {"op": "call", "args": [np.arange(6.0).reshape(2, 3), (1, 2.5, None, True, "s"),
                                    {"W1": np.asfortranarray(np.ones((3, 2))), "b1": np.zeros(0)}],
             "scalars": (np.float64(0.1), np.int64(-3), np.float32(1.5), np.bool_(True), np.complex128(1j)),
             "nan": float("nan"), "big": 2 ** 70, "empty": {}}
    for _ in range(2):  # the second time through the header caches
        back = roundtrip(value)
        assert back.keys() == value.keys()
        a, t, d = back["args"]
        assert a.dtype == np.float64 and np.array_equal(a, value["args"][0]) and a.flags.writeable
        assert t == (1, 2.5, None, True, "s") and isinstance(t, tuple)
        assert np.array_equal(d["W1"], np.ones((3, 2))) and d["b1"].shape == (0,)
        assert [type(x) for x in back["scalars"]] == [np.float64, np.int64, np.float32, np.bool_, np.complex128]
        assert back["scalars"][0] == 0.1 and np.isnan(back["nan"]) and back["big"] == 2 ** 70
        assert back["empty"] == {}


@pytest.mark.parametrize("value", [np.array([1, None], dtype=object), np.array(["text"]), {1: "int key"},
                                   object(), [lambda: 0], np.datetime64(1, "D")])
def test_wire_rejects_what_it_cannot_send(value):
    with pytest.raises(wire.WireError):
        wire.encode(value)


def test_wire_rejects_deep_nesting_and_oversized_frames(monkeypatch):
    deep = []
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError):
        wire.encode(deep)
    monkeypatch.setattr(wire, "MAX_FRAME", 1 << 16)
    with pytest.raises(wire.WireError, match="exceed"):
        wire.encode(np.zeros(1 << 14))
    # a frame announcing more than the limit is refused before anything is read
    stream = io.BytesIO(struct.pack(">Q", (1 << 16) + 1) + b"x" * 100)
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.receive(stream)


def test_wire_rejects_malformed_frames():
    good = wire.encode({"a": np.arange(3)})
    payload = good[8:]
    hlen = struct.unpack(">I", payload[:4])[0]
    npy = payload[4 + hlen:]
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    bad = [
        b"",                                                  # no header length
        payload[:4] + b"{not json" + npy,                     # header is not JSON
        payload[:-1],                                         # truncated array
        payload + b"extra",                                   # trailing bytes
        payload.replace(b'"t":"array"', b'"t":"bogus"'),      # unknown tag
        payload[:4 + hlen] + b"PK\x03\x04" + npy[4:],         # not a .npy blob (a zip)
    ]
    header = b'{"v":{"t":"array","i":0},"a":[%d]}' % len(pickled.getvalue())
    bad.append(struct.pack(">I", len(header)) + header + pickled.getvalue())  # object array: never unpickled
    for payload_bad in bad:
        with pytest.raises(wire.WireError):
            wire.decode(payload_bad)
    with pytest.raises(wire.WireClosed):
        wire.receive(io.BytesIO(good[:20]))
