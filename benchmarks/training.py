"""Benchmark 1: one epoch of SGD on the 784-128-10 network, in every way the course cares about.

Variants, all on the same data (the 4,000 training images of the bundled sample), the same
init_params(784, 128, 10, seed=0), the same shuffled order, SGD lr 0.1, no weight decay:

- numpy f64 / f32: the reference loss_and_grad, vectorized over the batch (the reference train's
  inner loop). f32 casts X and the parameters to float32 first.
- per-row f64 / f32: the same mini-batches, but loss_and_grad is called on one row X[i:i+1] at a
  time and the gradients are averaged (what a per-row-loop submission does).
- torch f32: the same network in PyTorch on the CPU (autograd, manual SGD step), if installed, with
  as many threads as numpy's BLAS.
- GEMMs only: the five matrix products of a numpy epoch alone, to see how much of it they are.
- "(diag.)": the same with 1 thread for numpy's BLAS and torch (needs threadpoolctl).

Variants are shuffled within each repetition; ratios are taken within a repetition.
Run: python -m benchmarks.training [--quick]
"""
import argparse
import contextlib
import io
import time

import numpy as np

from benchmarks import common

LR = 0.1
BATCHES = (32, 256)
SIZES = (784, 128, 10)  # d, h, k
GEMM_N = 2048
SETTLE_SECONDS = 0.3  # pause before each timed job: idle BLAS/OpenMP threads stop spinning and park


# ------------------------------------------------------------------------------------------------
# The work being timed
# ------------------------------------------------------------------------------------------------

def load_data():
    """X (4000, 784) float64 in [0, 1] and y (4000,) int64: the bundled sample's training split."""
    from helpers import load_mnist
    with contextlib.redirect_stdout(io.StringIO()):
        data = load_mnist(offline=True)
    return data["X_train"], data["y_train"]


def fresh_params(dtype):
    """init_params(784, 128, 10, seed=0) cast to dtype."""
    from helpers import init_params
    return {name: value.astype(dtype) for name, value in init_params(*SIZES, seed=0).items()}


def vectorized_epoch(loss_and_grad, X, y, params, order, batch):
    """One epoch of mini-batch SGD, one loss_and_grad call per batch (the reference train's loop)."""
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        _, grads = loss_and_grad(X[rows], y[rows], params)
        for name in params:
            params[name] -= LR * grads[name]


def per_row_epoch(loss_and_grad, X, y, params, order, batch):
    """The same epoch, but loss_and_grad sees one row at a time and the batch's gradients are averaged."""
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        total = {name: np.zeros_like(value) for name, value in params.items()}
        for i in rows:
            _, grads = loss_and_grad(X[i:i + 1], y[i:i + 1], params)
            for name in total:
                total[name] += grads[name]
        for name in params:
            params[name] -= LR / len(rows) * total[name]


def torch_epoch(torch, X, y, params, order, batch):
    """The same epoch in PyTorch: autograd for the gradients (none for X), an in-place SGD step."""
    tensors = [params[name] for name in ("W1", "b1", "W2", "b2")]
    W1, b1, W2, b2 = tensors
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        logits = torch.relu(X[rows] @ W1 + b1) @ W2 + b2
        loss = torch.nn.functional.cross_entropy(logits, y[rows])
        grads = torch.autograd.grad(loss, tensors)
        with torch.no_grad():
            for p, g in zip(tensors, grads):
                p.add_(g, alpha=-LR)


def try_import(name):
    """The module, or None if it is not installed (torch, threadpoolctl, line_profiler are optional)."""
    try:
        return __import__(name)
    except ImportError:
        return None


@contextlib.contextmanager
def blas_threads(n):
    """Limit numpy's BLAS to n threads inside the block (n None: leave it alone)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(n, user_api="blas"):
        yield


# ------------------------------------------------------------------------------------------------
# FLOPs, the GEMM peak, the GEMMs of an epoch alone
# ------------------------------------------------------------------------------------------------

def flops_per_sample():
    """GEMM FLOPs of one sample's forward and backward pass (elementwise ops not counted).

    forward 2(dh + hk); backward dW2 2hk, dA1 2kh, dW1 2dh; no gradient for the input X.
    """
    d, h, k = SIZES
    return 2 * (d * h + h * k) + 2 * h * k + 2 * k * h + 2 * d * h


def gemm_gflops(dtype, n=GEMM_N, threads=None):
    """GFLOP/s of one n x n x n numpy matmul (2n^3 / t)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n)).astype(dtype), rng.random((n, n)).astype(dtype)
    with blas_threads(threads):
        seconds, _ = common.timed(np.matmul, a, b)
    return 2 * n ** 3 / seconds / 1e9


def replay_operands(X, order, dtype, backward_dtype):
    """Operands for gemm_replay: X in epoch order (batches become contiguous slices), W1, W2, and a dZ2.

    backward_dtype is the dtype the reference's dZ2 has for inputs of this dtype (see dtype_audit): if
    it differs, the mixed-dtype products include numpy's cast of the other operand, as in the epoch.
    """
    d, h, k = SIZES
    rng = np.random.default_rng(1)
    W1, W2 = rng.normal(size=(d, h)).astype(dtype), rng.normal(size=(h, k)).astype(dtype)
    return X[order].astype(dtype), rng.normal(size=(len(order), k)).astype(backward_dtype), W1, W2


