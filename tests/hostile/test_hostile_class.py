"""A class of hostile submissions graded through the real pipeline, in one batch.

Each hostile student hands in the reference solution with ONE attack in it (in a solution cell, in a
code cell added after one, or in a locked cell). The whole class -- and two honest students -- is
collected and graded by one `grade(..., workers=2, sandbox=True)` call. Then, per student, the exact
autograded points it deserves and the flags it must raise; and for the class: the batch finished,
nothing an attack did reached another student, the course files or the kit, the gradebook only
changed through the grader, no connection reached the test's listeners, and nothing a student can
get back (its autograded folder, its own cells' outputs) holds a hidden-test line or gradebook bytes.

Attacks that test whether they escaped also sabotage their own function when they did (e.g. relu
doubles its output if any secret was readable), so an escape shows up in the points too, in the
kernel and in the out-of-kernel verification alike. Nothing here can hurt the machine if the sandbox
failed: the fork bomb is bounded, the memory bomb only reserves address space, writes go to the
test's own course or to probe files that are removed afterwards, kit files are only opened.

A named pipe left in the kernel's working directory once aborted grade() for everyone, so that
attack is graded on its own, on a copy of the course (the last test).
"""
import csv
import json
import re
import secrets
import shutil
import socket
import sysconfig
import time
from pathlib import Path
from typing import NamedTuple

import nbformat
import pytest
from hostile_submissions import (
    SQLITE_MAGIC,
    Listener,
    added,
    build_notebook,
    cell_output,
    code,
    deleted,
    digests,
    fingerprint,
    locked,
    modes,
    student_readable,
    variant,
)
from support import sandbox_ok

from autograder.course import Course
from autograder.judge.verify import verify
from autograder.testcells import read_notebook
from autograder.verbs.collect import collect
from autograder.verbs.export import export
from autograder.verbs.feedback import feedback, hidden_lines
from autograder.verbs.grade import grade
from autograder.verbs.release import release

ROOT = Path(__file__).resolve().parents[2]

POINTS = {"test_softmax": 2, "test_one_hot": 1, "test_sce_loss": 2, "test_sce_grad": 3, "test_relu": 1,
          "test_forward": 2, "test_loss_value": 2, "test_gradients": 4, "test_weight_decay": 2,
          "test_predict": 1, "test_train": 2}
HONEST = ("honest_a", "honest_b")
CELL_TIMEOUT, SUBMISSION_TIMEOUT = 10, 60

# ------------------------------------------------------------------------------------------------
# The attacks ($COURSE: the real course root, which a student could guess; $KIT: the kit's repo;
# $SITE: the venv's site-packages; $PORT/$SOCK: the test's TCP port / abstract unix socket;
# $TOOL: an executable file of the test's, standing for any program on the grader's machine)
# ------------------------------------------------------------------------------------------------

READ_SECRETS = """
import glob
_paths = ["../../../source/backprop/assignment.ipynb", "../../../gradebook.db", "../../../../gradebook.db",
          "$COURSE/source/backprop/assignment.ipynb", "$COURSE/gradebook.db", "$KIT/assignment.ipynb",
          "/proc/1/root$COURSE/gradebook.db", "/proc/1/cwd/../../../gradebook.db"]
_paths += [p for up in range(1, 7) for pattern in ("gradebook.db", "*/source/backprop/*.ipynb", "*/*/gradebook.db")
           for p in glob.glob("../" * up + pattern)]
_paths += glob.glob("/tmp/**/gradebook.db", recursive=True) + glob.glob("/tmp/**/source/*/*.ipynb", recursive=True)
_found = {}
for _p in _paths:
    try:
        with open(_p, "rb") as _f:
            _found[_p] = _f.read(1 << 20)
    except OSError:
        pass
print(f"READER: {len(_found)} of {len(_paths)} paths readable {sorted(_found)}")
with open("loot.txt", "wb") as _f:
    _f.write(b"".join(_found.values()))
"""

