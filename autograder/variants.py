"""A catalogue of student submissions: the bugs the tests must catch, and correct code they must pass.

Used by the mutation tests (tests/grading/test_mutations.py: every bug loses points in the cell that
owns it at every grader seed, every correct variant gets full marks), by the visible-tests check
(tests/grading/test_validate_truth.py: every misunderstanding fails a visible test whose message
names the fix) and by the instructor demo (a sample class of submissions).

A variant is the student's version of some solution cells; every other solution cell keeps the
reference solution, so each bug is judged on its own. A small bug is a list of (old, new) edits of
the reference solution cell, taken from the source notebook, and each `old` must occur in that cell
exactly once: an edit of the reference either carries the bug along or fails loudly, never drifts.
Only genuinely different code (a per-row loop, other formulations, hard-coded answers, tampering)
is written out in full.

Kinds:
- MISUNDERSTANDING: a wrong idea about the maths or the spec. It loses points in its cell, and also
  fails a visible test whose message contains `hint`, so the student's Validate cannot say "Success!".
- GAMING: answers hard-coded to the visible tests, or tampering with the arguments; only the hidden
  tests can catch it.
- DEGENERATE: returns of the wrong kind (None, empty dict or list, zero-size or nan arrays, lists
  where an array is due, histories of the wrong length): the hidden checks assert structure before
  values, so none of them passes vacuously.
- CORRECT: other ways to write the functions; full marks.
The variant "untouched" is the release notebook handed back unchanged (every function raises
NotImplementedError).
"""
import copy
import functools
import textwrap
from pathlib import Path
from typing import NamedTuple

from nbgrader.preprocessors import ClearSolutions

from autograder.testcells import grade_id, read_notebook, reference_solutions, solution_cells

TEST_CELLS = frozenset({"test_softmax", "test_one_hot", "test_sce_loss", "test_sce_grad", "test_relu",
                        "test_forward", "test_loss_value", "test_gradients", "test_weight_decay",
                        "test_predict", "test_train"})
UNTOUCHED = "untouched"
MISUNDERSTANDING, GAMING, DEGENERATE, CORRECT = "misunderstanding", "gaming", "degenerate", "correct"
KIT_NOTEBOOK = Path(__file__).resolve().parents[1] / "assignment.ipynb"


class Variant(NamedTuple):
    name: str             # e.g. "dz_missing_1_over_n"
    description: str      # one line a TA understands
    changes: dict         # {solution grade_id: full cell source (str) or [(old, new), ...] edits of the reference}
    must_fail: frozenset  # grade_ids of the test cells that must lose points (empty: correct code)
    kind: str             # MISUNDERSTANDING, GAMING, DEGENERATE, CORRECT (or UNTOUCHED)
    hint: str = ""        # MISUNDERSTANDING only: words a failing visible test's message must contain

    @property
    def code(self):
        """{solution grade_id: full source} of the cells this variant changes, against the kit's notebook."""
        return resolve(self, reference_solutions(_kit_notebook()))


@functools.lru_cache(maxsize=1)
def _kit_notebook():
    return read_notebook(KIT_NOTEBOOK)


def _src(text):
    """Cell source from an indented triple-quoted string."""
    return textwrap.dedent(text).strip("\n") + "\n"


def apply_edits(source, edits, where):
    """`source` with each (old, new) edit applied in turn; every `old` must occur exactly once."""
    for old, new in edits:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"{where}: {old!r} occurs {count} times in the reference solution, not once: "
                             "the reference changed, so update this variant's edits")
        source = source.replace(old, new)
    return source


def resolve(variant, reference):
    """{grade_id: full source} of the variant's changed cells, given the reference solutions."""
    unknown = set(variant.changes) - set(reference)
    if unknown:
        raise ValueError(f"variant {variant.name!r} changes cells the notebook does not have: {sorted(unknown)}")
    return {gid: change if isinstance(change, str)
            else apply_edits(reference[gid], change, f"variant {variant.name!r}, cell {gid!r}")
            for gid, change in variant.changes.items()}


def _variant(kind, name, description, must_fail=(), hint="", **changes):
    return Variant(name, description, changes, frozenset(must_fail), kind, hint)


misunderstanding = functools.partial(_variant, MISUNDERSTANDING)
gaming = functools.partial(_variant, GAMING)
degenerate = functools.partial(_variant, DEGENERATE)
correct = functools.partial(_variant, CORRECT)