def gemm_replay(Xs, dZ2s, W1, W2, batch):
    """Just the five matmuls of an epoch, with the reference's shapes and dtypes (no gather, no softmax)."""
    for s in range(0, len(Xs), batch):
        Xb, dZ2 = Xs[s:s + batch], dZ2s[s:s + batch]
        A1 = Xb @ W1
        A1 @ W2
        dZ1 = dZ2 @ W2.T
        A1.T @ dZ2
        Xb.T @ dZ1


# ------------------------------------------------------------------------------------------------
# Looking inside: dtype audit, line profile
# ------------------------------------------------------------------------------------------------

def dtype_audit(ns, X, y):
    """(rows [(what, dtype)], dtype of dZ2) of the reference's intermediates for float32 X and params."""
    params = fresh_params(np.float32)
    Xb, yb = X[:32].astype(np.float32), y[:32]
    Z2, (_, Z1, A1) = ns["forward"](Xb, params)
    _, dZ2 = ns["softmax_cross_entropy"](Z2, yb)
    _, grads = ns["loss_and_grad"](Xb, yb, params)
    _, grads_wd = ns["loss_and_grad"](Xb, yb, params, weight_decay=1e-4)
    names = ("W1", "b1", "W2", "b2")
    step = {name: value.copy() for name, value in params.items()}
    for name in step:
        step[name] -= LR * grads[name]
    rows = [("forward: Z1, A1, Z2", f"{Z1.dtype}, {A1.dtype}, {Z2.dtype}"),
            ("softmax_cross_entropy: dZ2", str(dZ2.dtype)),
            ("loss_and_grad: grads W1, b1, W2, b2", ", ".join(str(grads[n].dtype) for n in names)),
            ("loss_and_grad(..., weight_decay=1e-4): grads", ", ".join(str(grads_wd[n].dtype) for n in names)),
            ("params after `params[name] -= lr * grads[name]`", ", ".join(str(v.dtype) for v in step.values()))]
    return rows, dZ2.dtype


def line_profile(ns, epoch, X, y, order, batch, threads=1):
    """Per-line time of one epoch (line_profiler), or None if line_profiler is not installed.

    Returns (total ms, [(function, line source, hits, ms)]) over the lines of the epoch function,
    loss_and_grad, forward and softmax_cross_entropy; a line that calls another profiled function is
    left out (its time is in that function's lines), so the rows add up to the epoch.
    """
    lp_module = try_import("line_profiler")
    if lp_module is None:
        return None
    import inspect

    from autograder.testcells import read_notebook, reference_solutions
    codes = reference_solutions(read_notebook(common.NOTEBOOK))
    names = ("loss_and_grad", "forward", "softmax_cross_entropy")
    profiler = lp_module.LineProfiler(epoch, *(ns[name] for name in names))
    with blas_threads(threads):
        profiler.runcall(epoch, ns["loss_and_grad"], X, y, fresh_params(X.dtype), order, batch)
    stats = profiler.get_stats()
    rows = []
    for (_, first, func), entries in stats.timings.items():
        if func in codes:
            source, base = codes[func].splitlines(), 1
        else:
            source, base = inspect.getsource(epoch).splitlines(), first
        for lineno, hits, t in entries:
            text = source[lineno - base].strip()
            if any(f"{other}(" in text for other in names if other != func):
                continue  # its time is in the called function's lines
            rows.append((func, text.split("  #")[0], hits, t * stats.unit * 1e3))
    return sum(r[3] for r in rows), sorted(rows, key=lambda r: -r[3])


# ------------------------------------------------------------------------------------------------
# The measurement
# ------------------------------------------------------------------------------------------------

def one_thread(name):
    """The name of a variant's 1-thread diagnostic twin."""
    return f"{name}, 1 thread (diag.)"


def gemms_only(name):
    """The name of the job that replays just the GEMMs of a variant's epoch."""
    return f"GEMMs only: {name}"


