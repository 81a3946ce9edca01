"""What students receive: a notebook that matches the contract, a release with nothing to copy,
and visible tests that fail cleanly on an unwritten function."""
import ast
import re
import subprocess
import sys

from autograder import testcells
from autograder.testcells import STUDENT_FUNCTIONS, grade_id, reference_solutions, solution_cells

CONTRACT_SIGNATURES = {
    "softmax": "(Z)", "relu": "(X)", "one_hot": "(y, k)", "softmax_cross_entropy": "(Z, y)",
    "forward": "(X, params)", "loss_and_grad": "(X, y, params, weight_decay=0.0)",
    "predict": "(X, params)",
    "train": "(X_train, y_train, X_val, y_val, hidden_size=128, lr=0.1, weight_decay=0.0001, "
             "batch_size=32, epochs=30, target_acc=0.975, min_delta=0.005, patience=3, seed=0)",
}


def _nbgrader(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_metadata_is_nbgrader_schema_3_with_unique_ids(source_nb):
    ids = [grade_id(c) for c in source_nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), f"duplicate grade_ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert all(c.metadata["nbgrader"]["schema_version"] == 3 for c in source_nb.cells if "nbgrader" in c.metadata)


def test_points_add_up_to_the_stated_total(source_nb):
    total = sum(c.metadata["nbgrader"].get("points", 0) for c in source_nb.cells
                if c.metadata.get("nbgrader", {}).get("grade"))
    stated = re.search(r"\*\*total\*\* \| \| \*\*(\d+)\*\*", source_nb.cells[0].source)
    assert stated and int(stated.group(1)) == total


def test_every_contract_function_has_a_solution_cell_with_the_contract_signature(source_nb):
    reference = reference_solutions(source_nb)
    for name in STUDENT_FUNCTIONS:
        assert name in reference, f"no solution cell '{name}'"
        func = next(node for node in ast.parse(reference[name]).body if isinstance(node, ast.FunctionDef))
        assert func.name == name
        signature = "(" + ast.unparse(func.args) + ")"
        assert signature == CONTRACT_SIGNATURES[name], f"{name}{signature}"
        assert ast.get_docstring(func), f"{name} has no docstring"


def test_reference_loss_and_grad_has_no_python_loop(source_nb):
    tree = ast.parse(reference_solutions(source_nb)["loss_and_grad"])
    loops = [node for node in ast.walk(tree) if isinstance(node, (ast.For, ast.While, ast.comprehension))]
    assert not loops, "the reference loss_and_grad must be vectorized over the batch"


def test_every_test_cell_has_visible_and_hidden_tests(source_nb):
    for gid, points, source in testcells.test_cells(source_nb):
        assert points > 0
        assert "### BEGIN HIDDEN TESTS" in source and "### END HIDDEN TESTS" in source, gid
        assert "assert" in source.split("### BEGIN HIDDEN TESTS")[-1], f"{gid}: hidden block asserts nothing"


def test_manual_answers_carry_a_mark_scheme(source_nb):
    manual = [c for c in source_nb.cells if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")]
    assert len(manual) == 3
    for cell in manual:
        assert "Mark scheme" in cell.source and "### BEGIN SOLUTION" in cell.source, grade_id(cell)


def test_source_notebook_passes_nbgrader_validate(released_course):
    result = _nbgrader("validate", str(released_course.notebook(released_course.source)), cwd=released_course.root)
    assert "Success! Your notebook passes all the tests." in result.stdout, result.stdout + result.stderr


def test_release_fails_every_test_and_validates_inverted(released_course):
    result = _nbgrader("validate", "--invert", str(released_course.notebook(released_course.release)),
                       cwd=released_course.root)
    assert "Success! The notebook does not pass any tests." in result.stdout, result.stdout + result.stderr


def test_release_contains_no_solution_and_no_hidden_test_line(source_nb, release_nb, released_course):
    released = "\n".join(cell.source for cell in release_nb.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "Mark scheme", "Model answer"):
        assert marker not in released
    # Lines only the instructor's version has: inside solution or hidden-test regions, and nowhere else.
    secret, public = set(), set()
    for cell in source_nb.cells:
        region = None
        for line in cell.source.splitlines():
            if "### BEGIN" in line:
                region = line
            elif "### END" in line:
                region = None
            elif len(line.strip()) > 15:
                (secret if region else public).add(line.strip())
    secret -= public
    leaked = sorted(secret & {line.strip() for line in released.splitlines()})
    assert not leaked, f"release leaks: {leaked[:3]}"
    assert (released_course.release / "helpers.py").is_file()
    assert (released_course.release / "data" / "mnist_sample.npz").is_file()


def test_release_stubs_raise_not_implemented(release_nb):
    for gid, source in solution_cells(release_nb).items():
        assert "raise NotImplementedError()" in source, gid


def test_no_answer_to_question_1_is_shown_in_the_release(release_nb):
    """The backward pass is asked in Question 1, so no released text states it (Part II gives shapes only)."""
    text = "\n".join(cell.source for cell in release_nb.cells if cell.cell_type == "markdown").replace(" ", "")
    for answer in (r"A_1^\topdZ_2", r"dZ_2W_2^\top", r"X^\topdZ_1", r"dA_1\odot"):
        assert answer not in text, f"the release shows part of Question 1's answer: {answer}"
    assert "backwardpass" in text and "Question1" in text


def test_gradient_check_table_agrees_with_check_gradient(source_nb):
    """The notebook's table of relative errors uses check_gradient's own threshold and step."""
    import inspect
    import math

    import helpers

    intro = next(cell.source for cell in source_nb.cells if grade_id(cell) == "gradcheck_intro")
    defaults = inspect.signature(helpers.check_gradient).parameters
    tol, step = defaults["tol"].default, defaults["h"].default

    def exponent(x):
        return int(round(math.log10(x)))

    assert f"below $10^{{{exponent(tol)}}}$ | `OK`" in intro, intro
    assert f"$10^{{{exponent(tol)}}}$ or more | `WRONG`" in intro and f"$h = 10^{{{exponent(step)}}}$" in intro
    assert "relative error" in intro and r"\max\big(|a_i| + |g_i|,\; 0.1\,s\big)" in intro
