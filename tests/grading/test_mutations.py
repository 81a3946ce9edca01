"""The proof that the hidden tests judge: mutation testing of the notebook's test cells.

Every variant of autograder/variants.py is run through the notebook's test cells in this process
(autograder.testcells), at each of 20 grader seeds (BACKPROP_GRADER_SEED):
- a bug variant must lose points in every cell of its `must_fail`, at every seed;
- a correct variant must pass every cell at every seed, and no warning may escape a test cell
  (nbgrader scores any stderr output in a test cell as a failure);
- a bug may cost points elsewhere only in cells whose function could call the buggy one;
- the bugs the visible tests cannot see (answers hard-coded to them, ...) pass the visible tests alone,
  so it is the hidden tests that catch them;
- no hidden check passes vacuously: the hidden blocks alone fail every degenerate return (None, empty
  structures, zero-size or nan arrays, lists where an array is due, histories of the wrong length)
  with a sentence, not a raw exception;
- the catalogue covers every bug kind and correct formulation that CONTRACT.md names, and its small
  bugs are edits of the reference solution that must apply exactly once.
(tests/grading/test_validate_truth.py checks the visible tests alone against the misunderstandings.)
"""
import contextlib
import copy
import functools
import io
import warnings
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np
import pytest
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

from autograder import testcells
from autograder.variants import CORRECT as CORRECT_KIND
from autograder.variants import (
    DEGENERATE,
    GAMING,
    MISUNDERSTANDING,
    TEST_CELLS,
    UNTOUCHED,
    VARIANTS,
    apply_edits,
    make_submission,
    submission_codes,
)

ROOT = Path(__file__).resolve().parents[2]

SEEDS = range(20)
SOURCE = testcells.read_notebook(ROOT / "assignment.ipynb")
SETUP = testcells.setup_source(SOURCE)
CELLS = testcells.test_cells(SOURCE)


def released(source_nb):
    """What generate_assignment gives students: solutions stubbed, hidden tests removed."""
    nb = copy.deepcopy(source_nb)
    nb, _ = ClearSolutions().preprocess(nb, {})
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    return nb


# The test cells as students see them (every BEGIN/END HIDDEN TESTS region removed).
VISIBLE_CELLS = testcells.test_cells(released(SOURCE))


def hidden_only(source):
    """The hidden blocks of a test cell alone (nbgrader's own delimiters), in order."""
    clear = ClearHiddenTests()
    kept, inside = [], False
    for line in source.splitlines():
        if clear.begin_test_delimeter in line:
            inside = True
        elif clear.end_test_delimeter in line:
            inside = False
        elif inside:
            kept.append(line)
    return "\n".join(kept) + "\n"


# The test cells as the grader's hidden checks alone: the kit and every hidden block, no visible code.
HIDDEN_CELLS = [(gid, points, hidden_only(source)) for gid, points, source in CELLS]

BUGS = [name for name, variant in VARIANTS.items() if variant.must_fail]
CORRECT = [name for name, variant in VARIANTS.items() if not variant.must_fail]