# Lines of the reference solution that several variants edit.
_SOFTMAX_RETURN = "return E / np.sum(E, axis=-1, keepdims=True)"
_SCE_RETURN = "return float(loss), dZ"
_RELU_RETURN = "return np.maximum(X, 0.0)"
_FORWARD_RETURN = "return Z2, (X, Z1, A1)"
_LOSS_AND_GRAD_RETURN = "return loss, grads"
_PREDICT_RETURN = "return np.argmax(Z2, axis=1)"
_TRAIN_RETURN = "return best_params, history"
_TRAIN_STEP = "loss_and_grad(X_train[batch], y_train[batch], params, weight_decay)"
_TRAIN_LOSS = 'history[f"{split}_loss"].append(softmax_cross_entropy(Z2, y)[0])'
_CALL_FORWARD = "Z2, _ = forward(X, params)"  # in predict and in train
_INLINE_FORWARD = 'Z2 = relu(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]'


# ------------------------------------------------------------------------------------------------
# Misunderstandings: lose points in their cell, and fail a visible test that names the fix.
# ------------------------------------------------------------------------------------------------

_MISUNDERSTANDINGS = [
    # --- softmax -----------------------------------------------------------------------------
    misunderstanding("softmax_no_max_shift", "softmax without the max-shift: exp overflows to inf/nan for big logits",
                     {"test_softmax"}, "subtract each row's maximum",
                     softmax=[("Z - np.max(Z, axis=-1, keepdims=True)", "Z")]),
    misunderstanding("softmax_global_max_shift", "softmax shifted by the whole array's max, not each row's: rows far "
                     "below it give 0/0", {"test_softmax"}, "each row's own maximum",
                     softmax=[("np.max(Z, axis=-1, keepdims=True)", "np.max(Z)")]),
    misunderstanding("softmax_inplace", "softmax subtracts the max from Z in place (Z -= ...), changing the caller's "
                     "array", {"test_softmax"}, "modified its input in place",
                     softmax=[("shifted = Z - np.max", "Z -= np.max"), ("np.exp(shifted)", "np.exp(Z)")]),
    # --- one_hot -------------------------------------------------------------------------------
    misunderstanding("one_hot_int_dtype", "one_hot returns integers instead of floats", {"test_one_hot"}, "floats",
                     one_hot=[("np.zeros((len(y), k))", "np.zeros((len(y), k), dtype=int)")]),
    # --- softmax_cross_entropy -----------------------------------------------------------------
    misunderstanding("sce_log_of_softmax", "loss is np.log(softmax(Z)): the softmax underflows to 0 and ln 0 = -inf "
                     "for big logits", {"test_sce_loss"}, "ln softmax as z - max",
                     softmax_cross_entropy=[("-np.mean(log_probs[rows, y])", "-np.mean(np.log(softmax(Z)[rows, y]))")]),
    misunderstanding("sce_log_of_softmax_eps", "loss is np.log(softmax(Z) + 1e-12): finite, but capped near 27.6 when "
                     "the softmax underflows", {"test_sce_loss"}, "ln softmax as z - max",
                     softmax_cross_entropy=[("-np.mean(log_probs[rows, y])",
                                             "-np.mean(np.log(softmax(Z)[rows, y] + 1e-12))")]),
    misunderstanding("dz_missing_1_over_n", "dZ not divided by n (the gradient of the summed loss, for a mean loss)",
                     {"test_sce_grad"}, "divide by n", softmax_cross_entropy=[("    dZ /= n\n", "")]),
    misunderstanding("sce_sum_not_mean", "loss summed over the batch instead of averaged, with the matching gradient "
                     "P - Y", {"test_sce_loss", "test_sce_grad"}, "a mean over rows, not a sum",
                     softmax_cross_entropy=[("-np.mean(log_probs", "-np.sum(log_probs"), ("    dZ /= n\n", "")]),
    misunderstanding("dz_sign_flipped", "dZ = (Y - P) / n: the gradient's sign is flipped", {"test_sce_grad"},
                     "sign flipped", softmax_cross_entropy=[("dZ /= n", "dZ /= -n")]),
    # --- relu ----------------------------------------------------------------------------------
    misunderstanding("relu_inplace", "relu zeroes the negatives of its input in place (X[X < 0] = 0)", {"test_relu"},
                     "modified its input in place", relu=[(_RELU_RETURN, "X[X < 0] = 0\n    return X")]),
    # --- loss_and_grad -------------------------------------------------------------------------
    misunderstanding("weight_decay_grad_c_not_2c", "weight-decay gradient c*W instead of 2c*W", {"test_weight_decay"},
                     "2·c·W, not c·W", loss_and_grad=[("2 * weight_decay * W1", "weight_decay * W1"),
                                                     ("2 * weight_decay * W2", "weight_decay * W2")]),
    misunderstanding("weight_decay_on_biases", "biases decayed too: b1, b2 in the decay term of the loss and the "
                     "gradient", {"test_weight_decay"}, "biases are not decayed",
                     loss_and_grad=[('        grads["W2"] += 2 * weight_decay * W2\n',
                                     '        grads["W2"] += 2 * weight_decay * W2\n'
                                     '        loss += float(weight_decay * (np.sum(params["b1"] ** 2)'
                                     ' + np.sum(params["b2"] ** 2)))\n'
                                     '        grads["b1"] += 2 * weight_decay * params["b1"]\n'
                                     '        grads["b2"] += 2 * weight_decay * params["b2"]\n')]),
    misunderstanding("weight_decay_missing_from_loss", "the decay term is left out of the loss (its gradient is there)",
                     {"test_loss_value", "test_weight_decay"}, "should add 0.1*(||W1||^2 + ||W2||^2)",
                     loss_and_grad=[("loss += float(weight_decay * (np.sum(W1 * W1) + np.sum(W2 * W2)))",
                                     "pass  # the decay term left out of the loss")]),
    misunderstanding("relu_mask_missing", "backward through ReLU without the mask (Z1 > 0): dZ1 = dZ2 @ W2.T",
                     {"test_gradients"}, "ReLU mask", loss_and_grad=[(" * (Z1 > 0)", "")]),
    misunderstanding("bias_grad_mean", "bias gradients averaged over the batch (dZ.mean(axis=0)) instead of summed",
                     {"test_gradients"}, "sum over the batch",
                     loss_and_grad=[("dZ1.sum(axis=0)", "dZ1.mean(axis=0)"), ("dZ2.sum(axis=0)", "dZ2.mean(axis=0)")]),
    misunderstanding("bias_grad_not_summed", "bias gradients not summed over the batch: one row per sample, shape "
                     "(n, h)",
                     {"test_gradients"}, "sum over the batch",
                     loss_and_grad=[('"b1": dZ1.sum(axis=0)', '"b1": dZ1'), ('"b2": dZ2.sum(axis=0)', '"b2": dZ2')]),
    misunderstanding("w2_not_transposed", "backward uses W2 instead of W2.T: dZ1 = dZ2 @ W2 (raises when h != k)",
                     {"test_gradients"}, "W2.T", loss_and_grad=[("dZ2 @ W2.T", "dZ2 @ W2")]),
    misunderstanding("weight_grads_transposed", "weight gradients transposed: dZ1.T @ X and dZ2.T @ A1, shapes (h, d) "
                     "and (k, h)", {"test_gradients"}, "transposed",
                     loss_and_grad=[("X.T @ dZ1", "dZ1.T @ X"), ("A1.T @ dZ2", "dZ2.T @ A1"),
                                    ("2 * weight_decay * W1", "2 * weight_decay * W1.T"),
                                    ("2 * weight_decay * W2", "2 * weight_decay * W2.T")]),
    misunderstanding("loss_and_grad_modifies_params", "weight gradient built in the weights' own memory (dW1 = W1; "
                     "dW1 *= ...): params change", {"test_gradients"}, "modified its input in place",
                     loss_and_grad=[('grads = {"W1": X.T @ dZ1,',
                                     "dW1 = W1  # not a copy: the weights' own memory\n"
                                     "    dW1 *= 2 * weight_decay\n    dW1 += X.T @ dZ1\n"
                                     '    grads = {"W1": dW1,')]),
    # --- predict -------------------------------------------------------------------------------
    misunderstanding("predict_argmax_axis0", "predict takes the argmax over the samples (axis=0) instead of the "
                     "classes",
                     {"test_predict"}, "axis=1", predict=[("axis=1", "axis=0")]),
    # --- train ---------------------------------------------------------------------------------
    misunderstanding("train_returns_last_params", "train returns the last epoch's parameters, not the best validation "
                     "epoch's", {"test_train"}, "the first epoch with the best validation accuracy",
                     train=[(_TRAIN_RETURN, "return params, history")]),
    misunderstanding("train_best_params_not_copied", "train keeps the best epoch's params without a copy, so later "
                     "updates overwrite them", {"test_train"}, "as a copy",
                     train=[("{name: value.copy() for name, value in params.items()}", "params")]),
    misunderstanding("train_no_early_stopping", "train always runs every epoch: no early stopping (returns the best "
                     "epoch's parameters)", {"test_train"}, "patience=2 should stop after epoch 3",
                     train=[("        if converged or epochs_since_best >= patience:\n            break\n", "")]),
    misunderstanding("train_early_stop_from_first_epoch", "train compares the first epoch's accuracy with 0 "
                     "(prev_acc = 0), so the target check can stop it after one epoch", {"test_train"},
                     "from the second epoch on",
                     train=[("epoch > 0 and val_acc >= target_acc", "val_acc >= target_acc"),
                            ('abs(val_acc - history["val_acc"][-2])',
                             'abs(val_acc - (history["val_acc"][-2] if epoch > 0 else 0.0))')]),
    misunderstanding("train_tie_is_new_best", "train counts an equal validation accuracy as a new best (>=), which "
                     "resets patience and moves the best epoch", {"test_train"}, "not a new best",
                     train=[("if val_acc > best_acc:", "if val_acc >= best_acc:")]),
    misunderstanding("train_no_update", "train computes each step's update but never assigns it: params - lr * grads",
                     {"test_train"}, "every step updates params",
                     train=[("params[name] -= lr * grads[name]", "params[name] - lr * grads[name]")]),
    # What train feeds loss_and_grad: the visible test records it with a zero-gradient stand-in, the hidden
    # test with a recording reference (batches partition the training set, sizes, reshuffles, seed, decay).
    misunderstanding("train_weight_decay_not_passed", "train calls loss_and_grad(Xb, yb, params) without passing "
                     "weight_decay on, so no step decays the weights", {"test_train"},
                     "pass weight_decay on to loss_and_grad unchanged",
                     train=[(_TRAIN_STEP, "loss_and_grad(X_train[batch], y_train[batch], params)")]),
    misunderstanding("train_weight_decay_10x", "train passes 10 * weight_decay to loss_and_grad", {"test_train"},
                     "pass weight_decay on to loss_and_grad unchanged",
                     train=[(_TRAIN_STEP, "loss_and_grad(X_train[batch], y_train[batch], params, 10 * weight_decay)")]),
    misunderstanding("train_fake_train_loss", "train records 0.0 as every epoch's train_loss instead of the training "
                     "set's mean cross-entropy (val_loss is real)", {"test_train"},
                     "mean cross-entropy of the current params on the whole training set",
                     train=[(_TRAIN_LOSS, 'history[f"{split}_loss"].append(softmax_cross_entropy(Z2, y)[0] '
                                          'if split == "val" else 0.0)')]),
    misunderstanding("train_val_loss_copies_train_loss", "train records the training loss as val_loss too (a "
                     "copy-paste slip): history['val_loss'] is not the validation set's loss", {"test_train"},
                     "mean cross-entropy of the current params on the validation set",
                     train=[(_TRAIN_LOSS, 'history[f"{split}_loss"].append(softmax_cross_entropy(Z2, y)[0] '
                                          'if split == "train" else history["train_loss"][-1])')]),
    misunderstanding("train_no_reshuffle", "train never reshuffles: order = np.arange(n) every epoch, the same "
                     "batches in the same order", {"test_train"},
                     "reshuffle the training set at the start of every epoch",
                     train=[("order = rng.permutation(n)", "order = np.arange(n)")]),
    misunderstanding("train_ignores_seed", "train ignores seed: rng and init_params always seeded with 0",
                     {"test_train"}, "use seed for the shuffling",
                     train=[("rng = np.random.default_rng(seed)", "rng = np.random.default_rng(0)"),
                            ("init_params(d, hidden_size, k, seed=seed)", "init_params(d, hidden_size, k, seed=0)")]),
    misunderstanding("train_ignores_batch_size", "train ignores batch_size: batches of 32 rows whatever it is given",
                     {"test_train"}, "batch_size rows each",
                     train=[("range(0, n, batch_size)", "range(0, n, 32)"),
                            ("order[start:start + batch_size]", "order[start:start + 32]")]),
]

