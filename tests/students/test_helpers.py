"""Tests of helpers.py: gradient checking, assertions, init_params, load_mnist, plot_history, draw_computation_graph.

They never touch the internet: downloads go to a local HTTP server on 127.0.0.1 and caches live
in pytest's tmp_path.
"""

import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import threading
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest

import helpers
from helpers import (
    GradientCheck,
    assert_array,
    assert_close,
    assert_gradient_close,
    assert_history,
    assert_keys,
    assert_number,
    assert_returns,
    assert_unchanged,
    check_gradient,
    diagnose_gradient,
    format_check,
    gradient_report,
    hint_on_shape_error,
    init_params,
    load_mnist,
    numerical_gradient,
    quiet,
    rel_error,
    toy_network,
)

ROOT = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------------------------
# numerical_gradient, rel_error
# ----------------------------------------------------------------------------------------------

def test_numerical_gradient_quadratic():
    x = np.array([[1.0, -2.0, 3.5], [0.0, 0.25, -7.0]])
    grad = numerical_gradient(lambda v: np.sum(v ** 2), x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-7, atol=1e-8)


def test_numerical_gradient_sin():
    x = np.linspace(-3, 3, 13)
    grad = numerical_gradient(lambda v: np.sum(np.sin(v)), x)
    np.testing.assert_allclose(grad, np.cos(x), rtol=1e-6, atol=1e-8)


def test_numerical_gradient_matrix_product():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    grad = numerical_gradient(lambda M: np.sum(M @ B), A)
    # d/dA[i, j] of sum(A @ B) is the j-th row sum of B, the same for every i.
    expected = np.tile(B.sum(axis=1), (3, 1))
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)


def test_numerical_gradient_scalar_and_3d():
    cube = numerical_gradient(lambda v: float(v) ** 3, np.array(2.0))
    assert cube.shape == () and cube == pytest.approx(12.0, rel=1e-6)
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 10
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(v ** 2), x), 2 * x, atol=1e-7)


def test_numerical_gradient_does_not_modify_input():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    before = x.copy()
    numerical_gradient(lambda v: np.sum(np.exp(v)), x)
    assert np.array_equal(x, before)


def test_numerical_gradient_integer_input_gives_float_gradient():
    x = np.array([1, 2, 3])
    grad = numerical_gradient(lambda v: np.sum(v ** 2), x)
    assert grad.dtype == np.float64
    np.testing.assert_allclose(grad, [2.0, 4.0, 6.0], rtol=1e-6)
    assert x.dtype.kind == "i"


def test_numerical_gradient_rejects_tuple_loss():
    with pytest.raises(TypeError, match=r"\[0\]"):
        numerical_gradient(lambda v: (np.sum(v), {}), np.ones(3))


def test_rel_error():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 4.2)
    assert rel_error(np.array([1.0]), np.array([-1.0])) == pytest.approx(1.0)
    assert rel_error(0.0, 0.0) == 0.0
    assert isinstance(rel_error(np.ones(2), np.ones(2)), float)
    with pytest.raises(ValueError, match="shape"):
        rel_error(np.ones((2, 3)), np.ones((3, 2)))


# ----------------------------------------------------------------------------------------------
# init_params
# ----------------------------------------------------------------------------------------------

def test_init_params_shapes_and_dtypes():
    params = init_params(5, 7, 3)
    assert set(params) == {"W1", "b1", "W2", "b2"}
    assert params["W1"].shape == (5, 7) and params["b1"].shape == (7,)
    assert params["W2"].shape == (7, 3) and params["b2"].shape == (3,)
    assert all(v.dtype == np.float64 for v in params.values())
    assert not params["b1"].any() and not params["b2"].any()


def test_init_params_he_std_and_determinism():
    params = init_params(400, 300, 200, seed=3)
    assert params["W1"].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert params["W2"].std() == pytest.approx(np.sqrt(2 / 300), rel=0.02)
    assert abs(params["W1"].mean()) < 0.01 * np.sqrt(2 / 400) * 10
    again, other = init_params(400, 300, 200, seed=3), init_params(400, 300, 200, seed=4)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    assert not np.array_equal(params["W1"], other["W1"])


# ----------------------------------------------------------------------------------------------
# check_gradient and its hints, on a small smooth model that is not the assignment's
# ----------------------------------------------------------------------------------------------

N = 8  # batch size, > 2 so that factors of n are told apart from factors of 2


@pytest.fixture
def model():
    """L = mean over rows of 0.5 * ||tanh(X W + b)[:, :2] - T||^2, with its exact gradient.

    Only the first 2 of the 4 outputs enter the loss, so columns 2 and 3 of W and b have a true
    gradient of exactly 0: that is what a ReLU mask produces for dead units.
    """
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((N, 3)), rng.standard_normal((N, 2))
    params = {"W": rng.standard_normal((3, 4)) * 0.5, "b": rng.standard_normal(4) * 0.1}

    def loss(p):
        A = np.tanh(X @ p["W"] + p["b"])
        return 0.5 * np.sum((A[:, :2] - T) ** 2) / N

    A = np.tanh(X @ params["W"] + params["b"])
    dA = np.zeros_like(A)
    dA[:, :2] = (A[:, :2] - T) / N
    dZ = dA * (1 - A ** 2)
    grads = {"W": X.T @ dZ, "b": dZ.sum(axis=0)}
    return loss, params, grads, X, dA


