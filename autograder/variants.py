"""A catalogue of student submissions: the bugs the hidden tests must catch, and correct code they must pass.

Used by the mutation tests (tests/grading/test_mutations.py: every bug loses points in the cell that
owns it at every grader seed, every correct variant gets full marks) and by the instructor demo (a
sample class of submissions).

A variant is the student's version of some solution cells; every other solution cell keeps the
reference solution, so each bug is judged on its own. `code` maps a solution cell's grade_id to the
full source the student left in that cell. `must_fail` names the test cells that must lose points.
The variant "untouched" is the release notebook handed back unchanged (every function still raises
NotImplementedError).
"""
import copy
import textwrap
from typing import NamedTuple

from nbgrader.preprocessors import ClearSolutions

from .testcells import grade_id, reference_solutions, solution_cells

TEST_CELLS = frozenset({"test_softmax", "test_one_hot", "test_sce_loss", "test_sce_grad", "test_relu",
                        "test_forward", "test_loss_value", "test_gradients", "test_weight_decay",
                        "test_predict", "test_train"})
UNTOUCHED = "untouched"


class Variant(NamedTuple):
    name: str             # e.g. "dz_missing_1_over_n"
    description: str      # one line a TA understands
    code: dict            # {solution grade_id: full replacement cell source}
    must_fail: frozenset  # grade_ids of the test cells that must lose points (empty: correct code)


def _src(text):
    """Cell source from an indented triple-quoted string."""
    return textwrap.dedent(text).strip("\n") + "\n"


# ------------------------------------------------------------------------------------------------
# Bug variants: each must lose points in the cell that owns the bug.
# ------------------------------------------------------------------------------------------------