# ------------------------------------------------------------------------------------------------
# Gaming: the visible tests pass it; the hidden ones must not.
# ------------------------------------------------------------------------------------------------

_GAMING = [
    gaming("softmax_hardcoded", "softmax returns the visible tests' expected arrays for their inputs, uniform rows "
           "otherwise", {"test_softmax"}, softmax=_src("""
        def softmax(Z):
            Z = np.asarray(Z, dtype=float)
            if Z.shape == (2, 2) and np.allclose(Z, [[0.0, np.log(2.0)], [1.0, 1.0]]):
                return np.array([[1/3, 2/3], [0.5, 0.5]])
            if Z.shape == (2, 2) and np.allclose(Z, [[1000.0, 0.0], [-1000.0, 1000.0]]):
                return np.array([[1.0, 0.0], [0.0, 1.0]])
            if Z.shape == (2, 2) and np.allclose(Z, [[0.0, 1.0], [1000.0, 1001.0]]):
                return np.array([[1.0, np.e], [1.0, np.e]]) / (1 + np.e)
            if Z.shape == (2,) and np.allclose(Z, [0.0, np.log(2.0)]):
                return np.array([1/3, 2/3])
            return np.full(Z.shape, 1.0 / Z.shape[-1])
    """)),
    gaming("softmax_steers_inputs", "softmax overwrites its input with zeros and returns uniform rows, so a reference "
           "computed afterwards from the same array would agree", {"test_softmax"}, softmax=_src("""
        def softmax(Z):
            if Z.ndim == 2 or Z.shape == (2,):  # answer honestly but for a 1-D input it wasn't shown
                E = np.exp(Z - np.max(Z, axis=-1, keepdims=True))
                return E / np.sum(E, axis=-1, keepdims=True)
            Z[...] = 0.0
            return np.full(Z.shape, 1.0 / Z.shape[-1])
    """)),
    # The student's other functions do their own forward pass, so only `forward` is hard-coded and
    # every visible test passes: only the hidden tests can catch it.
    gaming("forward_hardcoded", "forward returns the visible test's expected logits (zeros otherwise); the other "
           "functions inline the forward pass", {"test_forward"}, forward=_src("""
        def forward(X, params):
            X = np.asarray(X, dtype=float)
            if X.shape == (3, 2) and np.allclose(X, [[1.0, -1.0], [0.5, 2.0], [0.0, 0.0]]):
                return np.array([[1.1, -0.1], [2.6, 3.9], [0.1, 0.4]]), None
            return np.zeros((X.shape[0], params["b2"].shape[0])), None
    """), loss_and_grad=[("Z2, (X, Z1, A1) = forward(X, params)",
                          'Z1 = X @ W1 + params["b1"]\n    A1 = relu(Z1)\n    Z2 = A1 @ W2 + params["b2"]')],
           predict=[(_CALL_FORWARD, _INLINE_FORWARD)], train=[(_CALL_FORWARD, _INLINE_FORWARD)]),
    gaming("predict_steers_inputs", "predict zeroes params in place and returns zeros, so a reference computed "
           "afterwards from the same params would agree", {"test_predict"}, predict=_src("""
        def predict(X, params):
            if len(X) == 3:  # the visible test's input: answer honestly
                Z2, _ = forward(X, params)
                return np.argmax(Z2, axis=1)
            for value in params.values():
                value[...] = 0.0
            return np.zeros(len(X), dtype=int)
    """)),
    gaming("train_reshuffles_only_for_visible", "train reshuffles only on the visible test's 180 rows; elsewhere the "
           "same order every epoch", {"test_train"},
           train=[("order = rng.permutation(n)", "order = rng.permutation(n) if n == 180 else np.arange(n)")]),
    gaming("train_decays_only_for_visible", "train passes weight_decay on only for the visible test's 180 rows; "
           "elsewhere it trains without decay", {"test_train"},
           train=[(_TRAIN_STEP, "loss_and_grad(X_train[batch], y_train[batch], params, weight_decay * (n == 180))")]),
]