def test_check_gradient_accepts_correct_gradient(model, capsys):
    loss, params, grads, _, _ = model
    before = {k: v.copy() for k, v in params.items()}
    results = check_gradient(loss, params, grads, n=N)
    assert set(results) == {"W", "b"}
    for check in results.values():
        assert isinstance(check, GradientCheck)
        assert check.ok and check.rel_error < 1e-7 and check.hint == ""
    assert all(np.array_equal(before[k], params[k]) for k in params)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.endswith("OK") for line in lines)
    assert lines[0].startswith("W: max relative error ")


def test_check_gradient_quiet_when_not_verbose(model, capsys):
    loss, params, grads, _, _ = model
    check_gradient(loss, params, grads, verbose=False)
    assert capsys.readouterr().out == ""


def _wrong(model, **changes):
    loss, params, grads, _, _ = model
    bad = dict(grads)
    for key, fn in changes.items():
        bad[key] = fn(grads[key])
    return check_gradient(loss, params, bad, n=N, verbose=False)


@pytest.mark.parametrize("factor, words", [
    (2.0, "twice too large"),
    (0.5, "half the expected value"),
    (-1.0, "sign flipped"),
    (float(N), f"n = {N} times too large"),
    (1.0 / N, f"n = {N} times too small"),
    (3.7, "constant factor"),
])
def test_check_gradient_names_the_factor(model, factor, words):
    results = _wrong(model, W=lambda g: g * factor)
    assert not results["W"].ok and results["W"].rel_error > 0.1
    assert words in results["W"].hint
    assert results["b"].ok


def test_check_gradient_transposed(model):
    check = _wrong(model, W=lambda g: g.T)["W"]
    assert not check.ok and check.index is None
    assert check.hint.startswith("transposed:") and "W.T" in check.hint
    assert format_check(check).startswith("W: WRONG — transposed")


def test_diagnose_transposed_square_matrix():
    g = np.random.default_rng(1).standard_normal((4, 4))
    assert diagnose_gradient(g, g.T).startswith("transposed:")


def test_check_gradient_missing_mask(model):
    loss, params, grads, X, dA = model
    A = np.tanh(X @ params["W"] + params["b"])
    # As if every output entered the loss: nonzero where the true gradient is 0.
    dA_all = dA.copy()
    dA_all[:, 2:] = 0.3 * A[:, 2:] / N
    dZ = dA_all * (1 - A ** 2)
    bad = {"W": X.T @ dZ, "b": dZ.sum(axis=0)}
    results = check_gradient(loss, params, bad, n=N, verbose=False)
    for check in results.values():
        assert not check.ok
        assert check.hint == "nonzero where the true gradient is 0: is the ReLU mask (Z1 > 0) missing?"
    # Some other entries wrong as well: still pointed at the mask, with an example entry.
    bad["W"][0, 0] += 1.0
    check = check_gradient(loss, params, bad, n=N, verbose=False)["W"]
    assert "ReLU mask" in check.hint and "(e.g. at (0, 2))" in check.hint


def test_check_gradient_zero_where_it_should_not_be(model):
    def drop_column(g):
        g = g.copy()
        g[..., 0] = 0
        return g
    check = _wrong(model, W=drop_column)["W"]
    assert not check.ok and "zero where it should not be" in check.hint


def test_check_gradient_wrong_shape_none_zero_nan_and_missing_key(model):
    loss, params, grads, _, _ = model
    bad = {"W": grads["W"][:2]}
    results = check_gradient(loss, params, bad, verbose=False)
    assert results["W"].hint == "expected shape (3, 4), got (2, 4)"
    assert results["b"].hint == "grads has no 'b'" and not results["b"].ok
    none = check_gradient(loss, params, {"W": None, "b": grads["b"]}, verbose=False)
    assert "None" in none["W"].hint and none["W"].index is None
    zeros = check_gradient(loss, params, {"W": 0 * grads["W"], "b": grads["b"]}, verbose=False)
    assert "all zeros" in zeros["W"].hint
    nan = grads["W"].copy()
    nan[1, 2] = np.nan
    check = check_gradient(loss, params, {"W": nan, "b": grads["b"]}, verbose=False)["W"]
    assert not check.ok and check.index == (1, 2) and "nan/inf at (1, 2)" in check.hint
    keepdims = gradient_report("b", grads["b"], grads["b"][None, :])
    assert not keepdims.ok and "keepdims" in keepdims.hint


def test_check_gradient_rejects_a_tuple_of_grads(model):
    loss, params, grads, _, _ = model
    with pytest.raises(TypeError, match="grads must be a dict"):
        check_gradient(loss, params, (0.5, grads), verbose=False)