# Every bug kind CONTRACT.md lists ("Bug kinds that must lose points, each in the cell that owns
# them") and every correct formulation ("Correct variants that must get full marks"), with the
# variants that stand for it.
CONTRACT_BUG_KINDS = {
    "softmax without max-shift": ["softmax_no_max_shift", "softmax_global_max_shift"],
    "log of a softmax that underflows": ["sce_log_of_softmax", "sce_log_of_softmax_eps"],
    "missing 1/n in dZ": ["dz_missing_1_over_n"],
    "loss summed instead of averaged (with matching gradient)": ["sce_sum_not_mean"],
    "weight-decay gradient c·W instead of 2c·W": ["weight_decay_grad_c_not_2c"],
    "decay on biases": ["weight_decay_on_biases"],
    "missing ReLU mask": ["relu_mask_missing"],
    "sign flip of dZ": ["dz_sign_flipped"],
    "bias gradient averaged or not summed over the batch": ["bias_grad_mean", "bias_grad_not_summed"],
    "W instead of Wᵀ": ["w2_not_transposed", "weight_grads_transposed"],
    "answers hard-coded to the visible tests": ["softmax_hardcoded", "forward_hardcoded"],
    "structure before values: degenerate returns": [name for name, v in VARIANTS.items() if v.kind == DEGENERATE],
    "in-place modification of the input": ["softmax_inplace", "relu_inplace", "loss_and_grad_modifies_params",
                                           "softmax_steers_inputs", "predict_steers_inputs"],
}
CONTRACT_CORRECT_KINDS = {
    "vectorized": ["perfect", "einsum"],
    "per-row loop": ["loss_and_grad_per_row_loop"],
    "log-sum-exp / einsum formulations": ["sce_logsumexp", "softmax_logsumexp", "einsum"],
}
# Bugs the visible tests do not see: they pass the visible part of every test cell. Only gaming
# (answers hard-coded to the visible tests, steering the arguments) may; every misunderstanding must
# fail a visible test (test_validate_truth.py).
VISIBLE_BLIND = [name for name, variant in VARIANTS.items() if variant.kind == GAMING]

# Which test cells judge each student function, and which student functions each may call (in the
# reference or in a plausible student's version): a bug in f can cost points in the cells of f and
# of the functions that (transitively) may call f, nowhere else. The hidden tests swap a function's
# callees for the reference, so they should only ever fail f's own cells.
CELLS_OF = {
    "softmax": {"test_softmax"},
    "one_hot": {"test_one_hot"},
    "softmax_cross_entropy": {"test_sce_loss", "test_sce_grad"},
    "relu": {"test_relu"},
    "forward": {"test_forward"},
    "loss_and_grad": {"test_loss_value", "test_gradients", "test_weight_decay"},
    "predict": {"test_predict"},
    "train": {"test_train"},
}
MAY_CALL = {
    "softmax": set(),
    "one_hot": set(),
    "softmax_cross_entropy": {"softmax", "one_hot"},
    "relu": set(),
    "forward": {"relu"},
    "loss_and_grad": {"forward", "relu", "softmax", "one_hot", "softmax_cross_entropy"},
    "predict": {"forward", "relu", "softmax"},
    "train": {"softmax", "one_hot", "softmax_cross_entropy", "relu", "forward", "loss_and_grad", "predict"},
}


class Run(NamedTuple):
    results: dict       # {test grade_id: (passed, message)}
    load_errors: dict   # {solution grade_id: error} for code that did not even run
    escaped: list       # warnings that escaped the test cells (nbgrader would score them as failures)
    stderr: str


# The same few sources are compiled hundreds of times (about a fifth of the run time): code objects
# are immutable, so testcells may share one per source while this file runs them.
_compile = functools.lru_cache(maxsize=None)(compile)


@functools.lru_cache(maxsize=None)
def run(name, seed, visible_only=False, hidden_only=False):
    """Variant `name`'s submission through the test cells at grader seed `seed` (cached)."""
    cells = VISIBLE_CELLS if visible_only else HIDDEN_CELLS if hidden_only else CELLS
    with mock.patch.object(testcells, "compile", _compile, create=True):
        namespace, load_errors = testcells.load_namespace(SETUP, submission_codes(SOURCE, VARIANTS[name]))
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(io.StringIO()) as err:
            warnings.simplefilter("always")
            results = testcells.run_test_cells(namespace, cells, seed)
    escaped = [f"{w.category.__name__}: {w.message}" for w in caught]
    return Run(results, load_errors, escaped, err.getvalue())


def failures(name):
    """{test grade_id: {seed: message}} of the cells variant `name` lost points in."""
    lost = {}
    for seed in SEEDS:
        for gid, (passed, message) in run(name, seed).results.items():
            if not passed:
                lost.setdefault(gid, {})[seed] = message
    return lost


def plausible_cells(variant):
    """The cells a bug in the variant's functions may cost points in (see CELLS_OF and MAY_CALL)."""
    changed = set(testcells.STUDENT_FUNCTIONS) if variant.name == UNTOUCHED else set(variant.code)
    affected = set(changed)
    while True:
        more = {f for f, callees in MAY_CALL.items() if callees & affected} - affected
        if not more:
            break
        affected |= more
    return set().union(*(CELLS_OF[f] for f in affected))