# ------------------------------------------------------------------------------------------------
# Degenerate returns: each scores 0 in its cell (structure is checked before any value).
# ------------------------------------------------------------------------------------------------

_DEGENERATE = [
    degenerate("softmax_returns_none", "softmax computes the probabilities but returns nothing (None)",
               {"test_softmax"},
               softmax=[(_SOFTMAX_RETURN, "P = E / np.sum(E, axis=-1, keepdims=True)")]),
    degenerate("softmax_returns_list", "softmax returns the right numbers as a nested Python list, not an array",
               {"test_softmax"}, softmax=[(_SOFTMAX_RETURN, f"return ({_SOFTMAX_RETURN[7:]}).tolist()")]),
    degenerate("softmax_returns_empty", "softmax returns a zero-size array", {"test_softmax"},
               softmax=[(_SOFTMAX_RETURN, "return np.empty((0, np.shape(Z)[-1]))")]),
    degenerate("softmax_returns_nan", "softmax returns an array of nan of the right shape", {"test_softmax"},
               softmax=[(_SOFTMAX_RETURN, "return np.full(np.shape(Z), np.nan)")]),
    degenerate("one_hot_returns_list", "one_hot returns the right rows as a Python list, not an array",
               {"test_one_hot"},
               one_hot=[("return Y", "return Y.tolist()")]),
    degenerate("sce_returns_none", "softmax_cross_entropy returns None instead of (loss, dZ)",
               {"test_sce_loss", "test_sce_grad"}, softmax_cross_entropy=[(_SCE_RETURN, "return None")]),
    degenerate("sce_nan_loss", "softmax_cross_entropy returns nan as the loss (dZ right)", {"test_sce_loss"},
               softmax_cross_entropy=[(_SCE_RETURN, 'return float("nan"), dZ')]),
    degenerate("sce_dz_list", "softmax_cross_entropy returns dZ as a nested Python list", {"test_sce_grad"},
               softmax_cross_entropy=[(_SCE_RETURN, "return float(loss), dZ.tolist()")]),
    degenerate("relu_returns_tuple", "relu returns a tuple of rows, not an array", {"test_relu"},
               relu=[(_RELU_RETURN, "return tuple(np.maximum(X, 0.0))")]),
    degenerate("forward_returns_list", "forward returns the logits as a nested Python list", {"test_forward"},
               forward=[(_FORWARD_RETURN, "return Z2.tolist(), (X, Z1, A1)")]),
    degenerate("forward_returns_empty", "forward returns zero-size logits", {"test_forward"},
               forward=[(_FORWARD_RETURN, "return Z2[:0], (X, Z1, A1)")]),
    degenerate("loss_and_grad_empty_grads", "loss_and_grad returns the right loss and an empty grads dict",
               {"test_gradients", "test_weight_decay"}, loss_and_grad=[(_LOSS_AND_GRAD_RETURN, "return loss, {}")]),
    degenerate("loss_and_grad_nan_loss", "loss_and_grad returns nan as the loss (grads right)",
               {"test_loss_value", "test_weight_decay"},
               loss_and_grad=[(_LOSS_AND_GRAD_RETURN, 'return float("nan"), grads')]),
    degenerate("loss_and_grad_grads_list", "loss_and_grad returns the gradients as a list, not a dict",
               {"test_gradients", "test_weight_decay"},
               loss_and_grad=[(_LOSS_AND_GRAD_RETURN,
                               'return loss, [grads[name] for name in ("W1", "b1", "W2", "b2")]')]),
    degenerate("loss_and_grad_zero_size_grads", "loss_and_grad returns every gradient as a zero-size array",
               {"test_gradients", "test_weight_decay"},
               loss_and_grad=[(_LOSS_AND_GRAD_RETURN,
                               "return loss, {name: value[:0] for name, value in grads.items()}")]),
    degenerate("predict_returns_list", "predict returns the labels as a Python list", {"test_predict"},
               predict=[(_PREDICT_RETURN, f"return {_PREDICT_RETURN[7:]}.tolist()")]),
    degenerate("predict_returns_empty", "predict returns a zero-size array of labels", {"test_predict"},
               predict=[(_PREDICT_RETURN, f"return {_PREDICT_RETURN[7:]}[:0]")]),
    degenerate("train_returns_none", "train trains but returns None", {"test_train"},
               train=[(_TRAIN_RETURN, "return None")]),
    degenerate("train_returns_empty", "train returns an empty params dict and an empty history dict", {"test_train"},
               train=[(_TRAIN_RETURN, "return {}, {}")]),
    degenerate("train_empty_params", "train returns the right history but an empty params dict", {"test_train"},
               train=[(_TRAIN_RETURN, "return {}, history")]),
    degenerate("train_empty_history", "train returns the best params and a history of empty lists", {"test_train"},
               train=[(_TRAIN_RETURN, "return best_params, {key: [] for key in history}")]),
    degenerate("train_history_last_epoch_only", "train's history holds only the last epoch (wrong length)",
               {"test_train"},
               train=[(_TRAIN_RETURN, "return best_params, {key: values[-1:] for key, values in history.items()}")]),
    degenerate("train_nan_history", "train's history has the right length but every value is nan", {"test_train"},
               train=[(_TRAIN_RETURN,
                       'return best_params, {key: [float("nan")] * len(values) for key, values in history.items()}')]),
]