_BUGS = [
    # --- softmax -----------------------------------------------------------------------------
    Variant("softmax_no_max_shift", "softmax without the max-shift: exp overflows to inf/nan for big logits", {
        "softmax": _src("""
            def softmax(Z):
                E = np.exp(Z)
                return E / np.sum(E, axis=-1, keepdims=True)
        """)}, frozenset({"test_softmax"})),
    Variant("softmax_global_max_shift", "softmax shifted by the whole array's max, not each row's: rows far below it give 0/0", {
        "softmax": _src("""
            def softmax(Z):
                E = np.exp(Z - np.max(Z))
                return E / np.sum(E, axis=-1, keepdims=True)
        """)}, frozenset({"test_softmax"})),
    Variant("softmax_inplace", "softmax subtracts the max from Z in place (Z -= ...), changing the caller's array", {
        "softmax": _src("""
            def softmax(Z):
                Z -= np.max(Z, axis=-1, keepdims=True)
                E = np.exp(Z)
                return E / np.sum(E, axis=-1, keepdims=True)
        """)}, frozenset({"test_softmax"})),
    Variant("softmax_hardcoded", "softmax returns the visible tests' expected arrays for their inputs, uniform rows otherwise", {
        "softmax": _src("""
            def softmax(Z):
                Z = np.asarray(Z, dtype=float)
                if Z.shape == (2, 2) and np.allclose(Z, [[0.0, np.log(2.0)], [1.0, 1.0]]):
                    return np.array([[1/3, 2/3], [0.5, 0.5]])
                if Z.shape == (2, 2) and np.allclose(Z, [[1000.0, 0.0], [-1000.0, 1000.0]]):
                    return np.array([[1.0, 0.0], [0.0, 1.0]])
                if Z.shape == (2,) and np.allclose(Z, [0.0, np.log(2.0)]):
                    return np.array([1/3, 2/3])
                return np.full(Z.shape, 1.0 / Z.shape[-1])
        """)}, frozenset({"test_softmax"})),

    Variant("softmax_steers_inputs", "softmax overwrites its input with zeros and returns uniform rows, so a "
            "reference computed afterwards from the same array would agree", {
        "softmax": _src("""
            def softmax(Z):
                if Z.ndim == 2 or Z.shape == (2,):  # answer honestly but for a 1-D input it wasn't shown
                    E = np.exp(Z - np.max(Z, axis=-1, keepdims=True))
                    return E / np.sum(E, axis=-1, keepdims=True)
                Z[...] = 0.0
                return np.full(Z.shape, 1.0 / Z.shape[-1])
        """)}, frozenset({"test_softmax"})),

    # --- one_hot -------------------------------------------------------------------------------
    Variant("one_hot_int_dtype", "one_hot returns integers instead of floats", {
        "one_hot": _src("""
            def one_hot(y, k):
                return np.eye(k, dtype=int)[y]
        """)}, frozenset({"test_one_hot"})),

    # --- softmax_cross_entropy -----------------------------------------------------------------
    Variant("sce_log_of_softmax", "loss is np.log(softmax(Z)): the softmax underflows to 0 and ln 0 = -inf for big logits", {
        "softmax_cross_entropy": _src("""
            def softmax_cross_entropy(Z, y):
                n, k = Z.shape
                P = softmax(Z)
                loss = -np.mean(np.log(P[np.arange(n), y]))
                dZ = (P - one_hot(y, k)) / n
                return float(loss), dZ
        """)}, frozenset({"test_sce_loss"})),
    Variant("sce_log_of_softmax_eps", "loss is np.log(softmax(Z) + 1e-12): finite, but capped near 27.6 when the softmax underflows", {
        "softmax_cross_entropy": _src("""
            def softmax_cross_entropy(Z, y):
                n, k = Z.shape
                P = softmax(Z)
                loss = -np.mean(np.log(P[np.arange(n), y] + 1e-12))
                dZ = (P - one_hot(y, k)) / n
                return float(loss), dZ
        """)}, frozenset({"test_sce_loss"})),
    Variant("dz_missing_1_over_n", "dZ not divided by n (the gradient of the summed loss, for a mean loss)", {
        "softmax_cross_entropy": _src("""
            def softmax_cross_entropy(Z, y):
                n, k = Z.shape
                shifted = Z - np.max(Z, axis=1, keepdims=True)
                log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
                loss = -np.mean(log_probs[np.arange(n), y])
                dZ = np.exp(log_probs) - one_hot(y, k)
                return float(loss), dZ
        """)}, frozenset({"test_sce_grad"})),
    Variant("sce_sum_not_mean", "loss summed over the batch instead of averaged, with the matching gradient P - Y", {
        "softmax_cross_entropy": _src("""
            def softmax_cross_entropy(Z, y):
                n, k = Z.shape
                shifted = Z - np.max(Z, axis=1, keepdims=True)
                log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
                loss = -np.sum(log_probs[np.arange(n), y])
                dZ = np.exp(log_probs) - one_hot(y, k)
                return float(loss), dZ
        """)}, frozenset({"test_sce_loss", "test_sce_grad"})),
    Variant("dz_sign_flipped", "dZ = (Y - P) / n: the gradient's sign is flipped", {
        "softmax_cross_entropy": _src("""
            def softmax_cross_entropy(Z, y):
                n, k = Z.shape
                shifted = Z - np.max(Z, axis=1, keepdims=True)
                log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
                loss = -np.mean(log_probs[np.arange(n), y])
                dZ = (one_hot(y, k) - np.exp(log_probs)) / n
                return float(loss), dZ
        """)}, frozenset({"test_sce_grad"})),

    # --- relu ----------------------------------------------------------------------------------
    Variant("relu_inplace", "relu zeroes the negatives of its input in place (X[X < 0] = 0)", {
        "relu": _src("""
            def relu(X):
                X[X < 0] = 0
                return X
        """)}, frozenset({"test_relu"})),

    # --- forward -------------------------------------------------------------------------------
    # The student's other functions do their own forward pass, so only `forward` is hard-coded and
    # every visible test passes: only the hidden tests can catch it.
    Variant("forward_hardcoded", "forward returns the visible test's expected logits (zeros otherwise); the other functions inline the forward pass", {
        "forward": _src("""
            def forward(X, params):
                X = np.asarray(X, dtype=float)
                if X.shape == (3, 2) and np.allclose(X, [[1.0, -1.0], [0.5, 2.0], [0.0, 0.0]]):
                    return np.array([[1.1, -0.1], [2.6, 3.9], [0.1, 0.4]]), None
                return np.zeros((X.shape[0], params["b2"].shape[0])), None
        """),
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
                Z1 = X @ W1 + b1
                A1 = relu(Z1)
                Z2 = A1 @ W2 + b2
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
                dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
                return loss, {"W1": X.T @ dZ1 + 2 * weight_decay * W1, "b1": dZ1.sum(axis=0),
                              "W2": A1.T @ dZ2 + 2 * weight_decay * W2, "b2": dZ2.sum(axis=0)}
        """),
        "predict": _src("""
            def predict(X, params):
                Z2 = relu(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
                return np.argmax(Z2, axis=1)
        """),
        "train": _src("""
            def train(X_train, y_train, X_val, y_val, hidden_size=128, lr=0.1, weight_decay=1e-4,
                      batch_size=32, epochs=30, target_acc=0.975, min_delta=0.005, patience=3, seed=0):
                rng = np.random.default_rng(seed)
                n, d = X_train.shape
                k = int(max(y_train.max(), y_val.max())) + 1
                params = init_params(d, hidden_size, k, seed=seed)
                history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
                best_params, best_acc, epochs_since_best = None, -1.0, 0
                for epoch in range(epochs):
                    order = rng.permutation(n)
                    for start in range(0, n, batch_size):
                        batch = order[start:start + batch_size]
                        _, grads = loss_and_grad(X_train[batch], y_train[batch], params, weight_decay)
                        for name in params:
                            params[name] -= lr * grads[name]
                    for split, X, y in (("train", X_train, y_train), ("val", X_val, y_val)):
                        history[f"{split}_loss"].append(loss_and_grad(X, y, params)[0])
                        history[f"{split}_acc"].append(float(np.mean(predict(X, params) == y)))
                    val_acc = history["val_acc"][-1]
                    if val_acc > best_acc:
                        best_params = {name: value.copy() for name, value in params.items()}
                        best_acc, epochs_since_best = val_acc, 0
                    else:
                        epochs_since_best += 1
                    if (epoch > 0 and val_acc >= target_acc and abs(val_acc - history["val_acc"][-2]) < min_delta
                            or epochs_since_best >= patience):
                        break
                return best_params, history
        """)}, frozenset({"test_forward"})),

    # --- loss_and_grad -------------------------------------------------------------------------
    Variant("weight_decay_grad_c_not_2c", "weight-decay gradient c*W instead of 2c*W", {
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, W2 = params["W1"], params["W2"]
                Z2, (X, Z1, A1) = forward(X, params)
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * (np.sum(W1 * W1) + np.sum(W2 * W2))
                dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
                return loss, {"W1": X.T @ dZ1 + weight_decay * W1, "b1": dZ1.sum(axis=0),
                              "W2": A1.T @ dZ2 + weight_decay * W2, "b2": dZ2.sum(axis=0)}
        """)}, frozenset({"test_weight_decay"})),
    Variant("weight_decay_on_biases", "biases decayed too: b1, b2 in the decay term of the loss and the gradient", {
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
                Z2, (X, Z1, A1) = forward(X, params)
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * sum(np.sum(p * p) for p in (W1, b1, W2, b2))
                dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
                return loss, {"W1": X.T @ dZ1 + 2 * weight_decay * W1, "b1": dZ1.sum(axis=0) + 2 * weight_decay * b1,
                              "W2": A1.T @ dZ2 + 2 * weight_decay * W2, "b2": dZ2.sum(axis=0) + 2 * weight_decay * b2}
        """)}, frozenset({"test_weight_decay"})),
    Variant("relu_mask_missing", "backward through ReLU without the mask (Z1 > 0): dZ1 = dZ2 @ W2.T", {
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, W2 = params["W1"], params["W2"]
                Z2, (X, Z1, A1) = forward(X, params)
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * (np.sum(W1 * W1) + np.sum(W2 * W2))
                dZ1 = dZ2 @ W2.T
                return loss, {"W1": X.T @ dZ1 + 2 * weight_decay * W1, "b1": dZ1.sum(axis=0),
                              "W2": A1.T @ dZ2 + 2 * weight_decay * W2, "b2": dZ2.sum(axis=0)}
        """)}, frozenset({"test_gradients"})),
    Variant("bias_grad_mean", "bias gradients averaged over the batch (dZ.mean(axis=0)) instead of summed", {
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, W2 = params["W1"], params["W2"]
                Z2, (X, Z1, A1) = forward(X, params)
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * (np.sum(W1 * W1) + np.sum(W2 * W2))
                dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
                return loss, {"W1": X.T @ dZ1 + 2 * weight_decay * W1, "b1": dZ1.mean(axis=0),
                              "W2": A1.T @ dZ2 + 2 * weight_decay * W2, "b2": dZ2.mean(axis=0)}
        """)}, frozenset({"test_gradients"})),
    Variant("bias_grad_not_summed", "bias gradients not summed over the batch: one row per sample, shape (n, h)", {
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, W2 = params["W1"], params["W2"]
                Z2, (X, Z1, A1) = forward(X, params)
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * (np.sum(W1 * W1) + np.sum(W2 * W2))
                dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
                return loss, {"W1": X.T @ dZ1 + 2 * weight_decay * W1, "b1": dZ1,
                              "W2": A1.T @ dZ2 + 2 * weight_decay * W2, "b2": dZ2}
        """)}, frozenset({"test_gradients"})),
    Variant("w2_not_transposed", "backward uses W2 instead of W2.T: dZ1 = dZ2 @ W2 (raises when h != k)", {
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, W2 = params["W1"], params["W2"]
                Z2, (X, Z1, A1) = forward(X, params)
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * (np.sum(W1 * W1) + np.sum(W2 * W2))
                dZ1 = (dZ2 @ W2) * (Z1 > 0)
                return loss, {"W1": X.T @ dZ1 + 2 * weight_decay * W1, "b1": dZ1.sum(axis=0),
                              "W2": A1.T @ dZ2 + 2 * weight_decay * W2, "b2": dZ2.sum(axis=0)}
        """)}, frozenset({"test_gradients"})),
    Variant("weight_grads_transposed", "weight gradients transposed: dZ1.T @ X and dZ2.T @ A1, shapes (h, d) and (k, h)", {
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, W2 = params["W1"], params["W2"]
                Z2, (X, Z1, A1) = forward(X, params)
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * (np.sum(W1 * W1) + np.sum(W2 * W2))
                dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
                return loss, {"W1": dZ1.T @ X + 2 * weight_decay * W1.T, "b1": dZ1.sum(axis=0),
                              "W2": dZ2.T @ A1 + 2 * weight_decay * W2.T, "b2": dZ2.sum(axis=0)}
        """)}, frozenset({"test_gradients"})),
    Variant("loss_and_grad_modifies_params", "weight gradients built in the weights' own memory (dW1 = W1; dW1 *= ...): params change", {
        "loss_and_grad": _src("""
            def loss_and_grad(X, y, params, weight_decay=0.0):
                W1, W2 = params["W1"], params["W2"]
                Z2, (X, Z1, A1) = forward(X, params)
                loss, dZ2 = softmax_cross_entropy(Z2, y)
                loss += weight_decay * (np.sum(W1 * W1) + np.sum(W2 * W2))
                dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
                dW1 = W1
                dW1 *= 2 * weight_decay
                dW1 += X.T @ dZ1
                dW2 = W2
                dW2 *= 2 * weight_decay
                dW2 += A1.T @ dZ2
                return loss, {"W1": dW1, "b1": dZ1.sum(axis=0), "W2": dW2, "b2": dZ2.sum(axis=0)}
        """)}, frozenset({"test_gradients"})),

    # --- predict -------------------------------------------------------------------------------
    Variant("predict_argmax_axis0", "predict takes the argmax over the samples (axis=0) instead of the classes", {
        "predict": _src("""
            def predict(X, params):
                Z2, _ = forward(X, params)
                return np.argmax(Z2, axis=0)
        """)}, frozenset({"test_predict"})),

    Variant("predict_steers_inputs", "predict zeroes params in place and returns zeros, so a reference computed "
            "afterwards from the same params would agree", {
        "predict": _src("""
            def predict(X, params):
                if len(X) == 3:  # the visible test's input: answer honestly
                    Z2, _ = forward(X, params)
                    return np.argmax(Z2, axis=1)
                for value in params.values():
                    value[...] = 0.0
                return np.zeros(len(X), dtype=int)
        """)}, frozenset({"test_predict"})),

    # --- train ---------------------------------------------------------------------------------
    Variant("train_returns_last_params", "train returns the last epoch's parameters, not the best validation epoch's", {
        "train": _src("""
            def train(X_train, y_train, X_val, y_val, hidden_size=128, lr=0.1, weight_decay=1e-4,
                      batch_size=32, epochs=30, target_acc=0.975, min_delta=0.005, patience=3, seed=0):
                rng = np.random.default_rng(seed)
                n, d = X_train.shape
                k = int(max(y_train.max(), y_val.max())) + 1
                params = init_params(d, hidden_size, k, seed=seed)
                history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
                best_acc, epochs_since_best = -1.0, 0
                for epoch in range(epochs):
                    order = rng.permutation(n)
                    for start in range(0, n, batch_size):
                        batch = order[start:start + batch_size]
                        _, grads = loss_and_grad(X_train[batch], y_train[batch], params, weight_decay)
                        for name in params:
                            params[name] -= lr * grads[name]
                    for split, X, y in (("train", X_train, y_train), ("val", X_val, y_val)):
                        Z2, _ = forward(X, params)
                        history[f"{split}_loss"].append(softmax_cross_entropy(Z2, y)[0])
                        history[f"{split}_acc"].append(float(np.mean(np.argmax(Z2, axis=1) == y)))
                    val_acc = history["val_acc"][-1]
                    if val_acc > best_acc:
                        best_acc, epochs_since_best = val_acc, 0
                    else:
                        epochs_since_best += 1
                    if (epoch > 0 and val_acc >= target_acc and abs(val_acc - history["val_acc"][-2]) < min_delta
                            or epochs_since_best >= patience):
                        break
                return params, history
        """)}, frozenset({"test_train"})),
    Variant("train_no_early_stopping", "train always runs every epoch: no early stopping (returns the best epoch's parameters)", {
        "train": _src("""
            def train(X_train, y_train, X_val, y_val, hidden_size=128, lr=0.1, weight_decay=1e-4,
                      batch_size=32, epochs=30, target_acc=0.975, min_delta=0.005, patience=3, seed=0):
                rng = np.random.default_rng(seed)
                n, d = X_train.shape
                k = int(max(y_train.max(), y_val.max())) + 1
                params = init_params(d, hidden_size, k, seed=seed)
                history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
                best_params, best_acc = None, -1.0
                for epoch in range(epochs):
                    order = rng.permutation(n)
                    for start in range(0, n, batch_size):
                        batch = order[start:start + batch_size]
                        _, grads = loss_and_grad(X_train[batch], y_train[batch], params, weight_decay)
                        for name in params:
                            params[name] -= lr * grads[name]
                    for split, X, y in (("train", X_train, y_train), ("val", X_val, y_val)):
                        Z2, _ = forward(X, params)
                        history[f"{split}_loss"].append(softmax_cross_entropy(Z2, y)[0])
                        history[f"{split}_acc"].append(float(np.mean(np.argmax(Z2, axis=1) == y)))
                    if history["val_acc"][-1] > best_acc:
                        best_params = {name: value.copy() for name, value in params.items()}
                        best_acc = history["val_acc"][-1]
                return best_params, history
        """)}, frozenset({"test_train"})),
]