def test_check_gradient_does_not_let_f_corrupt_params(model):
    loss, params, grads, _, _ = model
    before = {k: v.copy() for k, v in params.items()}

    def greedy(p):
        value = loss(p)
        p["b"] += 1.0  # a buggy loss that writes into its input
        return value

    results = check_gradient(greedy, params, grads, verbose=False)
    assert all(np.array_equal(before[k], params[k]) for k in params)
    assert all(check.ok for check in results.values())


def test_numerical_gradient_is_not_skewed_by_an_f_that_writes_into_x():
    def greedy(v):
        value = np.sum(v ** 2)
        v *= 3.0
        return value

    x = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(numerical_gradient(greedy, x), 2 * x, rtol=1e-6)


def test_gradient_report_tolerates_tiny_entries_but_not_bugs():
    rng = np.random.default_rng(2)
    true = rng.standard_normal(50) * 0.1
    true[:5] = 1e-9  # tiny entries, measured with absolute round-off noise
    noisy = true + rng.standard_normal(50) * 1e-10
    assert gradient_report("g", noisy, true).ok
    wrong = true.copy()
    wrong[10] *= 1.01
    report = gradient_report("g", noisy, wrong)
    assert not report.ok and report.index == (10,)


def test_format_check():
    ok = GradientCheck("W1", True, 3.2e-9, (3, 5), 0.01234, 0.01234, "")
    assert format_check(ok) == (
        "W1: max relative error 3.2e-09 at (3, 5): numerical 0.01234, analytical 0.01234  OK")
    bad = GradientCheck("b2", False, 1.0, (4,), 0.0312, 0.000312, "n = 100 times too small")
    assert format_check(bad) == ("b2: max relative error 1.0e+00 at (4,): numerical 0.0312, "
                                 "analytical 0.000312  WRONG — n = 100 times too small")


def test_report_index_is_plain_ints():
    check = gradient_report("W", np.ones((2, 3)), np.array([[1, 1, 1], [1, 5, 1.0]]))
    assert check.index == (1, 1) and all(type(i) is int for i in check.index)
    assert "(1, 1)" in format_check(check)


# ----------------------------------------------------------------------------------------------
# assertions
# ----------------------------------------------------------------------------------------------

def test_assert_gradient_close():
    g = np.array([[0.5, -0.25], [0.125, 1.0]])
    assert assert_gradient_close("W", g, g.copy()).ok
    with pytest.raises(AssertionError) as err:
        assert_gradient_close("W", g, g * N, n=N)
    message = str(err.value)
    assert message.startswith("W: max relative error") and f"n = {N} times too large" in message
    assert "\n" not in message


def test_assert_close_passes_and_reports_shape_nan_value_type():
    expected = np.arange(12, dtype=float).reshape(3, 4)
    assert_close("x", expected + 1e-12, expected)
    assert_close("loss", 2.5, 2.5)
    with pytest.raises(AssertionError, match=r"^x: expected shape \(3, 4\), got \(4, 3\)$"):
        assert_close("x", expected.T, expected)
    bad = expected.copy()
    bad[2, 1] = np.inf
    with pytest.raises(AssertionError, match=r"^x: contains nan/inf at \(2, 1\)$"):
        assert_close("x", bad, expected)
    bad = expected.copy()
    bad[1, 3] += 0.5
    with pytest.raises(AssertionError, match=r"x: wrong value at \(1, 3\): got 7.5, expected 7"):
        assert_close("x", bad, expected)
    with pytest.raises(AssertionError, match="got None"):
        assert_close("x", None, expected)
    with pytest.raises(AssertionError, match="got str"):
        assert_close("x", "abc", expected)
    with pytest.raises(AssertionError, match="got 2.6, expected 2.5"):
        assert_close("loss", 2.6, 2.5)


def test_assert_array_checks_type_shape_kind_and_finiteness_before_values():
    good = np.ones((2, 3))
    assert assert_array("P", good, (2, 3)) is good
    assert_array("labels", np.array([1, 2]), (2,), kind="i")
    cases = [(None, r"^P: expected a numpy array of shape \(2, 3\), got None$"),
             (good.tolist(), r"got a list of length 2$"),
             (tuple(good), r"got a tuple of length 2$"),
             (np.empty((0, 3)), r"^P: expected shape \(2, 3\), got \(0, 3\)$"),
             (good.T, r"expected shape \(2, 3\), got \(3, 2\)"),
             (np.ones((2, 3), dtype=int), r"^P: expected floats, got dtype int64$"),
             (np.full((2, 3), np.nan), r"^P: contains nan/inf at \(0, 0\)$")]
    for value, message in cases:
        with pytest.raises(AssertionError, match=message):
            assert_array("P", value, (2, 3))
    with pytest.raises(AssertionError, match="expected integers, got dtype float64"):
        assert_array("labels", np.array([1.0, 2.0]), (2,), kind="i")


