"""The notebook's test cells run outside a kernel: the grader's own process executes them.

Used for grading-validity checks (many seeds in seconds) and by the out-of-kernel verifier, which
binds the student's functions to proxies into a sandboxed worker (see verify.py).
"""
import ast
import builtins
import contextlib
import io
import os
from unittest import mock

from nbgrader import utils

from autograder.notebook import read_notebook, split_hidden, test_cells  # noqa: F401 - re-exported for the tests
from autograder.seeds import SEED_VARIABLE

# The functions students write in the kit's assignment, in notebook order (CONTRACT.md);
# student_functions() finds them in any assignment's source notebook.
STUDENT_FUNCTIONS = ("softmax", "one_hot", "softmax_cross_entropy", "relu", "forward",
                     "loss_and_grad", "predict", "train")


def grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def strip_magics(source):
    """Cell source without IPython-only lines (%magics, !shell), so plain exec() can run it."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def solution_cells(nb):
    """{grade_id: source} of the cells students write code in."""
    return {grade_id(c): c.source for c in nb.cells if c.cell_type == "code" and utils.is_solution(c)}


def setup_source(nb):
    """The notebook's locked imports cell, runnable by exec()."""
    for cell in nb.cells:
        if cell.cell_type == "code" and grade_id(cell) == "imports":
            return strip_magics(cell.source)
    raise ValueError("the notebook has no cell with grade_id 'imports'")


def reference_solutions(source_nb):
    """{grade_id: code} of the reference solution: solution cells without the nbgrader delimiters."""
    return {gid: "\n".join(line for line in src.splitlines() if "### BEGIN SOLUTION" not in line
                           and "### END SOLUTION" not in line)
            for gid, src in solution_cells(source_nb).items()}


def student_functions(source_nb):
    """The functions students write: the top-level `def`s of the reference solution cells, in
    notebook order. These are what the verifier binds to proxies into the student's worker."""
    names = []
    for source in reference_solutions(source_nb).values():
        try:
            tree = ast.parse(strip_magics(source))
        except SyntaxError:
            continue  # a cell the reference leaves for students to write in prose or shell
        names += [node.name for node in tree.body
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in names]
    return tuple(names)


def convention_problems(source_nb, config=None):
    """What in a source notebook the grader could not grade, one line each ([] when none): the
    conventions the out-of-kernel verifier relies on (setup_source, student_functions, split_hidden).
    Caught at release, before any student is graded 0 for the notebook's fault."""
    problems = []
    if not any(c.cell_type == "code" and grade_id(c) == "imports" for c in source_nb.cells):
        problems.append("no code cell has grade_id 'imports': the grader runs that cell (the imports the tests "
                        "use) before the tests")
    tests = test_cells(source_nb)
    for test in tests:
        try:
            split_hidden(test.source, config)
        except ValueError as exc:
            problems.append(f"test cell {test.grade_id}: {exc}")
    if tests and not student_functions(source_nb):
        problems.append("no solution cell defines a function with `def`: the grader calls the students' "
                        "functions by name, and the tests have none to call")
    return problems + _unknown_names(source_nb, tests)


# What the kernel offers every cell besides the builtins (the worker answers them too).
KERNEL_NAMES = frozenset({"get_ipython", "display", "In", "Out", "exit", "quit"})


def _unknown_names(source_nb, tests):
    """A test cell that reads a name the grader's namespace never holds fails for every student (as
    'tamper suspected' where the kernel, which ran the cell defining it, passed): the grader runs the
    imports cell, the test cells in order and binds the students' functions -- no other cell.
    Bindings count anywhere in a cell, whatever the scope: only names nothing could bind are flagged."""
    setup = next((c.source for c in source_nb.cells if c.cell_type == "code" and grade_id(c) == "imports"), "")
    known = set(dir(builtins)) | KERNEL_NAMES | set(student_functions(source_nb))
    problems = []
    for label, source in [("imports", setup)] + [(f"test cell {test.grade_id}", test.source) for test in tests]:
        try:
            bound, used, star = _names(strip_magics(source))
        except SyntaxError as exc:
            problems.append(f"{label} is not valid Python (line {exc.lineno}: {exc.msg})")
            continue
        if star:  # `from x import *` binds names no reading of the source can list
            return problems
        missing = sorted(used - bound - known)
        if missing and label != "imports":
            problems.append(f"{label} uses {', '.join(missing[:5])}, which no test cell, the imports cell or a "
                            "student function defines (the grader runs no other cell)")
        known |= bound
    return problems + _unknown_in_solutions(source_nb, setup)


def _unknown_in_solutions(source_nb, setup):
    """The same for the reference solution: the worker that runs a student's code loads the imports
    cell and the student's cells only, so an answer relying on a name another locked cell defines
    would fail there for every student."""
    codes = {gid: strip_magics(code) for gid, code in reference_solutions(source_nb).items()}
    try:
        known = set(dir(builtins)) | KERNEL_NAMES | _names(strip_magics(setup))[0]
    except SyntaxError:
        return []  # said already: the imports cell is not valid Python
    parsed = {}
    for gid, code in codes.items():
        try:
            parsed[gid] = _names(code)
        except SyntaxError:
            continue  # a cell left for prose or shell (student_functions skips it too)
        known |= parsed[gid][0]
    problems = []
    for gid, (bound, used, star) in parsed.items():
        missing = sorted(used - known)
        if missing and not star:
            problems.append(f"solution cell {gid} uses {', '.join(missing[:5])}, which only a cell the grader "
                            "does not load defines (it loads the imports cell and the students' cells)")
    return problems


def _names(source):
    """(names bound anywhere, names read anywhere, whether it star-imports) of Python source."""
    bound, used, star = set(), set(), False
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            star = star or node.name == "*"
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
    return bound, used, star


def grader_seed(seed):
    """Hidden tests draw their inputs from BACKPROP_GRADER_SEED; set it for the duration."""
    return mock.patch.dict(os.environ, {SEED_VARIABLE: str(seed)})


def run_test_cells(namespace, cells, seed=0, mute=()):
    """Execute test cells in order in `namespace`; {grade_id: (passed, message)}.

    A cell passes when it raises nothing. Its prints are captured (the visible tests print a line).
    An exception of a `mute` type is reported by its name only: its message, written by the
    student's code, could carry the grader's inputs back into feedback.
    """
    results = {}
    with grader_seed(seed):
        for gid, _points, source in cells:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(source, f"<test cell {gid}>", "exec"), namespace)
            except BaseException as exc:  # noqa: BLE001 - student code may raise anything, even SystemExit
                if isinstance(exc, KeyboardInterrupt):
                    raise
                if mute and isinstance(exc, mute):
                    name = type(exc).__name__  # the student's code chose it: a builtin name or nothing
                    known = isinstance(getattr(builtins, name, None), type) and \
                        issubclass(getattr(builtins, name), BaseException)
                    message = (f"{name if known else 'An exception'} raised by your code on the grader's own "
                               "inputs (its message is not shown)")
                else:
                    message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                results[gid] = (False, message)
            else:
                results[gid] = (True, "")
    return results


def load_namespace(setup, codes):
    """A fresh namespace with the setup cell run and then each code string exec'd (errors kept)."""
    namespace = {"__name__": "__main__"}
    exec(compile(setup, "<imports>", "exec"), namespace)
    errors = {}
    for name, code in codes.items():
        try:
            exec(compile(code, f"<cell {name}>", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001
            errors[name] = f"{type(exc).__name__}: {exc}"
    return namespace, errors