def describe(lost, cells):
    return "; ".join(f"{gid} at {len(lost[gid])}/{len(SEEDS)} seeds (seed {min(lost[gid])}: "
                     f"{lost[gid][min(lost[gid])][:160]})" for gid in sorted(cells)) or "none"


# ------------------------------------------------------------------------------------------------
# The catalogue
# ------------------------------------------------------------------------------------------------

def test_catalogue_is_well_formed():
    solution_ids = set(testcells.solution_cells(SOURCE))
    assert {gid for gid, _, _ in CELLS} == TEST_CELLS, "variants.TEST_CELLS differs from the notebook's test cells"
    assert set(CELLS_OF) == set(testcells.STUDENT_FUNCTIONS) <= solution_ids
    assert VARIANTS[UNTOUCHED].must_fail == TEST_CELLS
    for name, variant in VARIANTS.items():
        assert variant.name == name
        assert variant.description and "\n" not in variant.description, f"{name}: description must be one line"
        assert set(variant.changes) <= solution_ids, \
            f"{name} changes unknown cells {set(variant.changes) - solution_ids}"
        assert variant.must_fail <= TEST_CELLS, f"{name}: unknown test cells {variant.must_fail - TEST_CELLS}"
        assert variant.kind in (UNTOUCHED, MISUNDERSTANDING, GAMING, DEGENERATE, CORRECT_KIND), \
            f"{name}: kind {variant.kind!r}"
        assert (variant.kind == CORRECT_KIND) == (not variant.must_fail), \
            f"{name}: a {variant.kind} with must_fail {variant.must_fail}"
        assert bool(variant.hint) == (variant.kind == MISUNDERSTANDING), \
            f"{name}: a misunderstanding, and only one, names the hint its visible failure must show"
        for gid, code in variant.code.items():
            compile(code, f"<{name}: {gid}>", "exec")
            assert code != testcells.reference_solutions(SOURCE)[gid], f"{name}: its edit of {gid} changes nothing"
    kinds = {kind: sum(v.kind == kind for v in VARIANTS.values()) for kind in (MISUNDERSTANDING, GAMING, DEGENERATE)}
    assert len(BUGS) >= 12 and len(CORRECT) >= 5 and kinds[DEGENERATE] >= 10, kinds


def test_edits_must_apply_exactly_once():
    """A variant's (old, new) edit of the reference fails loudly when `old` is gone or ambiguous."""
    assert apply_edits("a = 1\nb = 2\n", [("b = 2", "b = 3")], "here") == "a = 1\nb = 3\n"
    with pytest.raises(ValueError, match=r"here: 'c = 3' occurs 0 times"):
        apply_edits("a = 1\n", [("c = 3", "c = 4")], "here")
    with pytest.raises(ValueError, match=r"occurs 2 times"):
        apply_edits("x = 1\nx = 1\n", [("x = 1", "x = 2")], "here")
    bad = VARIANTS["dz_missing_1_over_n"]._replace(changes={"softmax_cross_entropy": [("dZ /= n_samples", "")]})
    with pytest.raises(ValueError, match="dz_missing_1_over_n.*occurs 0 times"):
        submission_codes(SOURCE, bad)


def test_variants_py_repeats_no_run_of_six_lines():
    """Small bugs are edits of the reference, not copies of it: no six lines appear twice in a row."""
    path = ROOT / "autograder" / "variants.py"
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    seen = {}
    for i in range(len(lines) - 5):
        window = tuple(lines[i:i + 6])
        assert window not in seen, f"variants.py repeats these six lines: {window}"
        seen[window] = i