def test_assert_number_returns_and_keys():
    assert assert_number("loss", np.float64(1.5)) == 1.5 and assert_number("loss", np.array(2.0)) == 2.0
    for value, message in ((None, "got None"), ([1.0], "got a list of length 1"), (True, "got bool"),
                           (float("nan"), "expected a finite number, got nan"), (np.inf, "got inf")):
        with pytest.raises(AssertionError, match=message):
            assert_number("loss", value)
    assert assert_returns("f", (1, 2), ("a", "b")) == (1, 2)
    for value in (None, (1,), (1, 2, 3), {"a": 1, "b": 2}):
        with pytest.raises(AssertionError, match=r"^f should return a tuple \(a, b\), got "):
            assert_returns("f", value, ("a", "b"))
    assert_keys("grads", {"W": 1, "b": 2}, ("b", "W"))
    with pytest.raises(AssertionError, match=r"got \[\] \(missing \['W', 'b'\]\)$"):
        assert_keys("grads", {}, ("W", "b"))
    with pytest.raises(AssertionError, match=r"missing \['b'\]; unexpected \['c'\]"):
        assert_keys("grads", {"W": 1, "c": 2}, ("W", "b"))
    with pytest.raises(AssertionError, match="expected a dict with keys \\['W', 'b'\\], got a list of length 2"):
        assert_keys("grads", [1, 2], ("W", "b"))


def test_assert_history():
    history = {"train_loss": [1.0, 0.5], "train_acc": [0.5, 0.75], "val_loss": [1.1, 0.6], "val_acc": [0.4, 0.7]}
    assert assert_history("h", history) == 2 and assert_history("h", history, epochs=2) == 2
    cases = [({}, "expected the keys"),
             ({key: [] for key in history}, "the lists are empty"),
             ({**history, "val_acc": [0.7]}, "one entry per epoch"),
             ({**history, "val_loss": [np.nan, 0.5]}, r"h\['val_loss'\] at epoch 1: expected a finite number"),
             ({**history, "train_acc": [0.5, 75.0]}, r"an accuracy lies in \[0, 1\]"),
             ({**history, "val_acc": 0.7}, "expected a list with one number per epoch, got float")]
    for value, message in cases:
        with pytest.raises(AssertionError, match=message):
            assert_history("h", value)
    with pytest.raises(AssertionError, match="expected 3 epochs of history, got 2"):
        assert_history("h", history, epochs=3)


def test_hint_on_shape_error_names_the_fix_and_keeps_the_cause():
    with pytest.raises(AssertionError, match=r"^f\(\) raised ValueError \(matmul: .*\): use W.T$") as err:
        with hint_on_shape_error("f()", "use W.T"):
            np.ones((2, 3)) @ np.ones((2, 3))
    assert isinstance(err.value.__cause__, ValueError)  # the student's own traceback stays attached
    with pytest.raises(ValueError, match="unrelated"):  # not a shape error: passes through unchanged
        with hint_on_shape_error("f()", "use W.T"):
            raise ValueError("unrelated")


def test_toy_network_has_nonzero_biases_a_dead_unit_and_no_kinks():
    X, y, params = toy_network(n=5, d=4, h=6, k=3, seed=1)
    assert X.shape == (5, 4) and set(y) == {0, 1, 2}
    assert {name: value.shape for name, value in params.items()} == {"W1": (4, 6), "b1": (6,), "W2": (6, 3), "b2": (3,)}
    assert np.all(params["b1"] != 0) and np.all(params["b2"] != 0)
    Z1 = X @ params["W1"] + params["b1"]
    assert np.all(Z1[:, 0] < -1), "hidden unit 0 should be dead on every row"
    assert np.abs(Z1).min() >= 0.05, "pre-activations should stay away from ReLU's kink"
    again = toy_network(n=5, d=4, h=6, k=3, seed=1)
    assert all(np.array_equal(params[name], again[2][name]) for name in params)


def test_gradient_report_rejects_lists_and_names_a_per_sample_gradient():
    g = np.array([0.5, -0.25, 1.0])
    listed = gradient_report("b", g, g.tolist())
    assert not listed.ok and listed.hint == "expected a numpy array of shape (3,), got a list of length 3"
    rows = gradient_report("b", g, np.tile(g / 4, (4, 1)), n=4)
    assert not rows.ok and "one row per sample; sum over the batch (axis=0)" in rows.hint
    with pytest.raises(AssertionError, match=r"expected 0.5, analytical 1 .*twice too large"):
        assert_gradient_close("b", g, 2 * g, truth="expected")


def test_assert_unchanged():
    before = np.array([[1.0, np.nan], [3.0, 4.0]])
    after = before.copy()
    assert_unchanged("f", before, after)  # nan in the same place is unchanged
    after[1, 0] = -3.0
    with pytest.raises(AssertionError, match=r"^f modified its input in place \(first change at "
                                             r"index \(1, 0\): was 3.0, now -3.0\)$"):
        assert_unchanged("f", before, after)
    params = {"W1": np.ones((2, 2)), "b1": np.zeros(2)}
    changed = {"W1": np.ones((2, 2)), "b1": np.array([0.0, 0.5])}
    with pytest.raises(AssertionError, match=r"'b1', first change at index \(1,\)"):
        assert_unchanged("loss_and_grad", params, changed)


