"""The student's code in a submitted notebook, as the worker loads it."""


from autograder import testcells


def student_code(source_nb, submitted_nb):
    """[(label, source)] of the submission's code, in notebook order (see student_code_at)."""
    return [(label, source) for label, source, _ in student_code_at(source_nb, submitted_nb)]


def tests_at(submitted_nb, grade_ids):
    """{grade_id: its cell's index in the submission} for the test cells it still has: each test is
    judged against the student's code above it, as the kernel ran it (a later redefinition of a
    function, e.g. an experiment after the training cells, must not change the verdict)."""
    found = {}
    for index, cell in enumerate(submitted_nb.cells):
        gid = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        if gid in grade_ids and gid not in found:
            found[gid] = index
    return found


def student_code_at(source_nb, submitted_nb):
    """[(label, source, index)] of the submission's code, in notebook order: the solution cells whose
    grade_id is one of the source notebook's, and the code cells the student added (no nbgrader
    role), as plain Python (ipython_to_python). Locked and test cells of the submission are ignored."""
    solution_ids = set(testcells.solution_cells(source_nb))
    code = []
    for index, cell in enumerate(submitted_nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if meta.get("solution") and meta.get("grade_id") in solution_ids:
            label = meta["grade_id"]
        elif not any(meta.get(role) for role in ("solution", "grade", "locked", "task")):
            label = f"cell {index}"  # a cell the student added
        else:
            continue  # locked cells and tests: the grader runs the source notebook's own
        source = cell.get("source", "")
        if not isinstance(source, str):
            raise TypeError(f"cell {index} has a source of type {type(source).__name__}")
        code.append((label, ipython_to_python(source), index))
    return code


def ipython_to_python(source):
    """Cell source as IPython itself turns it into Python before running it: %magics, !shell and
    `name?` become calls of get_ipython(), which the worker answers (worker.py). Dropping such lines
    instead broke honest code (a continuation line or a docstring line starting with %)."""
    from IPython.core.inputtransformer2 import TransformerManager
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - IPython cannot read it either: it fails in the worker as in the kernel
        return source


# ---------------------------------------------------------------------------------------------