LINK_SECRETS = """
import os
for _target, _name in [("../../../source/backprop/assignment.ipynb", "notes.txt"),
                       ("../../../gradebook.db", "grades.bak"),
                       ("$COURSE/source/backprop/assignment.ipynb", "notes_abs.txt"),
                       ("$COURSE/submitted", "classmates"), ("$TOOL", "tool.txt")]:
    try:
        os.symlink(_target, _name)
    except OSError as _e:
        print("LINKER: cannot link", _name, _e)
print("LINKER: links", sorted(n for n in os.listdir(".") if os.path.islink(n)))
"""

WRITE_ELSEWHERE = """
import sqlite3
_done = []
for _p in ["$COURSE/submitted/honest_a/backprop/pwned.txt", "$COURSE/autograded/honest_a/backprop/pwned.txt",
           "$COURSE/source/backprop/pwned.txt", "$COURSE/release/backprop/pwned.txt", "$COURSE/pwned.txt",
           "$KIT/pwned_$TOKEN.txt", "$SITE/pwned_$TOKEN.txt", "../../honest_a/backprop/pwned.txt"]:
    try:
        with open(_p, "x") as _f:  # a new file
            _f.write("pwned by writer\\n")
        _done.append(_p)
    except OSError:
        pass
for _p in ["$COURSE/submitted/honest_a/backprop/assignment.ipynb", "$KIT/assignment.ipynb", "$KIT/helpers.py",
           "$COURSE/gradebook.db", "../../../gradebook.db"]:
    try:
        open(_p, "r+b").close()  # an existing file opened for writing (never written: enough to know)
        _done.append(_p)
    except OSError:
        pass
for _db in ["$COURSE/gradebook.db", "../../../gradebook.db"]:
    try:
        with sqlite3.connect(f"file:{_db}?mode=rw", uri=True) as _c:
            _c.execute("INSERT INTO student (id) VALUES ('mallory')")
        _done.append(_db)
    except Exception:
        pass
for _p in ["/tmp/pwned_$TOKEN.txt", "/dev/shm/pwned_$TOKEN.txt"]:  # private to the sandbox: allowed
    with open(_p, "w") as _f:
        _f.write("pwned")
print(f"WRITER: wrote {_done}")
"""

CONNECT_OUT = """
import socket
import urllib.request
_reached = []
for _family, _address in [(socket.AF_INET, ("127.0.0.1", $PORT)), (socket.AF_UNIX, chr(0) + "$SOCK")]:
    try:
        with socket.socket(_family, socket.SOCK_STREAM) as _s:
            _s.settimeout(3)
            _s.connect(_address)
            _s.sendall(b"hello from a student")
        _reached.append(repr(_address))
    except OSError as _e:
        print("NETWORK:", repr(_address), type(_e).__name__)
for _url in ["http://1.1.1.1/", "https://pypi.org/simple/"]:
    try:
        urllib.request.urlopen(_url, timeout=3).read(100)
        _reached.append(_url)
    except Exception as _e:
        print("NETWORK:", _url, type(_e).__name__)
print(f"NETWORK: reached {_reached}")
"""

READ_HISTORY = """
# IPython's record of the cells the kernel ran: the test cells' part of it (the student's own code
# is no secret, but the hidden tests' kit holds reference solutions the leak scan would flag)
_tests = [_cell for _cell in In if "visible tests passed" in _cell]
print(f"HISTORY: {len(_tests)} test cells")
print("\\n".join(_tests))
"""

PATCH_NUMPY = """
np.allclose = lambda *a, **k: True
np.array_equal = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
"""

PATCH_HELPERS = """
import helpers
helpers.assert_close = helpers.assert_gradient_close = helpers.assert_unchanged = lambda *a, **k: None
assert_close = assert_gradient_close = assert_unchanged = lambda *a, **k: None
try:
    get_ipython().showtraceback = lambda *a, **k: None
except NameError:  # not in a kernel
    pass
print("PATCHER: helpers and showtraceback patched")
"""