def test_quiet_suppresses_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet():
            assert np.log(np.zeros(1))[0] == -np.inf
            np.exp(np.array([1e4]))
            warnings.warn("harmless", RuntimeWarning)
            warnings.warn("old", DeprecationWarning)
        assert caught == []
        np.log(np.zeros(1))  # outside: warnings are back
        assert any(issubclass(w.category, RuntimeWarning) for w in caught)


def test_quiet_overrides_numpy_raise_setting():
    with np.errstate(all="raise"):
        with quiet():
            np.log(np.zeros(1))  # would raise FloatingPointError without quiet()
        with pytest.raises(FloatingPointError):
            np.log(np.zeros(1))


def test_quiet_keeps_stderr_empty_in_a_fresh_interpreter():
    code = ("import numpy as np, warnings, helpers\n"
            "with helpers.quiet():\n"
            "    np.log(np.zeros(1)); warnings.warn('x', RuntimeWarning)\n")
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""


# ----------------------------------------------------------------------------------------------
# load_mnist
# ----------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("NBGRADER_EXECUTION", "MNIST_OFFLINE", "MNIST_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _fake_mnist(seed=0, n_train=200, n_test=50):
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue(), arrays


class _Server:
    """A local HTTP server: path -> (status, body); counts requests; optional truncated body."""

    def __init__(self, routes):
        self.routes, self.requests = routes, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                status, body = outer.routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                length = len(body) * 10 if status == "truncated" else len(body)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def send_response(self, code, message=None):
                super().send_response(200 if code == "truncated" else code, message)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def fake():
    body, arrays = _fake_mnist()
    return body, hashlib.sha256(body).hexdigest(), arrays


@pytest.fixture
def server(fake):
    body = fake[0]
    srv = _Server({"/mnist.npz": (200, body), "/truncated.npz": ("truncated", body[:1000])})
    yield srv
    srv.close()


def test_download_caches_atomically_then_uses_cache(server, fake, tmp_path, capsys):
    _, sha, arrays = fake
    data = load_mnist(cache_dir=tmp_path, offline=False, url=server.url("/mnist.npz"),
                      sha256=sha, n_val=50, timeout=5)
    assert data["source"] == "mnist" and server.requests == 1
    assert sorted(os.listdir(tmp_path)) == ["mnist.npz"]  # no temporary file left behind
    assert "Downloaded MNIST" in capsys.readouterr().out
    assert data["X_train"].shape == (150, 784) and data["X_val"].shape == (50, 784)
    assert data["X_test"].shape == (50, 784) and data["y_test"].shape == (50,)
    # The validation set is the fixed tail of the training images.
    np.testing.assert_array_equal(data["X_val"], arrays["x_train"][-50:].reshape(50, -1) / 255)
    np.testing.assert_array_equal(data["y_train"], arrays["y_train"][:150])
    for key in ("X_train", "X_val", "X_test"):
        assert data[key].dtype == np.float64 and 0 <= data[key].min() and data[key].max() <= 1
    for key in ("y_train", "y_val", "y_test"):
        assert data[key].dtype == np.int64

    server.close()
    again = load_mnist(cache_dir=tmp_path, offline=False, url=server.url("/mnist.npz"),
                       sha256=sha, n_val=50, timeout=5)
    assert again["source"] == "mnist" and server.requests == 1
    assert capsys.readouterr().out == ""
    np.testing.assert_array_equal(again["X_train"], data["X_train"])