def make_variants(ns, X, y, torch, threads, backward32):
    """{name: run(batch) -> (wall s, CPU s, params after or None)}: every job, ready to time."""
    X32, X64 = X.astype(np.float32), X.astype(np.float64)
    order = np.random.default_rng(0).permutation(len(X))
    single = try_import("threadpoolctl") is not None

    def numpy_run(epoch, Xd, dtype, limit=None):
        def run(batch):
            params = fresh_params(dtype)
            with blas_threads(limit):
                wall, cpu, _ = common.timed_cpu(epoch, ns["loss_and_grad"], Xd, y, params, order, batch)
            return wall, cpu, params
        return run

    def torch_run(torch_threads):
        Xt, yt, order_t = torch.from_numpy(X32), torch.from_numpy(y), torch.from_numpy(order)

        def run(batch):
            params = {n: torch.tensor(v).requires_grad_() for n, v in fresh_params(np.float32).items()}
            torch.set_num_threads(torch_threads)
            try:
                wall, cpu, _ = common.timed_cpu(torch_epoch, torch, Xt, yt, params, order_t, batch)
            finally:
                torch.set_num_threads(threads)
            return wall, cpu, {n: v.detach().numpy() for n, v in params.items()}
        return run

    def replay_run(dtype, backward_dtype, limit=None):
        operands = replay_operands(X, order, dtype, backward_dtype)

        def run(batch):
            with blas_threads(limit):
                wall, cpu, _ = common.timed_cpu(gemm_replay, *operands, batch)
            return wall, cpu, None
        return run

    variants = {}
    for limit in ([None, 1] if single else [None]):
        name = (lambda n: n) if limit is None else one_thread  # noqa: E731
        variants[name("numpy f64")] = numpy_run(vectorized_epoch, X64, np.float64, limit)
        variants[name("numpy f32")] = numpy_run(vectorized_epoch, X32, np.float32, limit)
        variants[name("per-row f64")] = numpy_run(per_row_epoch, X64, np.float64, limit)
        if limit is None:  # the per-row loop's products are too small to be threaded: one f32 run is enough
            variants["per-row f32"] = numpy_run(per_row_epoch, X32, np.float32)
        if torch is not None:
            variants[name("torch f32")] = torch_run(threads if limit is None else 1)
        variants[gemms_only(name("numpy f64"))] = replay_run(np.float64, np.float64, limit)
        variants[gemms_only(name("numpy f32"))] = replay_run(np.float32, backward32, limit)
    return variants, order


def measure(variants, repeats, single_thread_peak):
    """Time every (variant, batch) `repeats` times, interleaved; also sample the GEMM peak.

    Each repetition runs every (variant, batch) once, in a fresh random order (seeded), each after a
    short pause (SETTLE_SECONDS), then one GEMM of each kind, so slow phases of the shared machine
    spread over all variants.
    Returns (times {(variant, batch): [wall s]}, cpu_times (the same, CPU s), last params
    {(variant, batch): params}, peaks {label: [GFLOP/s]}, others [cores busy with other processes, per
    repetition]).
    """
    jobs = [(name, batch) for name in variants for batch in BATCHES]
    times = {job: [] for job in jobs}
    cpu_times = {job: [] for job in jobs}
    finals, others = {}, []
    peaks = {"float32": [], "float64": []}
    if single_thread_peak:
        peaks.update({"float32, 1 thread": [], "float64, 1 thread": []})

    def sample_peaks():
        for label in peaks:
            time.sleep(SETTLE_SECONDS)
            peaks[label].append(gemm_gflops(np.dtype(label.split(",")[0]), threads=1 if "1 thread" in label else None))

    sample_peaks()  # warm-up too: BLAS threads, caches, torch's first-call setup
    for name in variants:
        variants[name](BATCHES[-1])
    for r in range(repeats):
        meter = common.CpuMeter()
        for j in np.random.default_rng(r).permutation(len(jobs)):
            name, batch = jobs[j]
            time.sleep(SETTLE_SECONDS)
            wall, cpu, finals[(name, batch)] = variants[name](batch)
            times[(name, batch)].append(wall)
            cpu_times[(name, batch)].append(cpu)
        sample_peaks()
        usage = meter.stop()
        others.append(usage["others"] if usage else float("nan"))
        print(f"  repetition {r + 1}/{repeats} done (other processes: {others[-1]:.2f} cores)", flush=True)
    return times, cpu_times, finals, peaks, others


def ratios(times, slow, fast, batch):
    """Per-repetition ratios time(slow) / time(fast) at one batch size."""
    return [a / b for a, b in zip(times[(slow, batch)], times[(fast, batch)])]


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(a[n], dtype=np.float64) - np.asarray(b[n], dtype=np.float64))))
               for n in ("W1", "b1", "W2", "b2"))


# ------------------------------------------------------------------------------------------------
# Run
# ------------------------------------------------------------------------------------------------