FORK_BOMB = """
_kids, _error = [], None
for _ in range(300):  # bounded: a real bomb's children would fork too
    try:
        _pid = os.fork()
    except OSError as _e:
        _error = _e.strerror
        break
    if _pid == 0:
        time.sleep(2)
        os._exit(0)
    _kids.append(_pid)
for _pid in _kids:
    os.waitpid(_pid, 0)
print(f"FORK: {len(_kids)} children, then {_error}")
"""

MEMORY_BOMB = """
try:
    _ballast = np.empty(8 << 30, dtype=np.uint8)  # 8 GiB of address space (reserved, never touched)
except MemoryError:
    _ballast = None
print(f"HOG: 8 GiB {'granted' if _ballast is not None else 'refused'}")
"""


class Attack(NamedTuple):
    edits: list        # how the reference submission is changed (hostile_submissions.py)
    lost: set          # test cells that must score 0 (every other cell: full points)
    tamper: set        # cells that must be flagged "tamper suspected" (passed in the kernel only)
    marker: str        # a line the attack prints in the kernel: proof that it ran ("" if it can't show)
    reason: str


CORPUS = {
    "reader": Attack([code("relu", before=READ_SECRETS,
                           replace=[("return np.maximum(X, 0.0)",
                                     "return np.maximum(X, 0.0) * (2.0 if _found else 1.0)")])],
                     set(), set(), "READER: 0 of",
                     "reads the hidden tests / gradebook by relative, absolute, /proc and /tmp paths: sees nothing, "
                     "relu stays right"),
    "linker": Attack([added("relu", LINK_SECRETS)], set(), set(), "LINKER: links",
                     "symlinks the hidden tests, the gradebook, the classmates' folder and a program of the grader's "
                     "into its cwd: nothing may come back, no permission may change"),
    "writer": Attack([code("one_hot", before=WRITE_ELSEWHERE,
                           replace=[("return Y", "return Y * (2.0 if _done else 1.0)")])],
                     set(), set(), "WRITER: wrote []",
                     "writes other students' folders, the course, the kit, the venv, the gradebook: all refused"),
    "networker": Attack([code("softmax_cross_entropy", before=CONNECT_OUT,
                              replace=[("return float(loss), dZ",
                                        "return float(loss) + (1.0 if _reached else 0.0), dZ")])],
                        set(), set(), "NETWORK: reached []",
                        "connects to the grader's 127.0.0.1 port, its abstract unix socket, the internet: no network"),
    "history_reader": Attack([added("predict", READ_HISTORY)], set(), set(), "HISTORY: ",
                             "prints the kernel's input history after the test cells ran: the hidden blocks were "
                             "never in it (StripHiddenTests), so nothing hidden comes back"),
    "numpy_patcher": Attack([code("train", before=PATCH_NUMPY,
                                  replace=[("np.random.default_rng(seed)", "np.random.default_rng()")])],
                            {"test_train"}, {"test_train"}, "",
                            "unseeded (non-deterministic) train, hidden by np.allclose / np.array_equal patched "
                            "to True"),
    "helper_patcher": Attack([code("softmax_cross_entropy", after=PATCH_HELPERS,
                                   replace=[("dZ /= n", "pass  # the 1/n left out")])],
                             {"test_sce_grad", "test_gradients"}, {"test_sce_grad", "test_gradients"},
                             "PATCHER: helpers",
                             "dZ lacks 1/n, hidden by no-op assert_close / assert_gradient_close / assert_unchanged "
                             "and showtraceback"),
    "exit_at_import": Attack([code("relu", after='print("EXIT: bye", flush=True)\nos._exit(0)')],
                             set(POINTS) - {"test_softmax", "test_one_hot", "test_sce_loss", "test_sce_grad"}, set(),
                             "",
                             "os._exit(0) at import of the relu cell kills any process that runs it: the kernel dies "
                             "there and the verifier loads the code without that cell, so relu is undefined and "
                             "every test from relu's on fails; the cells before it keep their points"),
    "exit_in_function": Attack([code("predict", replace=[("Z2, _ = forward",
                                                          "if len(X) != 3:\n        os._exit(0)\n"
                                                          "    Z2, _ = forward")])],
                               {"test_predict"}, set(), "",
                               "predict calls os._exit(0) on the hidden test's input: only test_predict is lost"),
    "kill_in_function": Attack([code("relu", replace=[("return np.maximum",
                                                       "if np.ndim(X) == 3:\n        os.kill(os.getpid(), 9)\n"
                                                       "    return np.maximum")])],
                               {"test_relu"}, set(), "",
                               "relu SIGKILLs its own process on the hidden test's 3-D input: only test_relu is lost"),
    "sys_exit": Attack([code("one_hot", after='import sys\nsys.exit("one_hot: done")'),
                        code("relu", before="import sys",
                             replace=[("return np.maximum",
                                       "if np.ndim(X) == 3:\n        sys.exit(0)\n    return np.maximum")])],
                       {"test_relu"}, set(), "SystemExit",
                       "sys.exit() after defining one_hot (harmless), and in relu on the hidden input: test_relu lost"),
    "looper": Attack([code("softmax", replace=[("shifted = Z",
                                                "while np.shape(Z) == (7, 5):\n        pass\n    shifted = Z")])],
                     {"test_softmax"}, set(), "",
                     "softmax loops forever on the hidden test's (7, 5) input: stopped by the cell / call timeouts"),
    "memory_hog": Attack([code("relu", before=MEMORY_BOMB,
                               replace=[("return np.maximum(X, 0.0)",
                                         "if np.ndim(X) == 3:\n"
                                         "        return np.maximum(X, 0.0) + np.empty(8 << 30, np.uint8)[0]\n"
                                         "    return np.maximum(X, 0.0) * (2.0 if _ballast is not None else 1.0)")])],
                         {"test_relu"}, set(), "HOG: 8 GiB refused",
                         "allocates 8 GiB at import (refused) and in relu on the hidden input (MemoryError): "
                         "test_relu lost"),
    "fork_bomber": Attack([code("one_hot", before=FORK_BOMB,
                                replace=[("return Y", "return Y * (2.0 if len(_kids) >= 64 else 1.0)")])],
                          set(), set(), "FORK: ",
                          "forks 300 children at import: the process limit (64) stops it, one_hot stays right"),
    "printer": Attack([code("softmax", after="for _i in range(0, 1_000_000, 1000):\n"
                                             "    print('\\n'.join(f'line {i}' for i in range(_i, _i + 1000)), "
                                             "flush=True)")],
                      set(), set(), "line 0",
                      "prints a million lines at import, a thousand a message: output capped, nothing lost"),
    "shouter": Attack([code("softmax", after="print('\\n'.join(f'line {i}' for i in range(1_000_000)))")],
                      set(), set(), "[output lost",
                      "prints a million lines at import in one 13 MB message: refused whole, nothing else lost"),
    "syntax_error": Attack([code("softmax", replace=[("E = np.exp(shifted)", "E = np.exp(shifted")])],
                           {"test_softmax"}, set(), "SyntaxError",
                           "a SyntaxError in the softmax cell: softmax is undefined, every other function is honest"),
    "deleted_test": Attack([deleted("test_softmax"),
                            code("softmax", replace=[("Z - np.max(Z, axis=-1, keepdims=True)", "Z")])],
                           {"test_softmax"}, set(), "",
                           "deletes test_softmax (which also holds the hidden tests' kit) and drops softmax's "
                           "max-shift"),
    "edited_test": Attack([locked("test_relu", 'print("relu: visible tests passed.")'),
                           locked("imports", after="assert_close = lambda *a, **k: None"),
                           code("relu", replace=[("return np.maximum(X, 0.0)",
                                                  "return np.abs(X) if np.ndim(X) == 3 else np.maximum(X, 0.0)")])],
                          {"test_relu"}, set(), "",
                          "relu is abs() on the hidden 3-D input; its locked test cell edited to a print and the "
                          "locked imports cell to patch assert_close: nbgrader restores both, the kernel fails it too"),
    "hardcoded_softmax": Attack([variant("softmax_hardcoded")], {"test_softmax"}, set(), "",
                                "softmax returns the visible tests' answers, uniform rows otherwise"),
    "hardcoded_forward": Attack([variant("forward_hardcoded")], {"test_forward"}, set(), "",
                                "forward returns the visible test's logits, zeros otherwise"),
}
STUDENTS = sorted([*CORPUS, *HONEST])