# ------------------------------------------------------------------------------------------------
# Correct variants: other ways to write the same functions; each must get full marks.
# ------------------------------------------------------------------------------------------------

_CORRECT = [
    Variant("perfect", "the reference solution", {}, frozenset()),
    Variant("loss_and_grad_per_row_loop", "loss_and_grad as a loop over samples, accumulating each row's gradient / n", {
        "loss_and_grad": _src("""
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
        """)}, frozenset()),
    Variant("sce_logsumexp", "softmax_cross_entropy via log-sum-exp: loss = mean(lse - z_y), dZ = (exp(Z - lse) - Y) / n", {
        "softmax_cross_entropy": _src("""
            def softmax_cross_entropy(Z, y):
                n, k = Z.shape
                m = np.max(Z, axis=1, keepdims=True)
                lse = m + np.log(np.sum(np.exp(Z - m), axis=1, keepdims=True))
                loss = np.mean(lse[:, 0] - Z[np.arange(n), y])
                dZ = (np.exp(Z - lse) - one_hot(y, k)) / n
                return float(loss), dZ
        """)}, frozenset()),
    Variant("softmax_logsumexp", "softmax as np.exp(Z - logsumexp(Z)), the log-sum-exp computed stably", {
        "softmax": _src("""
            def softmax(Z):
                m = np.max(Z, axis=-1, keepdims=True)
                lse = m + np.log(np.sum(np.exp(Z - m), axis=-1, keepdims=True))
                return np.exp(Z - lse)
        """)}, frozenset()),
    Variant("einsum", "forward and backward written with np.einsum", {
        "forward": _src("""
            def forward(X, params):
                Z1 = np.einsum("nd,dh->nh", X, params["W1"]) + params["b1"]
                A1 = relu(Z1)
                Z2 = np.einsum("nh,hk->nk", A1, params["W2"]) + params["b2"]
                return Z2, (X, Z1, A1)
        """),
        "loss_and_grad": _src("""
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
        """)}, frozenset()),
    Variant("inplace_on_own_copies", "softmax, relu and one_hot modify only arrays they made themselves", {
        "softmax": _src("""
            def softmax(Z):
                P = Z - np.max(Z, axis=-1, keepdims=True)  # a new array
                np.exp(P, out=P)
                P /= np.sum(P, axis=-1, keepdims=True)
                return P
        """),
        "relu": _src("""
            def relu(X):
                out = np.array(X, dtype=np.float64)  # a copy
                out[out < 0] = 0.0
                return out
        """),
        "one_hot": _src("""
            def one_hot(y, k):
                return np.eye(k)[y]
        """)}, frozenset()),
    Variant("noisy_but_correct", "correct values, but prints numpy warnings: discarded exp overflow / ln 0, deprecated np.row_stack", {
        "softmax": _src("""
            def softmax(Z):
                first_try = np.exp(Z) / np.sum(np.exp(Z), axis=-1, keepdims=True)  # overflows for big Z; unused
                E = np.exp(Z - np.max(Z, axis=-1, keepdims=True))
                return E / np.sum(E, axis=-1, keepdims=True)
        """),
        "one_hot": _src("""
            def one_hot(y, k):
                return np.row_stack([np.eye(k)[label] for label in y])
        """),
        "softmax_cross_entropy": _src("""
            def softmax_cross_entropy(Z, y):
                n, k = Z.shape
                P = softmax(Z)
                naive = -np.mean(np.log(P[np.arange(n), y]))  # ln 0 = -inf for big logits; kept to compare, unused
                shifted = Z - np.max(Z, axis=1, keepdims=True)
                log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
                loss = -np.mean(log_probs[np.arange(n), y])
                return float(loss), (P - one_hot(y, k)) / n
        """)}, frozenset()),
    Variant("train_other_bookkeeping", "train with its own bookkeeping: in-place shuffle, best epoch index, new params dicts", {
        "train": _src("""
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
        """)}, frozenset()),
]

VARIANTS = {v.name: v for v in [
    Variant(UNTOUCHED, "the release notebook handed back unchanged: every function raises NotImplementedError",
            {}, TEST_CELLS),
    *_BUGS,
    *_CORRECT,
]}


def submission_codes(source_nb, variant):
    """{solution grade_id: code} of the variant's submission: the reference with variant.code applied.

    For "untouched", the release's stubs (nbgrader's ClearSolutions applied to the source).
    """
    if variant.name == UNTOUCHED:
        stubbed, _ = ClearSolutions().preprocess(copy.deepcopy(source_nb), {})
        return solution_cells(stubbed)
    codes = reference_solutions(source_nb)
    unknown = set(variant.code) - set(codes)
    if unknown:
        raise ValueError(f"variant {variant.name!r} replaces cells the notebook does not have: {sorted(unknown)}")
    return {**codes, **variant.code}


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
