"""Helpers for the backpropagation assignment.

You do not need to change anything here, but you are welcome to read it. It has:

- gradient checking: ``numerical_gradient``, ``rel_error``, ``check_gradient`` and the pieces
  behind it (``gradient_report``, ``diagnose_gradient``, ``format_check``);
- assertions used by the notebook's tests: ``assert_gradient_close``, ``assert_close``,
  ``assert_unchanged``, structure checks (``assert_array``, ``assert_number``, ``assert_returns``,
  ``assert_keys``, ``assert_history``), ``hint_on_shape_error``, and ``quiet`` to keep harmless
  warnings out of the output;
- ``init_params`` for the network's starting weights, ``toy_network`` for a small test problem;
- ``load_mnist`` for the data and ``plot_history`` for the learning curves;
- ``draw_computation_graph``: one example's forward values and gradients, drawn on the network's graph.

Shapes follow the assignment: n samples, d input features, h hidden units, k classes.
"""

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

# ----------------------------------------------------------------------------------------------
# Numerical gradients
# ----------------------------------------------------------------------------------------------

def numerical_gradient(f, x, h=1e-6):
    """Estimate the gradient of a scalar function by central differences.

    Inputs:
    - f: callable, f(x) -> float; x is an array of the shape of `x` below.
    - x: ndarray of any shape, the point at which to differentiate. Not modified, and f only
      ever sees copies of it.
    - h: float, the step; the error of central differences is O(h**2) plus round-off ~eps*|f|/h.

    Returns:
    - grad: float64 ndarray of x's shape; grad[i] ~ (f(x + h*e_i) - f(x - h*e_i)) / (2h).
    """
    # Work on a float64 copy: an integer or float32 x would swallow the tiny step h,
    # and the caller's array must come back exactly as it was.
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        # f gets its own copy: an f writing into its input would skew all later entries.
        x[i] = old + h
        f_plus = _as_loss(f(x.copy()))
        x[i] = old - h
        f_minus = _as_loss(f(x.copy()))
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
        it.iternext()
    return grad