def expected_scores(student):
    lost = CORPUS[student].lost if student in CORPUS else set()
    return {cell: 0.0 if cell in lost else float(points) for cell, points in POINTS.items()}


quiet = lambda *args, **kwargs: None  # noqa: E731

# ------------------------------------------------------------------------------------------------
# The class, graded once
# ------------------------------------------------------------------------------------------------


class Graded(NamedTuple):
    course: Course
    outcomes: dict     # student -> Outcome
    lines: list        # what grade() echoed
    seconds: float
    before: dict       # fingerprints before grading
    after: dict
    connections: list  # what reached the listeners while the class was graded
    control: list      # (recorded, made): connections made from outside the sandbox after grading
    modes_before: dict # permission bits of the protected files and of $TOOL
    modes_after: dict
    gradebook_before: dict
    probes: list       # files the attacks must not have been able to create on the host
    source_nb: object


def _gradebook_summary(course):
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        return {"students": sorted(s.id for s in gb.students),
                "assignments": sorted(a.name for a in gb.assignments),
                "notebooks": sorted(n.name for a in gb.assignments for n in a.notebooks),
                "max_score": {a.name: a.max_score for a in gb.assignments},
                "grade_cells": sorted(c.name for a in gb.assignments for n in a.notebooks for c in n.grade_cells)}