def test_catalogue_covers_every_contract_kind():
    for kind, names in {**CONTRACT_BUG_KINDS, **CONTRACT_CORRECT_KINDS}.items():
        assert names, f"no variant stands for the contract's {kind!r}"
        for name in names:
            assert name in VARIANTS, f"{kind!r}: no variant {name!r} in autograder/variants.py"
    for kind, names in CONTRACT_BUG_KINDS.items():
        correct = [name for name in names if not VARIANTS[name].must_fail]
        assert not correct, f"bug kind {kind!r} is represented by correct variants {correct}"
    for kind, names in CONTRACT_CORRECT_KINDS.items():
        buggy = [name for name in names if VARIANTS[name].must_fail]
        assert not buggy, f"correct kind {kind!r} is represented by bug variants {buggy}"


# ------------------------------------------------------------------------------------------------
# The hidden tests judge
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUGS)
def test_bug_loses_points(name):
    variant = VARIANTS[name]
    assert not any(run(name, seed).load_errors for seed in SEEDS), run(name, 0).load_errors
    lost = failures(name)
    missed = {gid: [seed for seed in SEEDS if seed not in lost.get(gid, {})] for gid in sorted(variant.must_fail)}
    missed = {gid: seeds for gid, seeds in missed.items() if seeds}
    assert not missed, (
        f"variant {name!r} ({variant.description}) is NOT caught: "
        + "; ".join(f"test cell {gid} passed at seeds {seeds}" for gid, seeds in missed.items())
        + f". Cells that did lose points: {describe(lost, lost)}")


@pytest.mark.parametrize("name", BUGS)
def test_bug_costs_points_only_where_plausible(name):
    """A bug may fail the cells of its function and of the functions that may call it, no others.

    (Guards e.g. against a failing visible softmax test leaving the hidden grader kit undefined, which
    once made every later hidden test raise NameError and zeroed correct one_hot, relu, forward.)
    """
    variant = VARIANTS[name]
    lost = failures(name)
    implausible = set(lost) - plausible_cells(variant)
    assert not implausible, (
        f"variant {name!r} ({variant.description}) changes only {sorted(variant.code)} but loses points in "
        f"unrelated cells: {describe(lost, implausible)}. All cells lost: {sorted(lost)}")


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variant_gets_full_marks(name):
    variant = VARIANTS[name]
    problems = []
    for seed in SEEDS:
        result = run(name, seed)
        if result.load_errors:
            problems.append(f"seed {seed}: the code did not run: {result.load_errors}")
        problems += [f"test cell {gid} failed at seed {seed}: {message}"
                     for gid, (passed, message) in result.results.items() if not passed]
        if result.escaped or result.stderr:
            problems.append(f"seed {seed}: output on stderr would cost points under nbgrader: "
                            f"{(result.escaped or [result.stderr])[0][:200]}")
    assert not problems, f"correct variant {name!r} ({variant.description}) is rejected:\n" + "\n".join(problems[:20])


def test_noisy_variant_really_warns():
    """noisy_but_correct must actually emit the warnings the tests are meant to keep out of the grade."""
    namespace, errors = testcells.load_namespace(SETUP, submission_codes(SOURCE, VARIANTS["noisy_but_correct"]))
    assert not errors
    Z = np.array([[1e4, -1e4, 0.0], [0.0, 1.0, 2.0]])
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
        warnings.simplefilter("always")
        namespace["softmax_cross_entropy"](Z, np.array([1, 0]))
    categories = {w.category for w in caught}
    assert {RuntimeWarning, DeprecationWarning} <= categories, f"warnings seen: {categories}"


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.kind == DEGENERATE])
def test_hidden_checks_alone_fail_every_degenerate_return(name):
    """Structure before values: the hidden blocks alone (the kit, no visible code) fail every degenerate
    return in every cell it must lose, with an assertion sentence, never a raw exception."""
    variant = VARIANTS[name]
    problems = []
    for seed in SEEDS[:5]:
        results = run(name, seed, hidden_only=True).results
        for gid in sorted(variant.must_fail):
            passed, message = results[gid]
            if passed:
                problems.append(f"seed {seed}: the hidden checks of {gid} pass it")
            elif not message.startswith("AssertionError: "):
                problems.append(f"seed {seed}: {gid} fails with a raw exception, not a sentence: {message[:200]}")
    assert not problems, f"degenerate variant {name!r} ({variant.description}):\n" + "\n".join(problems)