def run(quick=False):
    """Measure, print, and write training.md / training.png; returns the summary dict."""
    repeats = 2 if quick else 9
    ns = common.reference_namespace()
    version = common.reference_version()
    X, y = load_data()
    torch = try_import("torch")
    threads = common.blas_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    single = try_import("threadpoolctl") is not None
    audit, backward32 = dtype_audit(ns, X, y)
    variants, order = make_variants(ns, X, y, torch, threads, backward32)
    print(f"training: {len(variants)} jobs x {len(BATCHES)} batch sizes x {repeats} repetitions "
          f"on {len(X)} images", flush=True)
    meter = common.CpuMeter()
    times, cpu_times, finals, peaks, others = measure(variants, repeats, single)
    s = dict(quick=quick, repeats=repeats, n=len(X), times=times, peaks=peaks, others=others, torch=torch,
             threads=threads, single=single, audit=audit, backward32=backward32, version=version,
             names=[n for n in variants if not n.startswith(gemms_only(""))])
    s["stats"] = {job: common.summarize(ts) for job, ts in times.items()}
    s["cpu"] = {job: common.summarize(ts) for job, ts in cpu_times.items()}
    s["quiet"] = min(range(repeats), key=lambda r: others[r] if others[r] == others[r] else float("inf"))
    s["peak"] = {label: max(v) for label, v in peaks.items()}
    s["flops_epoch"] = flops_per_sample() * len(X)
    s["usage"] = meter.stop()
    limit = 1 if single else None  # a line profile with 1 BLAS thread: a stable attribution
    s["profiles"] = {
        ("numpy f64", 32): line_profile(ns, vectorized_epoch, X, y, order, 32, threads=limit),
        ("numpy f32", 256): line_profile(ns, vectorized_epoch, X.astype(np.float32), y, order, 256, threads=limit),
        ("per-row f64", 32): line_profile(ns, per_row_epoch, X, y, order, 32, threads=limit),
    }
    s["diffs"] = [("per-row f64 vs numpy f64", max_diff(finals[("per-row f64", 32)], finals[("numpy f64", 32)])),
                  ("numpy f32 vs numpy f64", max_diff(finals[("numpy f32", 32)], finals[("numpy f64", 32)]))]
    if torch is not None:
        s["diffs"].append(("torch f32 vs numpy f32", max_diff(finals[("torch f32", 32)], finals[("numpy f32", 32)])))
    s["targets"] = targets(s)
    report(s)
    return s


# ------------------------------------------------------------------------------------------------
# Verdicts
# ------------------------------------------------------------------------------------------------

def ratio_stats(s, slow, fast, batch):
    return common.summarize(ratios(s["times"], slow, fast, batch))


def gflops(s, seconds):
    return s["flops_epoch"] / seconds / 1e9


TARGETS = ("numpy f64 ≥ 20× faster per epoch than the per-row loop (f64), batch 32",
           "numpy f64 ≥ 50× faster per epoch than the per-row loop (f64), batch 256",
           "numpy f32 ≤ 0.8× PyTorch f32 CPU time per epoch, batch 32",
           "numpy f32 ≤ 0.8× PyTorch f32 CPU time per epoch, batch 256",
           "numpy f32 at batch 256 ≥ 50% of the measured f32 GEMM peak")


def judge(s, threads1):
    """[(ok or None, measured text)] per target, default threads or 1 thread (threads1=True)."""
    name = one_thread if threads1 else (lambda n: n)
    rows = []
    for b, goal in ((32, 20), (256, 50)):
        r = ratio_stats(s, name("per-row f64"), name("numpy f64"), b)
        rows.append((r["median"] >= goal, f"{r['median']:.1f}× ({r['min']:.1f}–{r['max']:.1f})"))
    for b in BATCHES:
        if s["torch"] is None:
            rows.append((None, "torch not installed"))
            continue
        r = ratio_stats(s, name("numpy f32"), name("torch f32"), b)
        r64 = ratio_stats(s, name("numpy f64"), name("torch f32"), b)
        rows.append((r["median"] <= 0.8,
                     f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f}); f64: {r64['median']:.2f}×"))
    t = s["stats"][(name("numpy f32"), 256)]
    peak = s["peak"]["float32, 1 thread" if threads1 else "float32"]
    frac = gflops(s, t["median"]) / peak
    rows.append((frac >= 0.5, f"{100 * frac:.0f}% ({gflops(s, t['median']):.0f} of {peak:.0f} GFLOP/s; "
                              f"best epoch {100 * gflops(s, t['min']) / peak:.0f}%)"))
    return rows


def judge_quietest(s):
    """The same verdicts from the single repetition in which other processes used the least CPU."""
    q = s["quiet"]
    at = lambda name, b: s["times"][(name, b)][q]  # noqa: E731
    rows = []
    for b, goal in ((32, 20), (256, 50)):
        r = at("per-row f64", b) / at("numpy f64", b)
        rows.append((r >= goal, f"{r:.1f}×"))
    for b in BATCHES:
        if s["torch"] is None:
            rows.append((None, "torch not installed"))
            continue
        r = at("numpy f32", b) / at("torch f32", b)
        rows.append((r <= 0.8, f"{r:.2f}×; f64: {at('numpy f64', b) / at('torch f32', b):.2f}×"))
    peak = s["peaks"]["float32"][q + 1]  # sampled right after that repetition's epochs
    frac = gflops(s, at("numpy f32", 256)) / peak
    rows.append((frac >= 0.5, f"{100 * frac:.0f}% ({gflops(s, at('numpy f32', 256)):.0f} of {peak:.0f} GFLOP/s)"))
    return rows


def targets(s):
    """[{what, default: (ok, text), quiet: (ok, text), single: (ok, text)}]; judged on 'default'."""
    default, quiet = judge(s, False), judge_quietest(s)
    single = judge(s, True) if s["single"] else [(None, "threadpoolctl not installed")] * len(default)
    return [{"what": t, "default": d, "quiet": q, "single": o} for t, d, q, o in zip(TARGETS, default, quiet, single)]


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------