def test_cache_dir_defaults_to_env(server, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_CACHE", str(tmp_path / "cache"))
    load_mnist(offline=False, url=server.url("/mnist.npz"), sha256=fake[1], n_val=10, timeout=5)
    assert (tmp_path / "cache" / "mnist.npz").exists()


def test_checksum_mismatch_is_not_cached(server, tmp_path, capsys):
    data = load_mnist(cache_dir=tmp_path, offline=False, url=server.url("/mnist.npz"),
                      sha256="0" * 64, n_val=50, timeout=5)
    assert data["source"] == "sample"
    assert os.listdir(tmp_path) == []
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "checksum mismatch" in out[0] and "bundled" in out[0]


@pytest.mark.parametrize("sha", ["good", None])
def test_corrupt_cache_is_replaced(server, fake, tmp_path, capsys, sha):
    sha = fake[1] if sha == "good" else None
    (tmp_path / "mnist.npz").write_bytes(b"this is not an npz file")
    data = load_mnist(cache_dir=tmp_path, offline=False, url=server.url("/mnist.npz"),
                      sha256=sha, n_val=50, timeout=5)
    assert data["source"] == "mnist" and server.requests == 1
    assert (tmp_path / "mnist.npz").read_bytes() == fake[0]
    out = capsys.readouterr().out
    assert "corrupt" in out and str(tmp_path / "mnist.npz") in out


def test_cache_with_wrong_checksum_is_replaced(server, fake, tmp_path, capsys):
    other, _ = _fake_mnist(seed=1)  # a readable npz, but not the file the checksum names
    (tmp_path / "mnist.npz").write_bytes(other)
    data = load_mnist(cache_dir=tmp_path, offline=False, url=server.url("/mnist.npz"),
                      sha256=fake[1], n_val=50, timeout=5)
    assert data["source"] == "mnist" and server.requests == 1
    assert (tmp_path / "mnist.npz").read_bytes() == fake[0]
    assert "corrupt (checksum mismatch)" in capsys.readouterr().out


def test_killed_download_leaves_no_mnist_npz(fake, tmp_path):
    body, sha, _ = fake
    sent, release = threading.Event(), threading.Event()

    class Stall(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            sent.set()
            release.wait(10)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/mnist.npz"
    code = (f"import helpers\nhelpers.load_mnist(cache_dir={str(tmp_path)!r}, offline=False, "
            f"url={url!r}, sha256={sha!r}, n_val=50, timeout=30)\n")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert sent.wait(30), "the child never asked for the file"
        for _ in range(100):  # until the first half has reached the disk
            parts = [p for p in tmp_path.iterdir() if p.stat().st_size > 0]
            if parts:
                break
            threading.Event().wait(0.05)
        child.kill()
        child.wait(10)
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
    assert parts and "mnist.npz" not in os.listdir(tmp_path)  # only a partial temporary file


def test_http_404_falls_back_to_sample(server, tmp_path, capsys):
    data = load_mnist(cache_dir=tmp_path, offline=False, url=server.url("/missing.npz"), timeout=5)
    assert data["source"] == "sample" and len(data["y_train"]) == 4000
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["MNIST download failed (HTTP error 404); using the bundled 5,000-image "
                   "sample (4,000 train / 500 val / 500 test)"]
    assert os.listdir(tmp_path) == []


def test_truncated_download_leaves_nothing(server, tmp_path, capsys):
    data = load_mnist(cache_dir=tmp_path, offline=False, url=server.url("/truncated.npz"),
                      sha256=None, timeout=5)
    assert data["source"] == "sample" and os.listdir(tmp_path) == []
    assert "MNIST download failed (incomplete download: 1,000 of " in capsys.readouterr().out


def test_connection_refused_falls_back_to_sample(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed at the end of the block: nobody listens there
    data = load_mnist(cache_dir=tmp_path, offline=False, url=f"http://127.0.0.1:{port}/m.npz",
                      timeout=5)
    assert data["source"] == "sample"
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("MNIST download failed (") and "sample" in out[0]


def test_timeout_falls_back_to_sample(tmp_path, capsys):
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/m.npz"
        data = load_mnist(cache_dir=tmp_path, offline=False, url=url, timeout=0.3)
    assert data["source"] == "sample"
    assert "timed out" in capsys.readouterr().out


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a connection")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_offline_never_connects(no_network, tmp_path, capsys):
    data = load_mnist(cache_dir=tmp_path, offline=True, url="http://127.0.0.1:9/m.npz")
    assert data["source"] == "sample" and os.listdir(tmp_path) == []
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("offline=True; using the bundled")


@pytest.mark.parametrize("var, value",
                         [("NBGRADER_EXECUTION", "autograde"), ("MNIST_OFFLINE", "1")])
def test_environment_means_offline(no_network, tmp_path, monkeypatch, capsys, var, value):
    monkeypatch.setenv(var, value)
    data = load_mnist(cache_dir=tmp_path, url="http://127.0.0.1:9/m.npz")
    assert data["source"] == "sample"
    assert var in capsys.readouterr().out


def test_sample_splits():
    data = load_mnist(offline=True)
    assert set(data) == {"X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "source"}
    assert data["source"] == "sample"
    for split, size in (("train", 4000), ("val", 500), ("test", 500)):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        assert X.shape == (size, 784) and y.shape == (size,)
        assert X.dtype == np.float64 and y.dtype == np.int64
        assert X.min() >= 0 and X.max() <= 1 and X.max() > 0.9
        assert set(np.unique(y)) == set(range(10))
    raw = np.load(helpers.SAMPLE_PATH)
    np.testing.assert_array_equal(data["X_val"], raw["images"][4000:4500] / 255)
    np.testing.assert_array_equal(data["y_test"], raw["labels"][4500:])


def test_missing_sample_raises_with_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "mnist_sample.npz"
    monkeypatch.setattr(helpers, "SAMPLE_PATH", missing)
    with pytest.raises(FileNotFoundError, match=str(missing).replace("\\", "\\\\")):
        load_mnist(offline=True)


def test_bad_n_val_is_an_error(server, fake, tmp_path):
    with pytest.raises(ValueError, match="n_val"):
        load_mnist(cache_dir=tmp_path, offline=False, url=server.url("/mnist.npz"),
                   sha256=fake[1], n_val=5000, timeout=5)


def test_unverified_garbage_download_is_not_cached(tmp_path, capsys):
    srv = _Server({"/page.html": (200, b"<html>a captive portal</html>")})
    try:
        data = load_mnist(cache_dir=tmp_path, offline=False, url=srv.url("/page.html"),
                          sha256=None, timeout=5)
    finally:
        srv.close()
    assert data["source"] == "sample" and os.listdir(tmp_path) == []
    assert "MNIST download failed" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# plot_history
# ----------------------------------------------------------------------------------------------

def test_plot_history():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    history = {"train_loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.7],
               "train_acc": [0.7, 0.85, 0.9], "val_acc": [0.68, 0.84, 0.83]}
    fig = helpers.plot_history(history, title="run 1")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_xlabel() == "epoch" and "loss" in loss_ax.get_ylabel()
    assert "accuracy" in acc_ax.get_ylabel()
    curves = [line for line in acc_ax.lines if line.get_linestyle() != "--"]
    assert len(curves) == 2 and list(curves[0].get_xdata()) == [1, 2, 3]
    marks = [line for line in acc_ax.lines if line.get_linestyle() == "--"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [2, 2]  # best val acc: epoch 2
    assert acc_ax.get_legend() is not None
    fig.savefig(io.BytesIO(), format="png")



# ----------------------------------------------------------------------------------------------
# draw_computation_graph
# ----------------------------------------------------------------------------------------------

# The notebook's example: d = 2, h = 3, k = 2, hidden unit 1 inactive (z1 = [1.1, -1.8, 0.5]).
GRAPH_X, GRAPH_Y = np.array([1.0, -2.0]), 1
GRAPH_PARAMS = {"W1": np.array([[0.5, -1.0, 0.8], [-0.25, 0.5, 0.1]]), "b1": np.array([0.1, 0.2, -0.1]),
                "W2": np.array([[1.0, -0.5], [0.5, 1.0], [-1.0, 0.5]]), "b2": np.array([0.2, -0.1])}


def _graph_cases():
    X, y, params = toy_network(n=5, d=4, h=6, k=3, seed=3)  # unit 0 inactive, others away from the kink
    return [(GRAPH_X, GRAPH_Y, GRAPH_PARAMS), (X[2], int(y[2]), params)]


def _example_loss(x, y, W1, b1, W2, b2):
    """Cross-entropy of one example, written out here independently of helpers."""
    z2 = np.maximum(x @ W1 + b1, 0.0) @ W2 + b2
    return float(np.log(np.sum(np.exp(z2 - z2.max()))) + z2.max() - z2[y])


def _central_differences(f, at, step=1e-6):
    grad = np.zeros_like(at)
    for i in np.ndindex(at.shape):
        up, down = at.copy(), at.copy()
        up[i] += step
        down[i] -= step
        grad[i] = (f(up) - f(down)) / (2 * step)
    return grad


@pytest.mark.parametrize("case", [0, 1])
def test_computation_graph_values_match_finite_differences(case):
    import matplotlib
    matplotlib.use("Agg")

    x, y, params = _graph_cases()[case]
    _, v = helpers.draw_computation_graph(x, y, params)
    W1, b1, W2, b2 = (params[name] for name in ("W1", "b1", "W2", "b2"))

    # Forward values, straight from the definitions.
    z1 = x @ W1 + b1
    z2 = np.maximum(z1, 0) @ W2 + b2
    np.testing.assert_allclose(v["z1"], z1, rtol=1e-12)
    np.testing.assert_allclose(v["a1"], np.maximum(z1, 0), rtol=1e-12)
    np.testing.assert_allclose(v["z2"], z2, rtol=1e-12)
    np.testing.assert_allclose(v["p"], np.exp(z2) / np.exp(z2).sum(), rtol=1e-12)
    assert v["loss"] == pytest.approx(_example_loss(x, y, W1, b1, W2, b2), rel=1e-12)

    # Every gradient drawn, against central differences of the loss as a function of that array
    # alone (for an intermediate array: the rest of the network downstream of it).
    def ce(z):
        return float(np.log(np.sum(np.exp(z - z.max()))) + z.max() - z[y])

    downstream = {
        "dx": (x, lambda a: _example_loss(a, y, W1, b1, W2, b2)),
        "dW1": (W1, lambda a: _example_loss(x, y, a, b1, W2, b2)),
        "db1": (b1, lambda a: _example_loss(x, y, W1, a, W2, b2)),
        "dW2": (W2, lambda a: _example_loss(x, y, W1, b1, a, b2)),
        "db2": (b2, lambda a: _example_loss(x, y, W1, b1, W2, a)),
        "dz1": (z1, lambda a: ce(np.maximum(a, 0) @ W2 + b2)),
        "da1": (np.maximum(z1, 0), lambda a: ce(a @ W2 + b2)),
        "dz2": (z2, ce),
    }
    for key, (at, f) in downstream.items():
        numerical = _central_differences(f, at)
        assert v[key].shape == at.shape, key
        np.testing.assert_allclose(v[key], numerical, rtol=1e-5, atol=1e-8, err_msg=key)


@pytest.mark.parametrize("case", [0, 1])
def test_computation_graph_inactive_unit_stops_the_gradient_exactly(case):
    import matplotlib
    matplotlib.use("Agg")

    x, y, params = _graph_cases()[case]
    _, v = helpers.draw_computation_graph(x, y, params)
    dead = [j for j in range(len(v["z1"])) if v["z1"][j] < 0]
    assert v["inactive"] == dead and dead  # the notebook's example: unit 1; toy_network's row: 0 and others
    for j in dead:
        # The gradient reaches the unit's output but not its input: stopped by the ReLU, not absent.
        assert v["da1"][j] != 0, j
        assert v["dz1"][j] == 0 and v["db1"][j] == 0 and np.all(v["dW1"][:, j] == 0), j
        assert np.all(v["dW2"][j] == 0), j  # its output a1[j] is 0, so the weights leaving it get nothing
        assert not np.signbit(v["dz1"][j]), j  # printed as 0.000, not -0.000
    live = [i for i in range(len(v["z1"])) if i not in dead]
    assert live and np.all(v["dz1"][live] == v["da1"][live])


def test_computation_graph_figure_has_every_node_and_edge_and_shows_the_numbers():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    before = {name: value.copy() for name, value in GRAPH_PARAMS.items()}
    fig, v = helpers.draw_computation_graph(GRAPH_X, GRAPH_Y, GRAPH_PARAMS)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    texts = {t.get_gid(): t.get_text() for t in ax.texts if t.get_gid()}
    nodes = sorted(gid[5:] for gid in texts if gid.startswith("node:"))
    assert nodes == sorted(["x", "z1", "a1", "z2", "L", "W1", "b1", "W2", "b2"])
    edges = sorted(p.get_gid()[5:] for p in ax.patches if isinstance(p, FancyArrowPatch))
    assert edges == sorted(["x->z1", "z1->a1", "a1->z2", "z2->L", "W1->z1", "b1->z1", "W2->z2", "b2->z2"])
    labels = {gid[5:]: text for gid, text in texts.items() if gid.startswith("grad:")}
    assert sorted(labels) == sorted(["dx", "dz1", "da1", "dz2", "dW1", "db1", "dW2", "db2"])

    # The drawn text carries the returned numbers, row by row, so the figure shows what was checked.
    for key, text in labels.items():
        rows = np.atleast_2d(v[key])
        assert text.splitlines()[1:] == ["[" + "  ".join(f"{g:.3f}" for g in row) + "]" for row in rows], key
    assert labels["dz1"].splitlines()[1] == "[1.153  0.000  -1.153]"  # the dead unit's 0, worked by hand
    assert "[1.10  -1.80  0.50]" in texts["node:z1"] and f"L = {v['loss']:.3f}" in texts["node:L"]
    assert "z1[1] = -1.80" in texts["note:inactive"]
    for name, value in before.items():
        np.testing.assert_array_equal(GRAPH_PARAMS[name], value)
    fig.savefig(io.BytesIO(), format="png")  # renders headless


def test_computation_graph_draws_into_a_given_axes_and_says_nothing_when_every_unit_is_active():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = dict(GRAPH_PARAMS, b1=np.array([0.1, 2.5, -0.1]))  # z1[1] = 0.5 > 0: all units active
    fig, ax = plt.subplots()
    try:
        returned, v = helpers.draw_computation_graph(GRAPH_X, GRAPH_Y, params, ax=ax)
        assert returned is fig and v["inactive"] == [] and np.all(v["dz1"] == v["da1"])
        assert not [t for t in ax.texts if t.get_gid() == "note:inactive"]
    finally:
        plt.close(fig)


def test_computation_graph_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="W2"):
        helpers.draw_computation_graph(GRAPH_X, GRAPH_Y, dict(GRAPH_PARAMS, W2=np.ones((2, 2))))
    with pytest.raises(ValueError, match="y=2"):
        helpers.draw_computation_graph(GRAPH_X, 2, GRAPH_PARAMS)


def test_the_notebooks_graph_cell_draws_nothing_while_grading():
    """Under nbgrader the graph cell must not import matplotlib or draw (grading cost unchanged);
    outside it, it draws the example the tests above check (same numbers as GRAPH_*)."""
    import nbformat

    nb = nbformat.read(ROOT / "assignment.ipynb", as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    program = (f"import os, sys\nimport numpy as np\ndisplay = print\n{cells['graph_demo']}\n"
               "print('matplotlib' in sys.modules, 'graph' in dir())\n")
    for grading, expected in ((True, "False False"), (False, "True True")):
        env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
        if grading:
            env["NBGRADER_EXECUTION"] = "autograde"
        env["MPLBACKEND"] = "Agg"
        run = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines()[-1] == expected, (grading, run.stdout)
    namespace = {"np": np, "os": os, "display": lambda _: None}
    exec(cells["graph_demo"].replace("NBGRADER_EXECUTION", "NOT_SET_HERE"), namespace)
    assert namespace["y_one"] == GRAPH_Y and np.array_equal(namespace["x_one"], GRAPH_X)
    for name, value in GRAPH_PARAMS.items():
        np.testing.assert_array_equal(namespace["params_one"][name], value)