def test_every_cells_hidden_checks_alone_catch_a_wrong_value():
    """No hidden block is vacuous: each cell's hidden checks alone fail some bug that returns well-formed
    but wrong values (not only degenerate ones), e.g. a loss compared with itself would pass them all."""
    for gid in sorted(TEST_CELLS):
        owners = [name for name, v in VARIANTS.items()
                  if gid in v.must_fail and v.kind in (MISUNDERSTANDING, GAMING)]
        caught = [name for name in owners if not run(name, 0, hidden_only=True).results[gid][0]]
        assert caught, f"the hidden checks of {gid} alone fail none of its value bugs {owners}"


def test_hidden_checks_alone_pass_the_reference():
    """The control for the test above: the hidden blocks alone pass the reference solution."""
    for seed in SEEDS[:5]:
        failed = {gid: m for gid, (passed, m) in run("perfect", seed, hidden_only=True).results.items() if not passed}
        assert not failed, f"seed {seed}: {failed}"


# train() submissions a red-team once got full marks with, and their relatives: what train feeds
# loss_and_grad (weight_decay, batches, reshuffling, seed) and what it records in history. The visible
# test_train catches the misunderstandings first, so a full run would pass even with a vacuous hidden
# block: the hidden block alone must catch each, at every seed, with a sentence.
TRAIN_FEED_BUGS = ["train_weight_decay_not_passed", "train_weight_decay_10x", "train_fake_train_loss",
                   "train_val_loss_copies_train_loss", "train_no_reshuffle", "train_ignores_seed",
                   "train_ignores_batch_size", "train_reshuffles_only_for_visible", "train_decays_only_for_visible"]


@pytest.mark.parametrize("name", TRAIN_FEED_BUGS)
def test_hidden_checks_alone_catch_what_train_feeds_loss_and_grad(name):
    assert VARIANTS[name].must_fail == {"test_train"}
    problems = []
    for seed in SEEDS:
        passed, message = run(name, seed, hidden_only=True).results["test_train"]
        if passed:
            problems.append(f"seed {seed}: the hidden checks of test_train pass it")
        elif not message.startswith("AssertionError: "):
            problems.append(f"seed {seed}: a raw exception, not a sentence: {message[:200]}")
    assert not problems, f"{name!r} ({VARIANTS[name].description}):\n" + "\n".join(problems)


@pytest.mark.parametrize("name", VISIBLE_BLIND)
def test_visible_tests_alone_pass_the_blind_bugs(name):
    """The visible tests pass these bugs (e.g. answers hard-coded to them): the hidden tests catch them."""
    assert VARIANTS[name].must_fail
    result = run(name, 0, visible_only=True)
    failed = {gid: message for gid, (passed, message) in result.results.items() if not passed}
    assert not failed, f"the visible tests already catch {name!r}: {failed}"


# ------------------------------------------------------------------------------------------------
# Submissions as notebooks
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["stubbed here", "nbgrader release"])
def test_make_submission_changes_only_solution_sources(which, request):
    release = released(SOURCE) if which == "stubbed here" else request.getfixturevalue("release_nb")
    pristine = copy.deepcopy(release)
    solution_ids = set(testcells.solution_cells(SOURCE))
    assert make_submission(release, SOURCE, VARIANTS[UNTOUCHED]) == release
    assert {gid for gid, _, _ in testcells.test_cells(release)} == TEST_CELLS
    for name, variant in VARIANTS.items():
        submission = make_submission(release, SOURCE, variant)
        codes = submission_codes(SOURCE, variant)
        assert len(submission.cells) == len(release.cells)
        for cell, original in zip(submission.cells, release.cells):
            assert cell.get("id") == original.get("id") and cell.metadata == original.metadata
            assert cell.cell_type == original.cell_type
            gid = testcells.grade_id(cell)
            if gid in solution_ids:
                assert cell.source == codes[gid], f"{name}: cell {gid} does not hold the variant's code"
            else:
                assert cell.source == original.source, f"{name}: non-solution cell {gid} changed"
        assert release == pristine, "make_submission modified the release notebook"