def _as_loss(value):
    """Convert what f returned to a float, with a helpful error if it is not a single number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"f must return the loss as one number, but it returned {type(value).__name__}; "
            "if it returns (loss, grads), use lambda p: loss_and_grad(X, y, p)[0]"
        ) from None


def rel_error(a, b):
    """Largest relative difference between two arrays of the same shape.

    Inputs:
    - a, b: ndarrays (or numbers) of the same shape.

    Returns:
    - float: max over entries of |a - b| / max(1e-12, |a| + |b|); 0.0 for empty arrays.

    An entry whose true value is tiny can dominate this number through round-off alone;
    gradient_report therefore measures small entries against the gradient's overall scale.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        # Broadcasting would silently compare the wrong things.
        raise ValueError(f"rel_error: shapes differ: {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-12, np.abs(a) + np.abs(b))))


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------

def init_params(d, h, k, seed=0):
    """Starting parameters of the two-layer network, He-normal weights and zero biases.

    Inputs:
    - d: int, number of input features.
    - h: int, number of hidden units.
    - k: int, number of classes.
    - seed: int, seed of np.random.default_rng; the same seed gives the same parameters.

    Returns a dict of float64 arrays:
    - W1: (d, h), entries ~ N(0, 2/d)
    - b1: (h,), zeros
    - W2: (h, k), entries ~ N(0, 2/h)
    - b2: (k,), zeros
    """
    rng = np.random.default_rng(seed)
    # He initialisation: variance 2/fan_in keeps ReLU activations at a steady scale layer to layer.
    W1 = rng.standard_normal((d, h)) * np.sqrt(2.0 / d)
    W2 = rng.standard_normal((h, k)) * np.sqrt(2.0 / h)
    return {"W1": W1, "b1": np.zeros(h), "W2": W2, "b2": np.zeros(k)}


def toy_network(n=5, d=4, h=6, k=3, seed=0):
    """A small problem that exercises every part of the network, for tests and gradient checks.

    Inputs:
    - n, d, h, k: ints, the sizes (keep n != d and h != k, so that a transposed matrix cannot
      hide behind a matching shape).
    - seed: int.

    Returns (X, y, params):
    - X: (n, d) standard normal; y: (n,) labels, every class present when n >= k.
    - params: as init_params, but with nonzero biases (so decaying them would show), hidden unit 0
      dead (Z1[:, 0] < -1 on every row, so its true gradients are exactly 0, which a missing ReLU
      mask gets wrong), and every other pre-activation at least 0.05 from ReLU's kink at 0 (where
      finite differences would be unreliable).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.permutation(np.arange(n) % k)
    params = init_params(d, h, k, seed=seed)
    params["b1"] = rng.normal(0.0, 0.5, size=h)
    params["b2"] = rng.normal(0.0, 0.5, size=k)
    Z1 = X @ params["W1"] + params["b1"]
    params["b1"][0] -= Z1[:, 0].max() + 1.5
    for j in range(1, h):
        while np.abs(X @ params["W1"][:, j] + params["b1"][j]).min() < 0.05:
            params["b1"][j] += 0.03
    return X, y, params


# ----------------------------------------------------------------------------------------------
# Gradient checking
# ----------------------------------------------------------------------------------------------

class GradientCheck(NamedTuple):
    """The result of comparing one analytical gradient with its numerical estimate.

    - name: str, which parameter, e.g. "W1".
    - ok: bool, whether the two agree within the tolerance.
    - rel_error: float, the largest elementwise relative error (inf if they cannot be compared).
    - index: tuple of ints, where that error occurs, or None if the arrays cannot be compared.
    - numerical: float or None, the numerical gradient at index.
    - analytical: float or None, the analytical gradient at index.
    - hint: str, a likely cause when not ok, or "".
    """
    name: str
    ok: bool
    rel_error: float
    index: Optional[tuple]
    numerical: Optional[float]
    analytical: Optional[float]
    hint: str


def _near(r, target, rtol=0.02):
    return abs(r - target) <= rtol * abs(target)


def diagnose_gradient(numerical, analytical, n=None):
    """Guess why an analytical gradient disagrees with the numerical one.

    Inputs:
    - numerical: ndarray, the numerical gradient (taken as the truth).
    - analytical: ndarray of the same shape, or anything else a buggy function may return.
    - n: int or None, the batch size, to recognise a missing or extra factor of n.

    Returns:
    - str, a one-line hint, or "" if the difference matches none of the known patterns.
    """
    num = np.asarray(numerical, dtype=np.float64)
    if analytical is None:
        return "the gradient is None: was it computed and returned?"
    try:
        a = np.asarray(analytical, dtype=np.float64)
    except (TypeError, ValueError):
        return f"expected an array of shape {num.shape}, got {type(analytical).__name__}"

    if a.shape != num.shape:
        if a.ndim >= 2 and a.shape == num.shape[::-1]:
            return ("transposed: looks like W was used where W.T belongs (or X instead of X.T); "
                    f"expected shape {num.shape}, got {a.shape}")
        if a.size == num.size and a.squeeze().shape == num.squeeze().shape:
            return (f"expected shape {num.shape}, got {a.shape}: "
                    "right entries, extra axis (keepdims?)")
        if a.ndim == num.ndim + 1 and a.shape[1:] == num.shape:
            return (f"expected shape {num.shape}, got {a.shape}: one row per sample; "
                    "sum over the batch (axis=0)")
        return f"expected shape {num.shape}, got {a.shape}"

    if not np.isfinite(a).all():
        return f"the analytical gradient contains nan/inf at {_first(~np.isfinite(a))}"
    if not np.isfinite(num).all():
        return (f"the numerical gradient contains nan/inf at {_first(~np.isfinite(num))}: "
                "the loss is not finite near this point")
    if not num.any():
        if a.any():
            return "nonzero, but the true gradient is 0 everywhere: the loss does not depend on it"
        return ""
    if not a.any():
        return "all zeros while the true gradient is not: was it computed (or overwritten)?"

    scale = np.abs(num).max()
    # A square matrix cannot be caught transposed by its shape, only by its values.
    if (a.ndim == 2 and a.shape[0] == a.shape[1] > 1
            and not np.allclose(a, num, rtol=1e-3, atol=1e-6 * scale)
            and np.allclose(a, num.T, rtol=1e-3, atol=1e-6 * scale)):
        return "transposed: looks like W was used where W.T belongs (or X instead of X.T)"

    # If analytical is a multiple of numerical, the multiple names the bug.
    r = float(np.vdot(a, num) / np.vdot(num, num))
    if np.linalg.norm(a - r * num) < 1e-3 * np.linalg.norm(a):
        if _near(r, -1):
            return "sign flipped: dL/dz = softmax(z) − y, not y − softmax(z)"
        if _near(r, 2):
            return "twice too large"
        if _near(r, 0.5):
            return "half the expected value: the gradient of c·‖W‖² is 2·c·W, not c·W"
        if n is not None and n > 2:
            if _near(r, n):
                return f"n = {n} times too large: the loss is a mean over the batch, divide by n"
            if _near(r, 1 / n):
                return f"n = {n} times too small: sum over the batch (axis=0), don't average"
        if not _near(r, 1, rtol=1e-3):
            return f"off by a constant factor: analytical ≈ {r:.4g} × numerical"

    # Entries the loss does not depend on are exactly (or nearly) zero numerically.
    num_zero = np.abs(num) <= 1e-5 * scale
    a_zero = np.abs(a) <= 1e-5 * scale
    agree = np.abs(a - num) <= 1e-3 * (np.abs(a) + np.abs(num)) + 1e-5 * scale
    extra = num_zero & (np.abs(a) > 1e-3 * scale)
    missing = a_zero & (np.abs(num) > 1e-3 * scale)
    if extra.any() and agree[~num_zero].all():
        return "nonzero where the true gradient is 0: is the ReLU mask (Z1 > 0) missing?"
    if missing.any() and agree[~a_zero].all():
        return "zero where it should not be: a mask or a term is missing"
    if extra.any():
        # Other entries differ too, but a nonzero gradient on entries the loss ignores
        # is still the clearest clue in a ReLU network.
        return ("nonzero where the true gradient is 0 (e.g. at "
                f"{_first(extra)}): is the ReLU mask (Z1 > 0) missing?")
    return ""


def _first(mask):
    """Index (a tuple of ints) of the first True entry of a boolean array."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def gradient_report(name, numerical, analytical, n=None, tol=1e-6):
    """Compare an analytical gradient with a numerical one, entry by entry.

    Inputs:
    - name: str, the parameter's name, used in messages.
    - numerical: ndarray, the numerical gradient.
    - analytical: ndarray of the same shape (anything else is reported, not raised).
    - n: int or None, the batch size, passed to diagnose_gradient.
    - tol: float, the largest relative error that counts as correct.

    Returns:
    - GradientCheck. The error of an entry is |a - num| / max(|a| + |num|, 0.1 * s), where s is
      the largest |num|: finite differences carry absolute round-off noise (~1e-9 for a loss
      near 1), so an entry much smaller than the rest cannot be measured to a relative 1e-6 and
      is judged against the gradient's scale instead. Real bugs are off by far more than that.
    """
    num = np.asarray(numerical, dtype=np.float64)
    if analytical is not None and not isinstance(analytical, (np.ndarray, np.generic)):
        # A list of the right numbers is still not what the optimiser's `params[name] -= lr * g` needs.
        return GradientCheck(name, False, float("inf"), None, None, None,
                             f"expected a numpy array of shape {num.shape}, got {_kind_of(analytical)}")
    try:
        a = None if analytical is None else np.asarray(analytical, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.shape != num.shape:
        return GradientCheck(name, False, float("inf"), None, None, None,
                             diagnose_gradient(num, analytical, n))
    if num.size == 0:
        return GradientCheck(name, True, 0.0, None, None, None, "")

    finite = np.isfinite(a) & np.isfinite(num)
    floor = max(1e-12, 0.1 * np.abs(np.where(finite, num, 0)).max())
    with np.errstate(invalid="ignore"):
        err = np.abs(a - num) / np.maximum(np.abs(a) + np.abs(num), floor)
    err = np.where(finite, err, np.inf)
    index = tuple(int(i) for i in np.unravel_index(np.argmax(err), err.shape))
    worst = float(err[index])
    ok = worst < tol
    hint = "" if ok else diagnose_gradient(num, a, n)
    return GradientCheck(name, ok, worst, index, float(num[index]), float(a[index]), hint)


def format_check(check, truth="numerical"):
    """One line describing a GradientCheck, e.g.

    W1: max relative error 3.2e-09 at (3, 5): numerical 0.01234, analytical 0.01234  OK

    Inputs:
    - check: GradientCheck.
    - truth: str, what the reference value is called: "numerical" (finite differences) or, when
      a test compares with a value it knows, "expected".

    Returns:
    - str, one line, ending in OK, or in WRONG followed by the hint if there is one.
    """
    status = "OK" if check.ok else "WRONG"
    if check.hint and not check.ok:
        status += " — " + check.hint
    if check.index is None:
        return f"{check.name}: {status}"
    return (f"{check.name}: max relative error {check.rel_error:.1e} at {check.index}: "
            f"{truth} {check.numerical:.4g}, analytical {check.analytical:.4g}  {status}")


def check_gradient(f, params, grads, h=1e-6, tol=1e-6, n=None, verbose=True):
    """Check every gradient in `grads` against a numerical gradient of `f`.

    Inputs:
    - f: callable, f(params) -> float, the loss as a function of the whole parameter dict.
    - params: dict name -> ndarray, the point at which to check. Not modified.
    - grads: dict name -> ndarray, your analytical gradients, same keys and shapes as params.
    - h: float, the finite-difference step.
    - tol: float, the largest relative error that counts as correct (see gradient_report).
    - n: int or None, the batch size, which lets the hints spot a missing or extra 1/n.
    - verbose: bool, print one line per parameter.

    Returns:
    - dict name -> GradientCheck, one per key of params.

    Example:
        loss, grads = loss_and_grad(X, y, params)
        check_gradient(lambda p: loss_and_grad(X, y, p)[0], params, grads, n=len(X))
    """
    if not hasattr(grads, "keys"):
        raise TypeError(f"grads must be a dict like params, got {type(grads).__name__}")
    base = {key: np.array(value, dtype=np.float64) for key, value in params.items()}
    results = {}
    for key in params:
        def f_of_one(x, key=key):
            # Fresh copies each call, so an f that writes into its input cannot skew the check.
            trial = {k: (x if k == key else v.copy()) for k, v in base.items()}
            return f(trial)

        if key not in grads:
            result = GradientCheck(key, False, float("inf"), None, None, None,
                                   f"grads has no '{key}'")
        else:
            numerical = numerical_gradient(f_of_one, base[key], h=h)
            result = gradient_report(key, numerical, grads[key], n=n, tol=tol)
        results[key] = result
        if verbose:
            print(format_check(result))
    return results


# ----------------------------------------------------------------------------------------------
# Assertions for tests
# ----------------------------------------------------------------------------------------------

def assert_gradient_close(name, numerical, analytical, n=None, tol=1e-6, truth="numerical"):
    """Fail with a readable message if an analytical gradient disagrees with a numerical one.

    Inputs: as gradient_report; `truth` as format_check.

    Returns:
    - GradientCheck, when the gradients agree.

    Raises:
    - AssertionError whose message is format_check's line: where, by how much, and a likely cause.
    """
    check = gradient_report(name, numerical, analytical, n=n, tol=tol)
    if not check.ok:
        raise AssertionError(format_check(check, truth))
    return check


def assert_close(what, actual, expected, rtol=1e-7, atol=1e-10):
    """Fail with a readable message unless `actual` matches `expected` in shape and value.

    Inputs:
    - what: str, names the value in messages, e.g. "softmax(Z)".
    - actual: the value to check: an ndarray or a number.
    - expected: ndarray or number, the right answer.
    - rtol, atol: float; an entry passes if |actual - expected| <= atol + rtol * |expected|.

    Raises:
    - AssertionError naming the first problem found: wrong type, wrong shape, nan/inf, or the
      entry furthest outside the tolerance.
    """
    expected = np.asarray(expected, dtype=np.float64)
    if actual is None:
        raise AssertionError(f"{what}: expected an array of shape {expected.shape}, got None")
    try:
        got = np.asarray(actual)
        if got.dtype.kind not in "biuf":
            raise TypeError
        got = got.astype(np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{what}: expected an array of shape {expected.shape}, "
                             f"got {type(actual).__name__}") from None
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: expected shape {expected.shape}, got {got.shape}")

    bad = ~np.isfinite(got) & np.isfinite(expected)
    if bad.any():
        raise AssertionError(f"{what}: contains nan/inf at {_first(bad)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(got - expected)
        excess = np.where(diff == 0, 0.0, diff / (atol + rtol * np.abs(expected)))
    excess = np.where(np.isfinite(expected), excess, np.where(got == expected, 0.0, np.inf))
    if excess.size and excess.max() > 1:
        i = np.unravel_index(np.argmax(excess), excess.shape)
        where = f" at {tuple(int(j) for j in i)}" if got.ndim else ""
        count = f" ({int((excess > 1).sum())} of {excess.size} entries differ)" if got.ndim else ""
        raise AssertionError(f"{what}: wrong value{where}: got {got[i]:.10g}, "
                             f"expected {expected[i]:.10g}{count}")


_KINDS = {"f": "floats", "i": "integers"}


def assert_array(what, value, shape, kind="f"):
    """Fail with a sentence unless `value` is a numpy array of this shape, kind and finite values.

    Checked before any value is compared, so that nothing degenerate (None, a list, an empty or
    a nan array) can pass a value check vacuously.

    Inputs:
    - what: str, names the value in messages, e.g. "softmax(Z)".
    - value: what the function returned.
    - shape: tuple of ints, the shape it must have.
    - kind: "f" (floating point, all finite) or "i" (integers).

    Returns:
    - value, when it passes.
    """
    shape = tuple(int(s) for s in shape)
    if not isinstance(value, np.ndarray):
        raise AssertionError(f"{what}: expected a numpy array of shape {shape}, got {_kind_of(value)}")
    if value.shape != shape:
        raise AssertionError(f"{what}: expected shape {shape}, got {value.shape}")
    if not (value.dtype.kind in "iu" if kind == "i" else value.dtype.kind == kind):
        raise AssertionError(f"{what}: expected {_KINDS[kind]}, got dtype {value.dtype}")
    if kind == "f" and not np.isfinite(value).all():
        raise AssertionError(f"{what}: contains nan/inf at {_first(~np.isfinite(value))}")
    return value


def assert_number(what, value):
    """Fail with a sentence unless `value` is one finite real number (a float, numpy's included)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, int, np.floating, np.integer)):
        raise AssertionError(f"{what}: expected a number (a float), got {_kind_of(value)}")
    if not np.isfinite(value):
        raise AssertionError(f"{what}: expected a finite number, got {float(value)}")
    return float(value)


def assert_returns(what, value, names):
    """Fail with a sentence unless `value` is a tuple of len(names) items; returns it.

    Inputs:
    - what: str, the function's name.
    - value: what it returned.
    - names: the items' names, e.g. ("loss", "dZ"), used in the message.
    """
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        raise AssertionError(f"{what} should return a tuple ({', '.join(names)}), got {_kind_of(value)}")
    return tuple(value)


def assert_keys(what, value, keys):
    """Fail with a sentence unless `value` is a dict with exactly these keys; returns it."""
    keys = sorted(keys)
    if not isinstance(value, dict):
        raise AssertionError(f"{what}: expected a dict with keys {keys}, got {_kind_of(value)}")
    if sorted(value) != keys:
        missing, extra = sorted(set(keys) - set(value)), sorted(set(value) - set(keys))
        detail = "; ".join(part for part in (f"missing {missing}" if missing else "",
                                             f"unexpected {extra}" if extra else "") if part)
        raise AssertionError(f"{what}: expected the keys {keys}, got {sorted(value)} ({detail})")
    return value


HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


def assert_history(what, history, epochs=None):
    """Fail with a sentence unless `history` is train's per-epoch record; returns its length.

    A dict with exactly the keys HISTORY_KEYS, each a non-empty list of finite numbers, all of
    the same length (`epochs`, when given); accuracies lie in [0, 1].
    """
    assert_keys(what, history, HISTORY_KEYS)
    lengths = {}
    for key in HISTORY_KEYS:
        values = history[key]
        if not isinstance(values, (list, tuple, np.ndarray)) or np.ndim(values) != 1:
            raise AssertionError(f"{what}['{key}']: expected a list with one number per epoch, got {_kind_of(values)}")
        lengths[key] = len(values)
        for epoch, value in enumerate(values, start=1):
            assert_number(f"{what}['{key}'] at epoch {epoch}", value)
            if key.endswith("acc") and not 0.0 <= value <= 1.0:
                raise AssertionError(f"{what}['{key}'] at epoch {epoch}: an accuracy lies in [0, 1], got {value}")
    if len(set(lengths.values())) != 1:
        raise AssertionError(f"{what}: every list should have one entry per epoch, got lengths {lengths}")
    ran = lengths["val_acc"]
    if ran == 0:
        raise AssertionError(f"{what}: the lists are empty; append each epoch's losses and accuracies")
    if epochs is not None and ran != epochs:
        raise AssertionError(f"{what}: expected {epochs} epochs of history, got {ran}")
    return ran


def _kind_of(value):
    """How a message names a value of the wrong kind: its type, and its shape for arrays."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of length {len(value)}"
    return "None" if value is None else type(value).__name__


def assert_unchanged(what, before, after):
    """Fail if a function changed an input in place.

    Inputs:
    - what: str, the function's name, used in the message.
    - before: ndarray, or a dict of them like params: a copy taken before the call.
    - after: the same input after the call.

    Raises:
    - AssertionError "what modified its input in place (first change at index ...)".
    """
    pairs = ([(f"{key!r}, ", before[key], after.get(key)) for key in before]
             if isinstance(before, dict) else [("", before, after)])
    for label, old, new in pairs:
        change = _first_change(old, new)
        if change:
            raise AssertionError(f"{what} modified its input in place ({label}{change})")


def _first_change(before, after):
    """Describe the first difference between two arrays (a str), or "" if they are equal."""
    if after is None:
        return "it is gone"
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        return f"shape was {before.shape}, now {after.shape}"
    same = before == after
    if before.dtype.kind in "fc" and after.dtype.kind in "fc":
        same |= np.isnan(before) & np.isnan(after)  # nan != nan, but an untouched nan is unchanged
    if np.all(same):
        return ""
    i = _first(~same) if before.ndim else ()
    return f"first change at index {i}: was {before[i].item()!r}, now {after[i].item()!r}"


@contextlib.contextmanager
def hint_on_shape_error(what, hint):
    """Turn a shape mismatch raised inside a `with` block into an AssertionError with a hint.

    The student's own traceback stays attached (chained), so the line that raised is still shown;
    any other error passes through unchanged.

    Inputs:
    - what: str, the call being made, e.g. "loss_and_grad(X, y, params)".
    - hint: str, what to check, e.g. "going back through a layer multiplies by W.T".
    """
    try:
        yield
    except ValueError as exc:
        text = " ".join(str(exc).split())
        if not any(word in text for word in ("matmul", "aligned", "broadcast", "shape")):
            raise
        raise AssertionError(f"{what} raised ValueError ({text[:200]}): {hint}") from exc


@contextlib.contextmanager
def quiet():
    """Silence Python warnings and numpy floating-point warnings inside a `with` block.

    nbgrader scores any output on stderr in a test cell as a failure, and correct code may emit
    a harmless RuntimeWarning (say, exp overflowing to inf in a masked-out branch) or a
    DeprecationWarning. Tests run student code under quiet() so that only wrong values cost points.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


# ----------------------------------------------------------------------------------------------
# MNIST
# ----------------------------------------------------------------------------------------------

# Keras' copy of MNIST: one npz with x_train (60000, 28, 28) uint8, y_train, x_test, y_test.
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# 5,000 images, 500 per class, shuffled: `images` (5000, 784) uint8, `labels` (5000,) uint8.
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "mnist_sample.npz"


def load_mnist(cache_dir=None, offline=None, url=MNIST_URL, sha256=MNIST_SHA256,
               n_val=5000, seed=0, timeout=20):
    """Load MNIST, from a local cache, a download, or the bundled 5,000-image sample.

    Inputs:
    - cache_dir: str or Path, the folder of mnist.npz;
      default $MNIST_CACHE, else ~/.cache/backprop-mnist.
    - offline: bool or None. True: use the bundled sample without touching network or cache.
      None: offline if the environment has MNIST_OFFLINE=1 or NBGRADER_EXECUTION (set by nbgrader
      while autograding, which must not depend on the network). False: try the download.
    - url: str, where to download mnist.npz (Keras format) from.
    - sha256: str or None, the file's expected SHA-256; None skips the check.
    - n_val: int, how many of the last training images of full MNIST become the validation set.
    - seed: int, unused: the splits are fixed, so every run sees the same data.
    - timeout: float, seconds to wait on the network before giving up.

    Returns a dict:
    - X_train, X_val, X_test: float64 arrays (n, 784), pixels scaled to [0, 1].
    - y_train, y_val, y_test: int64 arrays (n,), digits 0-9.
    - source: "mnist" (55,000 / 5,000 / 10,000 images) or "sample" (4,000 / 500 / 500).

    Raises:
    - FileNotFoundError if the sample is needed and data/mnist_sample.npz is missing.
    """
    if offline is None:
        reason = _offline_reason()
    else:
        reason = "offline=True" if offline else ""
    if reason:
        return _sample(reason)

    cache = cache_dir or os.environ.get("MNIST_CACHE") or "~/.cache/backprop-mnist"
    path = Path(cache).expanduser() / "mnist.npz"
    full = _load_cached(path, sha256)
    if full is None:
        try:
            full = _fetch(url, path, sha256, timeout)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the sample still lets the student work
            return _sample(f"MNIST download failed ({_describe(exc)})")
        print(f"Downloaded MNIST to {path}")
    return {**_split(*full, n_val), "source": "mnist"}


def _offline_reason():
    """Why the environment asks for offline mode (a str), or "" if it does not."""
    if os.environ.get("NBGRADER_EXECUTION"):
        return "NBGRADER_EXECUTION is set"
    if os.environ.get("MNIST_OFFLINE") == "1":
        return "MNIST_OFFLINE=1"
    return ""


def _sha256(path):
    """Hex SHA-256 of a file, read in chunks so memory use stays small."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_cached(path, sha256):
    """Arrays of a cached full MNIST (see _load_full), or None if there is none or it is corrupt.

    A corrupt file (wrong checksum or unreadable) is deleted, with one printed line, so that the
    caller downloads a fresh copy instead of failing the same way every time.
    """
    if not path.exists():
        return None
    try:
        if sha256 and _sha256(path) != sha256:
            problem = "checksum mismatch"
        else:
            return _load_full(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is deleted and downloaded again
        problem = f"unreadable: {_describe(exc)}"
    print(f"Cached MNIST at {path} is corrupt ({problem}); deleting it and downloading again.")
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def _fetch(url, path, sha256, timeout):
    """Download full MNIST to path and read it (see _load_full).

    A file that arrives but cannot be read (possible when sha256 is None) is deleted, not cached.
    """
    _download(url, path, sha256, timeout)
    try:
        return _load_full(path)
    except Exception:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _download(url, dest, sha256, timeout):
    """Download url to dest, verifying its SHA-256 (str or None to skip) before it appears there.

    The data is streamed into a temporary file next to dest and renamed into place only once
    complete and verified, so an interrupted or bad download never leaves a file named dest.
    Raises OSError (network, HTTP errors) or ValueError (checksum mismatch).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(1 << 16), b""):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        # urllib reports a connection closed early as a normal end of data.
        if expected is not None and size != int(expected):
            raise OSError(f"incomplete download: {size:,} of {int(expected):,} bytes")
        if sha256 and digest.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch: got sha256 {digest.hexdigest()[:12]}…, "
                             f"expected {sha256[:12]}…")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _describe(exc):
    """A short, one-line reason for an exception, for messages to the student."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return " ".join(str(exc).split()) or type(exc).__name__


def _load_full(path):
    """Read an MNIST npz in Keras' format.

    Inputs:
    - path: path of an npz with x_train (N, 28, 28) uint8, y_train (N,), x_test (M, 28, 28),
      y_test (M,). Any N and M work (tests use small fake files).

    Returns:
    - (X_train, y_train, X_test, y_test): X float64 (N, 784) / (M, 784) in [0, 1], y int64.

    Raises ValueError (or the error of np.load) if the file is not such an npz.
    """
    with np.load(path, allow_pickle=False) as data:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}")
        X_train, y_train = _images(data["x_train"]), _labels(data["y_train"])
        X_test, y_test = _images(data["x_test"]), _labels(data["y_test"])
    if len(X_train) != len(y_train) or len(X_test) != len(y_test):
        raise ValueError(f"{path}: numbers of images and labels differ")
    return X_train, y_train, X_test, y_test


def _load_sample(path):
    """Read the bundled sample and split it like a small MNIST.

    Inputs:
    - path: path of an npz with images (N, 784) uint8 and labels (N,), already shuffled.

    Returns:
    - (X_trainval, y_trainval, X_test, y_test): the last N // 10 images are the test set.
    """
    with np.load(path, allow_pickle=False) as data:
        X, y = _images(data["images"]), _labels(data["labels"])
    n_test = len(X) // 10
    return X[:-n_test], y[:-n_test], X[-n_test:], y[-n_test:]


def _sample(reason):
    """The bundled sample split 4,000 / 500 / 500, announced with one printed line."""
    path = Path(SAMPLE_PATH)
    if not path.exists():
        raise FileNotFoundError(f"{reason}, and the bundled MNIST sample is missing: {path}")
    X_trainval, y_trainval, X_test, y_test = _load_sample(path)
    data = _split(X_trainval, y_trainval, X_test, y_test, n_val=len(X_test))
    sizes = [len(data[key]) for key in ("y_train", "y_val", "y_test")]
    print(f"{reason}; using the bundled {sum(sizes):,}-image sample "
          f"({sizes[0]:,} train / {sizes[1]:,} val / {sizes[2]:,} test)")
    return {**data, "source": "sample"}


def _split(X_train, y_train, X_test, y_test, n_val):
    """Hold out the last n_val training images as the validation set.

    Inputs:
    - X_train: (N, 784), y_train: (N,), X_test: (M, 784), y_test: (M,).
    - n_val: int, 0 <= n_val < N.

    Returns:
    - dict with X_train, y_train ((N - n_val) rows), X_val, y_val (n_val rows), X_test, y_test.
    """
    n = len(X_train)
    if not 0 <= n_val < n:
        raise ValueError(f"n_val must be in [0, {n}), got {n_val}")
    # A fixed tail rather than a random split: everyone validates on the same images.
    cut = n - n_val
    return {"X_train": X_train[:cut], "y_train": y_train[:cut],
            "X_val": X_train[cut:], "y_val": y_train[cut:],
            "X_test": X_test, "y_test": y_test}


def _images(x):
    """uint8 images of any shape (N, ...) -> float64 (N, pixels) in [0, 1]."""
    return x.reshape(len(x), -1).astype(np.float64) / 255.0


def _labels(y):
    return np.asarray(y).reshape(-1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Plotting
# ----------------------------------------------------------------------------------------------

def plot_history(history, title=None):
    """Plot learning curves: loss and accuracy per epoch, for training and validation.

    Inputs:
    - history: dict of equal-length lists, one entry per epoch: train_loss, val_loss,
      train_acc, val_acc (as returned by train).
    - title: str or None, a title above both plots.

    Returns:
    - matplotlib Figure with two axes side by side; the epoch with the best validation
      accuracy is marked by a dashed vertical line. In a notebook it shows as the value of
      the cell; elsewhere save it with fig.savefig("curves.png").
    """
    import matplotlib.pyplot as plt  # imported here so that `import helpers` stays fast

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    # Closed so a notebook shows it once, as the returned value, not once more on its own.
    plt.close(fig)
    for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split in ("train", "val"):
            values = history.get(f"{split}_{metric}", [])
            if len(values):
                ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3,
                        label=f"{'training' if split == 'train' else 'validation'} {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)

    val_acc = history.get("val_acc", [])
    if len(val_acc):
        best = int(np.argmax(val_acc)) + 1
        for ax in (ax_loss, ax_acc):
            ax.axvline(best, color="gray", linestyle="--", linewidth=1,
                       label=f"best validation accuracy {val_acc[best - 1]:.4f} (epoch {best})")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# The computation graph of one example
# ----------------------------------------------------------------------------------------------

class _Tape:
    """Reverse-mode differentiation of scalar operations, recorded in the order they run.

    Each entry is one number and, for each input it was computed from, the local derivative
    d(entry)/d(input). The figure's gradients come from here, one scalar at a time, so that this
    file, which students read, holds the chain rule but not the matrix form of the network's
    backward pass (Question 1 asks for that).
    """

    def __init__(self):
        self.values, self.inputs = [], []

    def _record(self, value, inputs):
        self.values.append(float(value))
        self.inputs.append(tuple(inputs))
        return len(self.values) - 1

    def leaf(self, value):
        return self._record(value, ())

    def add(self, nodes, const=0.0):
        return self._record(sum(self.values[i] for i in nodes) + const, ((i, 1.0) for i in nodes))

    def mul(self, a, b):
        va, vb = self.values[a], self.values[b]
        return self._record(va * vb, ((a, vb), (b, va)))

    def relu(self, a):
        v = self.values[a]
        return self._record(max(v, 0.0), ((a, 1.0 if v > 0 else 0.0),))

    def exp(self, a, shift):
        e = np.exp(self.values[a] - shift)  # shifted: exact for softmax, and no overflow
        return self._record(e, ((a, e),))

    def log(self, a):
        return self._record(np.log(self.values[a]), ((a, 1.0 / self.values[a]),))

    def neg(self, a):
        return self._record(-self.values[a], ((a, -1.0),))

    def gradient(self, out):
        """d(out)/d(entry) for every entry: each entry passes its gradient to its inputs,
        last recorded first, so an entry is complete before it is passed on."""
        grad = np.zeros(len(self.values))
        grad[out] = 1.0
        for i in range(out, -1, -1):
            for j, local in self.inputs[i]:
                grad[j] += local * grad[i]
        return grad  # sums start from +0.0, so a stopped gradient is +0.0 and prints as 0.000


def _one_example_graph(x, y, params):
    """Forward values and loss gradients of one example, by the scalar chain rule on a _Tape."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    W1, b1, W2, b2 = (np.asarray(params[name], dtype=np.float64) for name in ("W1", "b1", "W2", "b2"))
    (d, h), k = W1.shape, W2.shape[1]
    if x.shape != (d,) or b1.shape != (h,) or W2.shape != (h, k) or b2.shape != (k,) or not 0 <= y < k:
        raise ValueError(f"need x ({d},), W1 (d, h), b1 (h,), W2 (h, k), b2 (k,) and 0 <= y < k; got x "
                         f"{x.shape}, W1 {W1.shape}, b1 {b1.shape}, W2 {W2.shape}, b2 {b2.shape}, y={y}")
    t = _Tape()
    leaves = {name: np.vectorize(t.leaf, otypes=[int])(value)
              for name, value in (("x", x), ("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2))}
    z1 = [t.add([t.mul(leaves["x"][i], leaves["W1"][i, j]) for i in range(d)] + [leaves["b1"][j]])
          for j in range(h)]
    a1 = [t.relu(node) for node in z1]
    z2 = [t.add([t.mul(a1[j], leaves["W2"][j, c]) for j in range(h)] + [leaves["b2"][c]]) for c in range(k)]
    # L = -z2[y] + ln sum_c e^z2[c], computed as m + ln sum_c e^(z2[c] - m) with m the largest logit.
    m = max(t.values[node] for node in z2)
    exps = [t.exp(node, m) for node in z2]
    loss = t.add([t.neg(z2[int(y)]), t.log(t.add(exps))], const=m)
    grad = t.gradient(loss)

    def value(nodes):
        return np.array([t.values[i] for i in np.ravel(nodes)]).reshape(np.shape(nodes))

    def gradient(nodes):
        return grad[np.asarray(nodes)]

    e = value(exps)
    return {"x": x, "y": int(y), "z1": value(z1), "a1": value(a1), "z2": value(z2), "p": e / e.sum(),
            "loss": float(t.values[loss]),
            "dx": gradient(leaves["x"]), "dW1": gradient(leaves["W1"]), "db1": gradient(leaves["b1"]),
            "dz1": gradient(z1), "da1": gradient(a1), "dz2": gradient(z2),
            "dW2": gradient(leaves["W2"]), "db2": gradient(leaves["b2"]),
            "inactive": [j for j in range(h) if t.values[z1[j]] <= 0]}


def _numbers(array, digits):
    """An array as text, one row per line: [1.10  -0.50]."""
    rows = np.atleast_2d(array)
    return "\n".join("[" + "  ".join(f"{v:.{digits}f}" for v in row) + "]" for row in rows)


def draw_computation_graph(x, y, params, ax=None):
    """Draw the computation graph of ONE example through the two-layer network, forward values in
    the nodes and the loss's gradients on the edges.

    The graph is x -> z1 = x W1 + b1 -> a1 = relu(z1) -> z2 = a1 W2 + b2 -> L = -ln softmax(z2)[y],
    with W1, b1, W2, b2 feeding in from below. Each edge u -> v is labelled with dL/du, the gradient
    that flows back along it. Values are computed here, by the chain rule one number at a time,
    never with your functions: the figure illustrates, it does not check your code. Keep it small
    (d, h, k of 2 or 3) to read every number.

    Inputs:
    - x: one example, shape (d,)
    - y: int, its label in [0, k)
    - params: dict with W1 (d, h), b1 (h,), W2 (h, k), b2 (k,). Nothing is modified.
    - ax: a matplotlib Axes to draw in (its limits are set and its frame hidden), or None for a new
      figure of 13 x 4.6 inches.

    Returns a tuple (fig, values):
    - fig: the matplotlib Figure. In a notebook show it with display(fig); elsewhere
      fig.savefig("graph.png").
    - values: dict of what is drawn. Forward: x (d,), z1 (h,), a1 (h,), z2 (k,), p (k,) the
      softmax, loss (float), y (int). Gradients of the loss: dx (d,), dW1 (d, h), db1 (h,), dz1 (h,),
      da1 (h,), dz2 (k,), dW2 (h, k), db2 (k,). inactive: list of the hidden units j with
      z1[j] <= 0 (their gradient stops at the ReLU).
    """
    import matplotlib.pyplot as plt  # imported here so that `import helpers` stays fast
    from matplotlib.patches import FancyArrowPatch

    v = _one_example_graph(x, y, params)
    if ax is None:
        fig = plt.figure(figsize=(13, 4.6))
        plt.close(fig)  # shown once, as the returned value, not once more on its own
        ax = fig.add_axes((0, 0, 1, 1))  # the whole figure, so data units are inches
    fig = ax.figure
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 4.6)
    ax.axis("off")

    # name: (x, y) of the box centre, its text. Coordinates: inches of the default figure.
    nodes = {
        "x": ((0.75, 3.1), f"x (input)\n{_numbers(v['x'], 2)}"),
        "z1": ((3.75, 3.1), f"z1 = x W1 + b1\n{_numbers(v['z1'], 2)}"),
        "a1": ((6.6, 3.1), f"a1 = relu(z1)\n{_numbers(v['a1'], 2)}"),
        "z2": ((9.3, 3.1), f"z2 = a1 W2 + b2\n{_numbers(v['z2'], 2)}"),
        "L": ((12.05, 3.1), f"L = -ln p[y]\np = softmax(z2)\n{_numbers(v['p'], 3)}\ny = {v['y']}, "
                           f"L = {v['loss']:.3f}"),
        "W1": ((2.1, 0.9), f"W1\n{_numbers(params['W1'], 2)}"),
        "b1": ((4.9, 0.9), f"b1\n{_numbers(params['b1'], 2)}"),
        "W2": ((8.1, 0.9), f"W2\n{_numbers(params['W2'], 2)}"),
        "b2": ((10.9, 0.9), f"b2\n{_numbers(params['b2'], 2)}"),
    }
    boxes = {}
    for name, ((cx, cy), text) in nodes.items():
        param = name[0] in "Wb"
        boxes[name] = ax.text(cx, cy, text, ha="center", va="center", fontsize=10, family="monospace",
                              gid=f"node:{name}",
                              bbox={"boxstyle": "round,pad=0.4", "edgecolor": "black",
                                    "facecolor": "#fff4d6" if param else "#e8f0fb"})
    fig.draw_without_rendering()  # the boxes' sizes are known only once laid out: arrows stop at their edges
    to_data = ax.transData.inverted()
    extents = {name: to_data.transform(box.get_bbox_patch().get_window_extent().get_points())
               for name, box in boxes.items()}

    def border(name, towards):
        """Where the line from the centre of box `name` towards a point leaves the box."""
        centre = np.asarray(nodes[name][0])
        (x0, y0), (x1, y1) = extents[name]
        direction = np.asarray(towards) - centre
        with np.errstate(divide="ignore"):
            t = min(np.abs(np.array([(x1 - x0) / 2, (y1 - y0) / 2]) / direction))
        return centre + (t + 0.03 / np.hypot(*direction)) * direction

    # (from, to, gradient key, label side): main-row labels go above the arrow, the parameters'
    # beside theirs, so no number sits on a line.
    edges = [("x", "z1", "dx", "above"), ("z1", "a1", "dz1", "above"), ("a1", "z2", "da1", "above"),
             ("z2", "L", "dz2", "above"), ("W1", "z1", "dW1", "left"), ("b1", "z1", "db1", "right"),
             ("W2", "z2", "dW2", "left"), ("b2", "z2", "db2", "right")]
    for start, end, key, side in edges:
        a, b = border(start, nodes[end][0]), border(end, nodes[start][0])
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=16, shrinkA=0, shrinkB=0,
                                     color="black", linewidth=1.2, gid=f"edge:{start}->{end}"))
        mid_x, mid_y = (a + b) / 2
        where = {"above": (mid_x, mid_y + 0.4, "center", "bottom"), "left": (mid_x - 0.3, mid_y, "right", "center"),
                 "right": (mid_x + 0.3, mid_y, "left", "center")}[side]
        ax.text(where[0], where[1], f"dL/d{start}\n{_numbers(v[key], 3)}", ha=where[2], va=where[3],
                fontsize=9, family="monospace", color="#b00020", multialignment="center", gid=f"grad:{key}")
    if v["inactive"]:
        off = ", ".join(f"z1[{j}] = {v['z1'][j]:.2f}" for j in v["inactive"])
        mid_x = (nodes["z1"][0][0] + nodes["a1"][0][0]) / 2
        ax.text(mid_x, nodes["z1"][0][1] + 0.95, f"{off}: the ReLU is off there,\nno gradient passes back",
                ha="center", va="bottom", fontsize=9, color="#b00020", style="italic", gid="note:inactive")
    ax.text(6.5, 0.08, "black arrows: the forward pass.   red: the gradient of the loss L that flows back "
            "along each arrow (dL/d of the arrow's start), for this one example.",
            ha="center", va="bottom", fontsize=9, color="#444444", gid="legend")
    return fig, v