def main_table(s):
    q = s["quiet"]
    headers = ["variant", "batch 32: ms/epoch", "batch 256: ms/epoch", "GFLOP/s at batch 256 (median)",
               "CPU ms, batch 32 / 256 (median)", f"quietest repetition (#{q + 1}): ms, batch 32 / 256"]
    rows = [[name, *(common.fmt(s["stats"][(name, b)], 1e3) for b in BATCHES),
             f"{gflops(s, s['stats'][(name, 256)]['median']):.1f}",
             " / ".join(f"{s['cpu'][(name, b)]['median'] * 1e3:.0f}" for b in BATCHES),
             " / ".join(f"{s['times'][(name, b)][q] * 1e3:.1f}" for b in BATCHES)] for name in s["names"]]
    if s["torch"] is None:
        rows.append(["torch f32", "not installed", "not installed", "-", "-", "-"])
    return headers, rows


def ratio_table(s):
    pairs = [("per-row f64", "numpy f64"), ("per-row f32", "numpy f32")]
    if s["torch"] is not None:
        pairs += [("numpy f32", "torch f32"), ("numpy f64", "torch f32")]
    if s["single"]:
        pairs += [(one_thread(a), one_thread(b)) for a, b in pairs if "per-row f32" not in a]
        pairs += [("numpy f32", one_thread("numpy f32"))]
        if s["torch"] is not None:
            pairs += [("torch f32", one_thread("torch f32"))]
    rows = []
    for b in BATCHES:
        for slow, fast in pairs:
            rows.append([f"{slow} / {fast}", b, f"{common.fmt(ratio_stats(s, slow, fast, b), 1, 2)}×"])
    return ["ratio", "batch", "median (min–max)"], rows