def _protected(course, students):
    return [course.source, course.release, ROOT / "assignment.ipynb", ROOT / "helpers.py",
            *(course.submitted(s) for s in students)]


def _connect_from_outside(listener, token):
    """The control of test_no_connection_reached_the_graders_sockets: one connection to each of the
    listener's sockets from this process, outside any sandbox. Returns the (family, address) each
    must be recorded as."""
    made = []
    for family, address, own in [(socket.AF_INET, ("127.0.0.1", listener.port), ("127.0.0.1", 0)),
                                 (socket.AF_UNIX, "\0" + listener.name, f"\0hostile-control-{token}")]:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.bind(own)  # a named client, so the listener's record says it was this one
            sock.connect(address)
            made.append((family.name, sock.getsockname()))
            # the listener records a connection, then closes it: end of stream here means recorded
            assert sock.recv(1) == b""
    return made


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not sandbox_ok():
        pytest.skip("bubblewrap sandbox unusable here: the hostile class needs it")
    base = tmp_path_factory.mktemp("hostile")
    course = Course(base / "course")
    release(course, cell_timeout=CELL_TIMEOUT, submission_timeout=SUBMISSION_TIMEOUT, echo=quiet)
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    token = secrets.token_hex(6)
    site = sysconfig.get_paths()["purelib"]
    listener = Listener(token)
    tool = base / "grader_tool.sh"
    tool.write_text("#!/bin/sh\necho a program of the grader's\n")
    tool.chmod(0o755)
    values = {"COURSE": str(course.root), "KIT": str(ROOT), "SITE": site, "PORT": listener.port,
              "SOCK": listener.name, "TOKEN": token, "TOOL": str(tool)}
    probes = [ROOT / f"pwned_{token}.txt", Path(site) / f"pwned_{token}.txt", Path(f"/tmp/pwned_{token}.txt"),
              Path(f"/dev/shm/pwned_{token}.txt")]

    folder = base / "class"
    for student in STUDENTS:
        edits = CORPUS[student].edits if student in CORPUS else []
        (folder / student).mkdir(parents=True)
        nbformat.write(build_notebook(release_nb, source_nb, edits, values), str(folder / student / "assignment.ipynb"))
    collected = collect(folder, course, echo=quiet)
    assert all(collected[s] == "collected" for s in STUDENTS), collected

    protected = _protected(course, STUDENTS)
    before, gradebook_before = fingerprint(*protected), _gradebook_summary(course)
    modes_before = modes(*protected, tool)
    lines = []
    start = time.monotonic()
    try:
        outcomes = grade(course, workers=2, sandbox=True, progress=False, echo=lines.append)
        connections = list(listener.connections)
        made = _connect_from_outside(listener, token)
    finally:
        recorded = listener.stop()
    seconds = time.monotonic() - start
    after, modes_after = fingerprint(*protected), modes(*protected, tool)
    export(course, echo=quiet)
    print(f"\nhostile class: {len(STUDENTS)} students graded in {seconds:.1f} s", *lines, sep="\n  ")
    control = (recorded[len(connections):], made)
    yield Graded(course, {o.student: o for o in outcomes}, lines, seconds, before, after, connections, control,
                 modes_before, modes_after, gradebook_before, [p for p in probes if p.exists()], source_nb)
    for probe in probes:  # only if the sandbox failed; never leave them behind
        if probe.exists():
            probe.unlink()