# ------------------------------------------------------------------------------------------------
# Correct variants: other ways to write the same functions; each must get full marks.
# ------------------------------------------------------------------------------------------------

_CORRECT = [
    correct("perfect", "the reference solution"),
    correct("loss_and_grad_per_row_loop", "loss_and_grad as a loop over samples, accumulating each row's gradient / n",
            loss_and_grad=_src("""
        def loss_and_grad(X, y, params, weight_decay=0.0):
            W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
            n = len(y)
            grads = {name: np.zeros_like(value) for name, value in params.items()}
            loss = 0.0
            for i in range(n):
                z1 = X[i] @ W1 + b1
                a1 = relu(z1)
                z2 = a1 @ W2 + b2
                shifted = z2 - np.max(z2)
                log_p = shifted - np.log(np.sum(np.exp(shifted)))
                loss -= log_p[y[i]] / n
                dz2 = np.exp(log_p)
                dz2[y[i]] -= 1.0
                dz2 /= n
                dz1 = (W2 @ dz2) * (z1 > 0)
                grads["W2"] += np.outer(a1, dz2)
                grads["b2"] += dz2
                grads["W1"] += np.outer(X[i], dz1)
                grads["b1"] += dz1
            loss += weight_decay * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
            grads["W1"] += 2 * weight_decay * W1
            grads["W2"] += 2 * weight_decay * W2
            return float(loss), grads
    """)),
    correct("sce_logsumexp", "softmax_cross_entropy via log-sum-exp: loss = mean(lse - z_y), "
            "dZ = (exp(Z - lse) - Y) / n",
            softmax_cross_entropy=_src("""
        def softmax_cross_entropy(Z, y):
            n, k = Z.shape
            m = np.max(Z, axis=1, keepdims=True)
            lse = m + np.log(np.sum(np.exp(Z - m), axis=1, keepdims=True))
            loss = np.mean(lse[:, 0] - Z[np.arange(n), y])
            dZ = (np.exp(Z - lse) - one_hot(y, k)) / n
            return float(loss), dZ
    """)),
    correct("softmax_logsumexp", "softmax as np.exp(Z - logsumexp(Z)), the log-sum-exp computed stably",
            softmax=_src("""
        def softmax(Z):
            m = np.max(Z, axis=-1, keepdims=True)
            lse = m + np.log(np.sum(np.exp(Z - m), axis=-1, keepdims=True))
            return np.exp(Z - lse)
    """)),
    correct("einsum", "forward and backward written with np.einsum", forward=_src("""
        def forward(X, params):
            Z1 = np.einsum("nd,dh->nh", X, params["W1"]) + params["b1"]
            A1 = relu(Z1)
            Z2 = np.einsum("nh,hk->nk", A1, params["W2"]) + params["b2"]
            return Z2, (X, Z1, A1)
    """), loss_and_grad=_src("""
        def loss_and_grad(X, y, params, weight_decay=0.0):
            W1, W2 = params["W1"], params["W2"]
            Z2, (X, Z1, A1) = forward(X, params)
            loss, dZ2 = softmax_cross_entropy(Z2, y)
            loss += weight_decay * (np.einsum("dh,dh->", W1, W1) + np.einsum("hk,hk->", W2, W2))
            dZ1 = np.einsum("nk,hk->nh", dZ2, W2) * (Z1 > 0)
            return loss, {"W1": np.einsum("nd,nh->dh", X, dZ1) + 2 * weight_decay * W1,
                          "b1": np.einsum("nh->h", dZ1),
                          "W2": np.einsum("nh,nk->hk", A1, dZ2) + 2 * weight_decay * W2,
                          "b2": np.einsum("nk->k", dZ2)}
    """)),
    correct("inplace_on_own_copies", "softmax, relu and one_hot modify only arrays they made themselves",
            softmax=_src("""
        def softmax(Z):
            P = Z - np.max(Z, axis=-1, keepdims=True)  # a new array
            np.exp(P, out=P)
            P /= np.sum(P, axis=-1, keepdims=True)
            return P
    """), relu=_src("""
        def relu(X):
            out = np.array(X, dtype=np.float64)  # a copy
            out[out < 0] = 0.0
            return out
    """), one_hot=_src("""
        def one_hot(y, k):
            return np.eye(k)[y]
    """)),
    correct("noisy_but_correct", "correct values, but prints numpy warnings: discarded exp overflow / ln 0, deprecated "
            "np.row_stack", softmax=[("    shifted = Z - np.max",
                                      "    first_try = np.exp(Z) / np.sum(np.exp(Z), axis=-1, keepdims=True)"
                                      "  # overflows for big Z; unused\n    shifted = Z - np.max")],
            one_hot=_src("""
        def one_hot(y, k):
            return np.row_stack([np.eye(k)[label] for label in y])
    """), softmax_cross_entropy=_src("""
        def softmax_cross_entropy(Z, y):
            n, k = Z.shape
            P = softmax(Z)
            naive = -np.mean(np.log(P[np.arange(n), y]))  # ln 0 = -inf for big logits; kept to compare, unused
            shifted = Z - np.max(Z, axis=1, keepdims=True)
            log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
            return float(-np.mean(log_probs[np.arange(n), y])), (P - one_hot(y, k)) / n
    """)),
    correct("train_other_bookkeeping", "train with its own bookkeeping: in-place shuffle, best epoch index, new params "
            "dicts", train=_src("""
        def train(X_train, y_train, X_val, y_val, hidden_size=128, lr=0.1, weight_decay=1e-4,
                  batch_size=32, epochs=30, target_acc=0.975, min_delta=0.005, patience=3, seed=0):
            rng = np.random.default_rng(seed)
            n, d = X_train.shape
            k = int(max(y_train.max(), y_val.max())) + 1
            params = init_params(d, hidden_size, k, seed=seed)
            history = {key: [] for key in ("train_loss", "train_acc", "val_loss", "val_acc")}
            order = np.arange(n)
            best, best_epoch = params, -1
            for epoch in range(epochs):
                rng.shuffle(order)
                for start in range(0, n, batch_size):
                    idx = order[start:start + batch_size]
                    _, grads = loss_and_grad(X_train[idx], y_train[idx], params, weight_decay=weight_decay)
                    params = {name: params[name] - lr * grads[name] for name in params}
                for split, X, y in (("train", X_train, y_train), ("val", X_val, y_val)):
                    history[split + "_loss"].append(softmax_cross_entropy(forward(X, params)[0], y)[0])
                    history[split + "_acc"].append(float(np.mean(predict(X, params) == y)))
                acc = history["val_acc"]
                if best_epoch < 0 or acc[-1] > acc[best_epoch]:
                    best, best_epoch = params, epoch
                if epoch >= 1 and acc[-1] >= target_acc and abs(acc[-1] - acc[-2]) < min_delta:
                    break
                if epoch - best_epoch >= patience:
                    break
            return best, history
    """)),
    correct("train_history_via_loss_and_grad", "train records each epoch's losses with loss_and_grad(X, y, params)[0] "
            "on the whole training and validation sets (calls that are evaluations, not steps)",
            train=[(_TRAIN_LOSS, 'history[f"{split}_loss"].append(loss_and_grad(X, y, params)[0])')]),
    correct("train_randomstate_shuffle", "train shuffles with np.random.RandomState(seed).permutation: another "
            "random generator, the same contract", train=[("rng = np.random.default_rng(seed)",
                                                           "rng = np.random.RandomState(seed)")]),
]

