"""Validate never lies: what a student can run (the visible tests alone) fails every misunderstanding.

nbgrader's Validate button, and a student running the test cells, sees only the visible part of each
test cell. If a bug that grading will punish passes all of them, Validate says "Success!" and the
grade then surprises the student. So, for every MISUNDERSTANDING of the catalogue (autograder/
variants.py; not the gaming kinds, which the visible tests cannot see by design):
- it fails at least one visible test, with an assertion sentence that contains the variant's hint
  (the words that name the fix, e.g. "sum over the batch", "sign flipped", "ReLU mask");
- in the cells it must lose, every visible failure is a sentence (an AssertionError), never a raw
  KeyError/TypeError/ValueError out of the test code;
and every correct variant passes every visible test. The visible tests call the student's own
functions and never read the grader seed, so one run per variant decides.
"""
import copy
import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

from autograder import testcells
from autograder.variants import CORRECT, DEGENERATE, MISUNDERSTANDING, VARIANTS, apply_edits, submission_codes

ROOT = Path(__file__).resolve().parents[2]

SOURCE = testcells.read_notebook(ROOT / "assignment.ipynb")
SETUP = testcells.setup_source(SOURCE)


def _released(source_nb):
    """The notebook as generate_assignment releases it: solutions stubbed, hidden tests removed."""
    nb, _ = ClearSolutions().preprocess(copy.deepcopy(source_nb), {})
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    return nb


VISIBLE_CELLS = testcells.test_cells(_released(SOURCE))
MISUNDERSTANDINGS = [name for name, v in VARIANTS.items() if v.kind == MISUNDERSTANDING]
CORRECT_VARIANTS = [name for name, v in VARIANTS.items() if v.kind == CORRECT]


def visible_failures(codes):
    """{test grade_id: message} of the visible tests that fail for these solution cells."""
    namespace, errors = testcells.load_namespace(SETUP, codes)
    assert not errors, f"the code does not even load: {errors}"
    results = testcells.run_test_cells(namespace, VISIBLE_CELLS)
    return {gid: message for gid, (passed, message) in results.items() if not passed}


def test_the_visible_cells_hold_no_hidden_test():
    """The control: these really are the cells students get (and the grader kit is not among them)."""
    assert {gid for gid, _, _ in VISIBLE_CELLS} == {gid for gid, _, _ in testcells.test_cells(SOURCE)}
    text = "\n".join(source for _, _, source in VISIBLE_CELLS)
    assert "HIDDEN TESTS" not in text and "_grader_rng" not in text and "_call(" not in text


@pytest.mark.parametrize("name", MISUNDERSTANDINGS)
def test_misunderstanding_fails_a_visible_test_that_names_the_fix(name):
    variant = VARIANTS[name]
    failed = visible_failures(submission_codes(SOURCE, variant))
    assert failed, (f"{name!r} ({variant.description}) passes every visible test: Validate would say "
                    f"'Success!' and grading would take points in {sorted(variant.must_fail)}")
    hinted = {gid: message for gid, message in failed.items() if variant.hint in message}
    assert hinted, (f"{name!r} fails visible tests, but no message says {variant.hint!r}: "
                    + "; ".join(f"{gid}: {message[:200]}" for gid, message in failed.items()))
    raw = {gid: message for gid, message in hinted.items() if not message.startswith("AssertionError: ")}
    assert not raw, f"{name!r}: the hint comes with a raw exception, not a sentence: {raw}"


@pytest.mark.parametrize("name", MISUNDERSTANDINGS + [n for n, v in VARIANTS.items() if v.kind == DEGENERATE])
def test_visible_failures_in_the_owning_cells_are_sentences(name):
    """Wrong keys, shapes or types get a sentence from the test, never a raw exception from it."""
    variant = VARIANTS[name]
    failed = visible_failures(submission_codes(SOURCE, variant))
    raw = {gid: failed[gid] for gid in variant.must_fail & set(failed)
           if not failed[gid].startswith("AssertionError: ")}
    assert not raw, f"{name!r} ({variant.description}): raw exceptions in its own cells: {raw}"


@pytest.mark.parametrize("name", CORRECT_VARIANTS)
def test_correct_variant_passes_every_visible_test(name):
    failed = visible_failures(submission_codes(SOURCE, VARIANTS[name]))
    assert not failed, f"correct variant {name!r} fails visible tests: {failed}"


@pytest.mark.parametrize("missing", [("b2",), ("b1", "b2")])
def test_gradient_check_demo_reports_a_missing_gradient_instead_of_crashing(missing):
    """A student who has not written a bias gradient yet gets the checker's report, not a KeyError."""
    demo = next(testcells.strip_magics(cell.source) for cell in SOURCE.cells
                if testcells.grade_id(cell) == "gradcheck_demo")
    codes = testcells.reference_solutions(SOURCE)
    kept = tuple(name for name in ("W1", "b1", "W2", "b2") if name not in missing)
    codes["loss_and_grad"] = apply_edits(codes["loss_and_grad"], [
        ("return loss, grads", f"return loss, {{name: grads[name] for name in {kept!r}}}")], "the demo's student")
    namespace, errors = testcells.load_namespace(SETUP, codes)
    assert not errors
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(demo, "<gradcheck_demo>", "exec"), namespace)
    for name in missing:
        assert f"{name}: WRONG — grads has no '{name}'" in out.getvalue(), out.getvalue()
    assert "skipped: your grads has no 'b2' yet" in out.getvalue()


def test_gradient_check_demo_shows_the_deliberate_bug_for_the_reference():
    """The control: with every gradient present the demo's second report does show the db2 bug."""
    demo = next(testcells.strip_magics(cell.source) for cell in SOURCE.cells
                if testcells.grade_id(cell) == "gradcheck_demo")
    namespace, _ = testcells.load_namespace(SETUP, testcells.reference_solutions(SOURCE))
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(demo, "<gradcheck_demo>", "exec"), namespace)
    assert "b2: max relative error" in out.getvalue() and "sum over the batch" in out.getvalue(), out.getvalue()
    assert "skipped" not in out.getvalue()