def breakdown_table(s):
    """Epoch vs its GEMMs replayed alone (measured in the same repetitions); per-call costs."""
    rows = []
    labels = ["numpy f64", "numpy f32"]
    if s["single"]:
        labels += [one_thread(label) for label in labels]
    for label in labels:
        for b in BATCHES:
            epoch = s["stats"][(label, b)]["median"]
            gemms = s["stats"][(gemms_only(label), b)]["median"]
            share = ratio_stats(s, gemms_only(label), label, b)
            calls = -(-s["n"] // b)
            rows.append([label, b, calls, f"{epoch * 1e3:.1f}", f"{epoch / calls * 1e6:.0f}", f"{gemms * 1e3:.1f}",
                         f"{100 * share['median']:.0f}% ({100 * share['min']:.0f}–{100 * share['max']:.0f}%)",
                         f"{gflops(s, gemms):.0f}"])
    for label in ("per-row f64", "per-row f32", one_thread("per-row f64")):
        if (label, 32) in s["stats"]:
            epoch = s["stats"][(label, 32)]["median"]
            rows.append([label, 32, s["n"], f"{epoch * 1e3:.1f}", f"{epoch / s['n'] * 1e6:.0f}", "-", "-", "-"])
    return ["variant", "batch", "loss_and_grad calls", "epoch ms (median)", "µs per call",
            "its 5 GEMMs alone, ms (median)", "GEMM share (per repetition: median, min–max)",
            "GEMMs-alone GFLOP/s"], rows


def top_lines(profile, count=3):
    """'`line` 40% (12 µs a hit), ...' of a line profile's costliest lines."""
    total, rows = profile
    return ", ".join(f"`{text}` {100 * ms / total:.0f}% ({1e3 * ms / hits:.0f} µs a hit)"
                     for _, text, hits, ms in rows[:count])


def analysis(s):
    """Generated paragraphs: what bounds each missed target, with the measured numbers."""
    st, peak, t = s["stats"], s["peak"], s["targets"]
    med = lambda name, b: st[(name, b)]["median"]  # noqa: E731 - seconds
    ratio = lambda slow, fast, b: ratio_stats(s, slow, fast, b)["median"]  # noqa: E731
    said = lambda i: (f"{t[i]['default'][1]}; quietest repetition {t[i]['quiet'][1]}"  # noqa: E731
                      + (f"; 1 thread {t[i]['single'][1]}" if s["single"] else ""))
    missed = lambda *idx: not all(t[i]["default"][0] for i in idx)  # noqa: E731
    share = lambda label, b: ratio(gemms_only(label), label, b)  # noqa: E731 - GEMM share of an epoch
    others = common.summarize([o for o in s["others"] if o == o] or [0.0])
    lines = ["## What bounds the results", ""]
    text = (f"- **The machine.** Other processes kept {others['median']:.2f} of the 2 cores busy in the median "
            f"repetition ({others['min']:.2f}–{others['max']:.2f}; {s['others'][s['quiet']]:.2f} in the quietest, "
            f"#{s['quiet'] + 1}). ")
    if others["max"] >= 0.2:
        text += (f"numpy's OpenBLAS and torch both run {s['threads']} threads by default: on 2 cores, any other "
                 "load makes each small GEMM wait for its second thread, so the default rows spread more than the "
                 "1-thread ones. ")
    else:
        cpu = s["cpu"][(one_thread("per-row f64") if s["single"] else "per-row f64", 32)]
        text += (f"The machine was quiet, yet single-threaded work still varied: the per-row f64 epoch used "
                 f"{cpu['min'] * 1e3:.0f}–{cpu['max'] * 1e3:.0f} ms of CPU time across repetitions (its wall time "
                 "is its CPU time), so the virtual machine's own speed varies by that much; hence the medians. ")
    if s["single"]:
        text += (f"The {GEMM_N}³ f32 GEMM reached {peak['float32']:.0f} GFLOP/s with {s['threads']} threads "
                 f"(median {common.summarize(s['peaks']['float32'])['median']:.0f}) and "
                 f"{peak['float32, 1 thread']:.0f} with 1 (the figure measured earlier on a quiet machine: ≈ 340 "
                 "with 2). ")
    text += ("The verdicts use the default threads and the medians over all repetitions, as specified; the "
             "quietest repetition and the 1-thread runs are shown beside them.")
    lines.append(text)

    prof_row, prof_vec = s["profiles"][("per-row f64", 32)], s["profiles"][("numpy f64", 32)]
    if missed(0, 1):
        row_us = med("per-row f64", 32) / s["n"] * 1e6
        vec_us = {b: med("numpy f64", b) / -(-s["n"] // b) * 1e6 for b in BATCHES}
        text = (f"- **Vectorized vs per-row loop** (batch 32: {said(0)}. Batch 256: {said(1)}). A per-row call "
                f"costs {row_us:.0f} µs (f64); a vectorized call costs {vec_us[32]:.0f} µs at batch 32 and "
                f"{vec_us[256]:.0f} µs at batch 256, i.e. {vec_us[32] / 32:.1f} and {vec_us[256] / 256:.1f} µs "
                "per row. "
                f"For 20× at batch 32 a batch call would have to take at most {32 * row_us / 20:.0f} µs, for 50× at "
                f"batch 256 at most {256 * row_us / 50:.0f} µs. ")
        if prof_row and prof_vec:
            text += (f"Per row, the time goes to work on whole d×h = 784×128 arrays: {top_lines(prof_row)} of the "
                     "per-row epoch (line profile below: the 784×1×128 outer product X.T @ dZ1 — numpy's matmul "
                     "is slow on such a k = 1 product, slower than np.outer or than a pass over the same 800 KB "
                     "— the forward product that reads all of W1 for one row, the accumulation of the gradients, "
                     "with `total[name] +=` hit 4 times a row). The vectorized "
                     f"epoch does that work once per batch; its own time goes to {top_lines(prof_vec)} at batch 32, "
                     f"and its five GEMMs alone are {100 * share('numpy f64', 32):.0f}% of it at batch 32 and "
                     f"{100 * share('numpy f64', 256):.0f}% at batch 256. So the ratio is set by the per-row work on "
                     "d×h arrays that the loop repeats for every row (memory traffic), against the vectorized "
                     "call's GEMMs plus its fixed per-call cost (Python, small elementwise ops, the SGD update's "
                     "passes over the weights).")
        lines.append(text)

    if missed(2, 3) and s["torch"] is not None:
        text = (f"- **numpy vs PyTorch** (batch 32: {said(2)}. Batch 256: {said(3)}). Per epoch, PyTorch takes "
                f"{med('torch f32', 32) * 1e3:.0f} and {med('torch f32', 256) * 1e3:.0f} ms with {s['threads']} "
                f"threads, numpy f32 {med('numpy f32', 32) * 1e3:.0f} and {med('numpy f32', 256) * 1e3:.0f} ms.")
        if s["single"]:
            n2 = {b: ratio("numpy f32", one_thread("numpy f32"), b) for b in BATCHES}
            t2 = {b: ratio("torch f32", one_thread("torch f32"), b) for b in BATCHES}
            text += (f" numpy's {s['threads']}-thread epoch takes {n2[32]:.2f}× its 1-thread time at batch 32 and "
                     f"{n2[256]:.2f}× at batch 256; torch's takes {t2[32]:.2f}× and {t2[256]:.2f}×.")
            if n2[32] > 1:
                text += (" At batch 32 the second thread costs numpy more than it gives: OpenBLAS splits each small "
                         "product (32×784×128 is 6.4 MFLOP, about 40 µs at the 1-thread peak) over 2 threads and "
                         "pays the hand-off 5 times a step, while torch's MKL/oneDNN kernels gain from it.")
            text += (" With 1 thread each, numpy takes "
                     f"{ratio(one_thread('numpy f32'), one_thread('torch f32'), 32):.2f}× and "
                     f"{ratio(one_thread('numpy f32'), one_thread('torch f32'), 256):.2f}× of torch's time.")
        if s["profiles"][("numpy f32", 256)]:
            text += (" What is left in numpy's step besides the GEMMs is small elementwise work and Python per "
                     f"call (line profile at batch 256, 1 thread: {top_lines(s['profiles'][('numpy f32', 256)])}).")
        lines.append(text)

    if missed(4):
        g = {label: med(gemms_only(label), 256) for label in ("numpy f32",) +
             ((one_thread("numpy f32"),) if s["single"] else ())}
        text = (f"- **Fraction of the GEMM peak** ({said(4)}). The five GEMMs of the epoch alone reach only "
                f"{gflops(s, g['numpy f32']):.0f} GFLOP/s with default threads "
                f"({100 * gflops(s, g['numpy f32']) / peak['float32']:.0f}% of the peak)"
                + (f" and {gflops(s, g[one_thread('numpy f32')]):.0f} with 1 "
                   f"({100 * gflops(s, g[one_thread('numpy f32')]) / peak['float32, 1 thread']:.0f}% of the 1-thread "
                   "peak)" if s["single"] else "")
                + f", and they are {100 * share('numpy f32', 256):.0f}% of the epoch's time. Two things bound it: "
                f"(1) at these shapes — 256×784×128 (forward), 784×256×128 (dW1) and the ×10 products, far from "
                f"the square {GEMM_N}³ of the peak — packing and the thread hand-off weigh, so even the GEMMs "
                f"alone run at about half the peak or less; (2) the other {100 - 100 * share('numpy f32', 256):.0f}% "
                "of the epoch is elementwise work (bias, ReLU mask, softmax, SGD step) and Python per call, which "
                "counts no FLOPs.")
        if s["backward32"] != np.float32:
            text += (f" The backward products also run in {s['backward32']} (see the dtype audit), after a cast "
                     "of the float32 operand.")
        lines.append(text)
    return lines + [""]


def audit_text(s):
    if s["backward32"] == np.float32:
        return ("With float32 inputs the reference stays in float32 end to end: every intermediate, gradient "
                "and updated parameter above is float32 (Python floats such as `lr` and `2 * weight_decay` keep "
                "it). Earlier runs of this benchmark found `one_hot`'s `np.zeros((n, k))` (float64 by default) "
                "upcasting dZ2 and the whole backward pass to float64; the reference was changed in commit "
                "a7a7a1c and no longer builds a one-hot matrix.")
    return (f"The reference does **not** stay in float32: dZ2 is {s['backward32']}, so the backward products run "
            f"in {s['backward32']}, each first casting its float32 operand; the in-place SGD step casts the "
            "gradients back, so the parameters stay float32. (The notebook is not changed by this benchmark.)")


def profile_section(s):
    lines = []
    for (label, b), prof in s["profiles"].items():
        if prof is None:
            lines += [f"(line_profiler not installed: no line profile of {label}.)", ""]
            continue
        total, rows = prof
        lines += [f"**{label}, batch {b}** ({'1 BLAS thread, ' if s['single'] else ''}one epoch, {total:.0f} ms "
                  "under the profiler; top 10 lines):", ""]
        lines += common.table(["function", "line", "hits", "ms", "share"],
                              [[f, f"`{t}`", h, f"{ms:.1f}", f"{100 * ms / total:.0f}%"] for f, t, h, ms in rows[:10]])
        lines.append("")
    return lines


def report(s):
    """Print the tables; write training.md and training.png."""
    headers, rows = main_table(s)
    common.print_table(headers, rows)
    print()
    rh, rr = ratio_table(s)
    common.print_table(rh, rr)
    print()
    word = lambda ok: "met" if ok else "MISSED" if ok is not None else "n/a"  # noqa: E731
    for row in s["targets"]:
        (ok, text), (okq, textq), (ok1, text1) = row["default"], row["quiet"], row["single"]
        print(f"  {word(ok):6s} {row['what']}: {text}   [quietest repetition: {word(okq)} {textq}; "
              f"1 thread: {word(ok1)} {text1}]")
    print()
    bh, br = breakdown_table(s)
    common.print_table(bh, br)

    torch = s["torch"]
    torch_line = f"{torch.__version__}, {s['threads']} threads (as many as numpy's BLAS)" if torch else "not installed"
    peak_lines = [f"- GEMM peak, numpy matmul {GEMM_N}×{GEMM_N}×{GEMM_N}, {label}: **{max(v):.0f} GFLOP/s** "
                  f"(best of {len(v)}; median {common.summarize(v)['median']:.0f})" for label, v in s["peaks"].items()]
    verdict = lambda ok: common.verdict(ok) if ok is not None else "n/a"  # noqa: E731
    lines = [
        "# Benchmark: one training epoch (784-128-10, softmax cross-entropy, SGD lr 0.1)",
        "",
        f"Data: the **{s['n']:,} training images** of the bundled 5,000-image sample (`load_mnist(offline=True)`), "
        "one fixed shuffled order, `init_params(784, 128, 10, seed=0)`, SGD lr 0.1 without weight decay "
        "(`loss_and_grad(X, y, params)`; the notebook's `train` defaults to weight_decay=1e-4). "
        f"{s['repeats']} repetitions; in each, every (variant, batch) runs once, in a random order, each after a "
        f"{SETTLE_SECONDS:g} s pause (idle BLAS/OpenMP threads of the previous job park), then one {GEMM_N}³ GEMM "
        "of each kind is timed. Times are wall-clock ms per epoch, median (min–max). Ratios are taken within a "
        "repetition. `(diag.)` rows are diagnostics: the same code limited to 1 thread. "
        f"{'**Quick smoke run: few repetitions.**' if s['quick'] else ''}",
        "",
        f"Measured: {s['version']}. Generated by `python -m benchmarks.training` (or `make bench`).",
        "",
        "## Machine",
        "",
        *common.machine_lines(),
        f"- {common.describe_cpu(s['usage'])}",
        f"- torch: {torch_line}",
        *peak_lines,
        "",
        "## Time per epoch",
        "",
        *common.table(headers, rows),
        "",
        f"GFLOP/s counts the GEMM FLOPs of an epoch exactly, {s['flops_epoch'] / 1e9:.3f} GFLOP "
        f"({flops_per_sample():,} per sample): forward 2·n·(784·128 + 128·10), backward dW2 2·n·128·10, "
        "dA1 2·n·10·128, dW1 2·n·784·128, no input gradient; elementwise ops (bias, ReLU, softmax, SGD "
        "update) are not counted. CPU ms is the process's CPU time during the epoch, all threads "
        "(`time.process_time`): for the 1-thread rows it is about what the wall time would be on a quiet "
        "machine; for the default rows it also counts threads spinning while they wait for each other.",
        "",
        "## Targets",
        "",
        f"Judged on the default configuration ({s['threads']} threads for numpy's BLAS and torch), median over "
        f"the repetitions (ratios: median of the per-repetition ratios, min–max). Also shown: the same from the "
        f"quietest repetition alone (#{s['quiet'] + 1}, other processes {s['others'][s['quiet']]:.2f} cores), and "
        "the 1-thread diagnostics.",
        "",
        *common.table(["target", "verdict", "measured", "quietest repetition", "1 thread (diag.)"],
                      [[r["what"], verdict(r["default"][0]), r["default"][1],
                        f"{verdict(r['quiet'][0])} {r['quiet'][1]}", f"{verdict(r['single'][0])} {r['single'][1]}"]
                       for r in s["targets"]]),
        "",
        *analysis(s),
        "## Ratios (within each repetition)",
        "",
        *common.table(rh, rr),
        "",
        "## float32 end to end? (dtype audit of the reference with float32 X and params)",
        "",
        *common.table(["what", "dtype"], s["audit"]),
        "",
        audit_text(s),
        "",
        "## Where the time goes",
        "",
        "The five matmuls of each epoch replayed alone with the reference's shapes and dtypes (batches "
        "pre-gathered, no indexing), timed as jobs of their own inside the same repetitions, with the same "
        "threads as the epoch they are compared with; the share is taken per repetition:",
        "",
        *common.table(bh, br),
        "",
        "Line profiles (line_profiler; a line calling forward or softmax_cross_entropy is replaced by their "
        "lines; the profiler adds about a microsecond per line executed):",
        "",
        *profile_section(s),
        "## Correctness cross-check (max |Δ| of the parameters after one epoch, batch 32)",
        "",
        *common.table(["pair", "max abs difference"], [[p, f"{d:.2e}"] for p, d in s["diffs"]]),
        "",
        "## Reference figures measured earlier (5,000 images: multiply by 0.8 for these 4,000)",
        "",
        "Per-row loop f32 363 / f64 919 ms; numpy f32 41 (batch 32) and 16 (batch 256), f64 73 and 31; "
        "PyTorch 2.13 CPU 62 and 19; OpenBLAS f32 GEMM peak ≈ 340 GFLOP/s on 2 cores; at batch 32 only ~30% "
        "of the vectorized epoch is GEMM time.",
    ]
    common.write_report("training", lines, s["quick"])
    plot(s)


def plot(s):
    fig, ax = common.new_figure(figsize=(12, 5.5))
    names, width = s["names"], 0.38
    for j, b in enumerate(BATCHES):
        med = np.array([s["stats"][(n, b)]["median"] * 1e3 for n in names])
        lo = med - [s["stats"][(n, b)]["min"] * 1e3 for n in names]
        hi = np.array([s["stats"][(n, b)]["max"] * 1e3 for n in names]) - med
        ax.bar(np.arange(len(names)) + (j - 0.5) * width, med, width, yerr=[lo, hi], capsize=3, label=f"batch {b}")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("ms per epoch (median; bars: min–max; log scale)")
    ax.set_title(f"One epoch on {s['n']:,} images, 784-128-10 — f32 GEMM peak measured: {s['peak']['float32']:.0f} "
                 f"GFLOP/s ({s['threads']} threads)")
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend()
    common.save_figure(fig, "training", s["quick"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, results in results/quick/")
    run(parser.parse_args(argv).quick)


if __name__ == "__main__":
    main()