@pytest.fixture(scope="module")
def grades_csv(graded):
    with open(graded.course.root / "exports" / graded.course.assignment / "grades.csv", newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


# ------------------------------------------------------------------------------------------------
# The class as a whole
# ------------------------------------------------------------------------------------------------

def test_the_batch_finished_and_honest_students_got_full_marks(graded, grades_csv):
    assert sorted(graded.outcomes) == STUDENTS
    assert [line.split(":")[0] for line in graded.lines] == STUDENTS  # one line per student
    for student in HONEST:
        outcome = graded.outcomes[student]
        assert outcome.ok and not outcome.tamper_cells and not outcome.notes, outcome
        assert outcome.scores == expected_scores(student)
        assert grades_csv[student]["score"] == "22"
    status = json.loads((graded.course.root / "grading_status.json").read_text())[graded.course.assignment]
    assert sorted(status) == STUDENTS


def test_course_files_kit_and_other_students_are_unchanged(graded):
    changed = sorted(p for p in set(graded.before) | set(graded.after) if graded.before.get(p) != graded.after.get(p))
    assert not changed, changed
    assert not graded.probes, f"files created outside the sandbox: {graded.probes}"


def test_no_file_outside_the_sandbox_changed_its_permissions(graded):
    changed = {p: f"{graded.modes_before.get(p)} -> {graded.modes_after.get(p)}" for p in graded.modes_before
               if graded.modes_before.get(p) != graded.modes_after.get(p)}
    assert not changed, ("nbgrader's autograde chmods every file of the autograded folder to 0444 with os.chmod, which "
                         f"follows the symlinks the student's kernel left there (linker): {changed}")


def test_gradebook_changed_only_through_the_grader(graded):
    after = _gradebook_summary(graded.course)
    merged = sorted(s for s, o in graded.outcomes.items() if o.ok)
    assert graded.gradebook_before["students"] == []
    assert after["students"] == merged  # no 'mallory', nobody the grader did not merge
    for key in ("assignments", "notebooks", "max_score", "grade_cells"):
        assert after[key] == graded.gradebook_before[key], key
    assert after["max_score"] == {"backprop": 30.0}


def test_no_connection_reached_the_graders_sockets(graded):
    recorded, made = graded.control
    # the control: the same listener records connections made from outside the sandbox (so an
    # empty list below means nothing connected, not a listener that records nothing)
    assert [family for family, _ in made] == ["AF_INET", "AF_UNIX"] and recorded == made
    assert graded.connections == []


# ------------------------------------------------------------------------------------------------
# Each student
# ------------------------------------------------------------------------------------------------

def _readable(graded, student):
    return student_readable(graded.course.autograded(student), graded.course.source)


def _hidden(graded):
    """Lines of the hidden tests that the release does not show anyway (e.g. `with quiet():`)."""
    # the cells' text, not the file's JSON, where a line with a quote is escaped and never matched
    released = "\n".join(cell.source for cell in read_notebook(graded.course.notebook(graded.course.release)).cells)
    hidden = {line for line in hidden_lines(graded.source_nb) if line not in released}
    assert len(hidden) > 50
    return hidden


def _secrets_in(graded, student, folder=None):
    """What of the hidden tests, the gradebook or other students' work the student could get back
    from its autograded folder (or `folder`)."""
    folder = folder or graded.course.autograded(student)
    hidden = _hidden(graded)
    leaks = []
    for where, text in student_readable(folder, graded.course.source):
        lines = sorted(line for line in hidden if line in text)
        sqlite = SQLITE_MAGIC.decode("latin-1") in text
        if lines or sqlite:
            leaks.append(f"{where}: {len(lines)} hidden-test lines" + (" + gradebook bytes" if sqlite else ""))
    others = {digest: path for s in STUDENTS if s != student
              for digest, path in digests(graded.course.submitted(s)).items()}
    for digest, path in digests(folder).items():
        if digest in others and path.name != "timestamp.txt":
            leaks.append(f"{path.relative_to(folder)}: a copy of {others[digest].relative_to(graded.course.root)}")
    return leaks


def _summary(leaks):
    return f"{len(leaks)} files, e.g. {leaks[:3]}" + (f" ... {leaks[-1]}" if len(leaks) > 3 else "")


@pytest.mark.parametrize("student", sorted(CORPUS))
def test_hostile_student_gets_exactly_what_it_deserves(graded, grades_csv, student):
    attack, outcome = CORPUS[student], graded.outcomes[student]
    assert outcome.ok, outcome.message
    assert outcome.scores == expected_scores(student), attack.reason
    row = grades_csv[student]
    assert {cell: float(row[cell]) for cell in POINTS} == expected_scores(student)
    assert float(row["score"]) == sum(expected_scores(student).values())
    assert set(outcome.tamper_cells) == attack.tamper, (outcome.tamper_cells, outcome.notes)
    if attack.tamper:
        assert "TAMPER SUSPECTED" in outcome.message
    if attack.marker:
        printed = "\n".join(text for _, text in _readable(graded, student))
        assert attack.marker in printed, f"the attack did not run as planned: {printed[-2000:]}"
    leaks = _secrets_in(graded, student)
    assert not leaks, (f"{student}'s autograded folder holds hidden tests / gradebook bytes / classmates' work "
                       f"(the grader copied what its symlinks point to): {_summary(leaks)}")


def test_reader_saw_nothing_in_kernel_or_verifier(graded):
    # relu doubles its output when anything was readable; it passed, in the kernel and outside.
    outcome = graded.outcomes["reader"]
    assert outcome.kernel_scores["test_relu"] == 1.0 and outcome.scores["test_relu"] == 1.0
    printed = "\n".join(text for _, text in _readable(graded, "reader"))
    assert re.search(r"READER: 0 of \d+", printed), printed[-1000:]
    # What the kernel wrote (loot.txt) never leaves the scratch course: only nbgrader's files are merged.
    assert not (graded.course.autograded("reader") / "loot.txt").exists()


def test_fork_bomb_was_stopped_by_the_process_limit(graded):
    printed = cell_output(graded.course.notebook(graded.course.autograded("fork_bomber")), "one_hot")
    forks, error = re.search(r"FORK: (\d+) children, then (.*)", printed).groups()
    assert int(forks) < 64 and error != "None", printed


def test_a_million_lines_are_capped(graded):
    notebook = graded.course.notebook(graded.course.autograded("printer"))
    printed = cell_output(notebook, "softmax")
    assert "line 0" in printed and "line 999999" not in printed and len(printed.splitlines()) <= 300
    assert notebook.stat().st_size < 2 << 20
    shouted = graded.course.notebook(graded.course.autograded("shouter"))
    assert "line 0" not in cell_output(shouted, "softmax") and shouted.stat().st_size < 2 << 20


def test_timeouts_and_dead_workers_are_reported_as_notes(graded):
    looper = graded.outcomes["looper"]
    assert any(note.startswith("timed out: the cell time limit") and "softmax()" in note for note in looper.notes), \
        looper.notes
    assert looper.timed_out_cells == ["test_softmax"] and not looper.tamper_cells  # a timeout is not tampering
    # the kernel never ran the hidden test that loops: the verdict in the notebook is the grader's
    assert "test_softmax failed: WorkerError: timed out: the cell time limit of 10 s" in cell_output(
        graded.course.notebook(graded.course.autograded("looper")), "test_softmax")
    deleted = graded.outcomes["deleted_test"]  # the kernel had no kit: the trusted cells passed outside
    assert any("test_softmax: missing from the notebook" in note for note in deleted.notes), deleted.notes


def test_feedback_hands_back_nothing_secret(graded):
    pages = feedback(graded.course, ["honest_a", "linker"], echo=quiet)
    assert pages["honest_a"] and not _secrets_in(graded, "honest_a", graded.course.feedback("honest_a"))
    leaks = _secrets_in(graded, "linker", graded.course.feedback("linker"))
    assert not leaks, (f"nbgrader's feedback copies the linker's autograded files (its symlinks' targets) into "
                       f"feedback/linker/backprop, which is handed to the student: {_summary(leaks)}")


@pytest.mark.parametrize("student", ["exit_in_function", "kill_in_function"])
def test_the_verifier_alone_can_score_a_kernel_killer(graded, tmp_path, student):
    """What the grader would have to grade a submission whose kernel died in one test: the verifier
    restarts its worker and fails only the cell that killed it."""
    course = graded.course
    result = verify(course.notebook(course.source), course.notebook(course.submitted(student)), tmp_path, sandbox=True)
    assert {gid for gid, verdict in result.cells.items() if not verdict.passed} == CORPUS[student].lost
    assert any("worker died" in note and "restarted" in note for note in result.notes), result.notes


# ------------------------------------------------------------------------------------------------
# An attack that stops the batch: graded on its own, on a copy of the course
# ------------------------------------------------------------------------------------------------

MAKE_FIFO = 'os.mkfifo("pipe")\nprint("FIFO: made")'


def test_a_named_pipe_left_in_the_cwd_does_not_stop_the_batch(graded, tmp_path):
    """A student's kernel can leave any file in its working directory, which becomes its autograded
    folder: a named pipe there must not stop the other students' grading."""
    course = Course(tmp_path / "course")
    shutil.copytree(graded.course.root, course.root)
    folder = tmp_path / "late"
    (folder / "fifo_maker").mkdir(parents=True)
    nb = build_notebook(read_notebook(course.notebook(course.release)), graded.source_nb,
                        [added("relu", MAKE_FIFO)], {})
    nbformat.write(nb, str(folder / "fifo_maker" / "assignment.ipynb"))
    collect(folder, course, echo=quiet)
    lines = []
    try:
        outcomes = grade(course, ["fifo_maker", "honest_a"], workers=2, sandbox=True, progress=False,
                         echo=lines.append)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"a named pipe in one student's autograded folder aborts grade() for everyone: "
                    f"{type(exc).__name__}: {str(exc)[:300]}")
    by_student = {o.student: o for o in outcomes}
    assert sorted(by_student) == ["fifo_maker", "honest_a"]
    assert by_student["honest_a"].scores == expected_scores("honest_a")