VARIANTS = {v.name: v for v in [
    Variant(UNTOUCHED, "the release notebook handed back unchanged: every function raises NotImplementedError",
            {}, TEST_CELLS, UNTOUCHED),
    *_MISUNDERSTANDINGS,
    *_GAMING,
    *_DEGENERATE,
    *_CORRECT,
]}


def submission_codes(source_nb, variant):
    """{solution grade_id: code} of the variant's submission: the reference with the variant's changes.

    For "untouched", the release's stubs (nbgrader's ClearSolutions applied to the source).
    """
    if variant.name == UNTOUCHED:
        stubbed, _ = ClearSolutions().preprocess(copy.deepcopy(source_nb), {})
        return solution_cells(stubbed)
    codes = reference_solutions(source_nb)
    return {**codes, **resolve(variant, codes)}


def make_submission(release_nb, source_nb, variant):
    """A copy of the release notebook with the variant's code in its solution cells.

    Only the solution cells' .source changes; metadata and cell ids stay as released, since nbgrader
    matches cells by grade_id and checks the locked cells' checksums.
    """
    submission = copy.deepcopy(release_nb)
    if variant.name == UNTOUCHED:
        return submission
    codes = submission_codes(source_nb, variant)
    placed = set()
    for cell in submission.cells:
        gid = grade_id(cell)
        if cell.cell_type == "code" and gid in codes and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = codes[gid]
            placed.add(gid)
    missing = set(codes) - placed
    if missing:
        raise ValueError(f"the release notebook has no solution cells {sorted(missing)}")
    return submission
