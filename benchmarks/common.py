"""What every benchmark shares: the reference solution, timing statistics, the machine, the report.

The reference functions come straight from the solution cells of assignment.ipynb (through
autograder.testcells), so a benchmark always measures the code students are compared with.
"""
import os
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

NOTEBOOK = REPO / "assignment.ipynb"


def reference_namespace():
    """A fresh namespace holding the notebook's imports and reference solution (softmax, forward, ...)."""
    from autograder.testcells import load_namespace, read_notebook, reference_solutions, setup_source

    nb = read_notebook(NOTEBOOK)
    namespace, errors = load_namespace(setup_source(nb), reference_solutions(nb))
    if errors:
        raise RuntimeError(f"the reference solution does not load: {errors}")
    return namespace


def reference_version():
    """One line naming the notebook version measured: git commit, uncommitted changes, and a hash of
    the reference solution's code (it changes when any solution cell changes)."""
    import hashlib
    import subprocess

    from autograder.testcells import read_notebook, reference_solutions

    codes = reference_solutions(read_notebook(NOTEBOOK))
    digest = hashlib.sha256("\n".join(codes[k] for k in sorted(codes)).encode()).hexdigest()[:12]
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%h", "--", NOTEBOOK.name], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", NOTEBOOK.name], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", ""
    where = f"last changed in commit {head}" if head else "git history unavailable"
    return (f"`assignment.ipynb` {where}{' plus uncommitted edits' if dirty else ''}; "
            f"reference solution code sha256 {digest}")


def timed(fn, *args, **kwargs):
    """(seconds, result) of one call, wall clock."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def timed_cpu(fn, *args, **kwargs):
    """(wall seconds, CPU seconds of this process's threads, result) of one call.

    On a shared machine the CPU time of single-threaded code is close to what the wall time would be on
    a quiet one; multi-threaded code adds up its threads (and their spinning).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def summarize(samples):
    """Median, quartiles and extremes of a list of numbers, as a dict."""
    xs = sorted(samples)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "q1": q1, "q3": q3, "n": len(xs)}


def fmt(stats, scale=1.0, digits=1):
    """'median (min–max)' of a summarize() dict, each multiplied by scale."""
    f = f"{{:.{digits}f}}"
    return (f"{f.format(stats['median'] * scale)} "
            f"({f.format(stats['min'] * scale)}–{f.format(stats['max'] * scale)})")


def verdict(ok):
    return "**met**" if ok else "**MISSED**"


def table(headers, rows):
    """A markdown table (list of lines)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def print_table(headers, rows):
    """The same table as plain aligned text on stdout."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for j, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def blas_info():
    """One line per BLAS/OpenMP pool in this process (threadpoolctl if installed, else numpy's config)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        import numpy as np
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            return [f"numpy BLAS: {blas.get('name')} {blas.get('version')} "
                    "(threadpoolctl not installed: thread count unknown, assumed os.cpu_count())"]
        except Exception:  # noqa: BLE001 - only descriptive
            return ["numpy BLAS: unknown"]
    return [" ".join(str(p[key]) for key in ("internal_api", "version", "architecture") if p.get(key))
            + f", {p.get('num_threads')} threads, {Path(p.get('filepath', '')).name}" for p in threadpool_info()]


def blas_threads():
    """Threads numpy's BLAS uses (threadpoolctl), or the number of cores if that is unknown."""
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return int(pools[0]["num_threads"])
    except ImportError:
        pass
    return os.cpu_count() or 1


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


class CpuMeter:
    """How busy the machine's cores were between start() and stop(), split into us and everyone else.

    Reads /proc/stat (all cores' busy time) and os.times() (this process and its waited-for children).
    `others` is the average number of cores other processes kept busy: the noise a shared machine adds.
    """

    def __init__(self):
        self.start()

    @staticmethod
    def _snapshot():
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + fields[4]  # idle + iowait
        mine = os.times()
        ours = mine.user + mine.system + mine.children_user + mine.children_system
        return (sum(fields[:8]) - idle) / ticks, ours, time.monotonic()

    def start(self):
        self._start = self._snapshot()
        return self

    def stop(self):
        """{'wall': s, 'busy', 'ours', 'others': cores} averaged over the interval (None if unknown).

        'ours' counts child processes only once they have exited and been waited for.
        """
        end = self._snapshot()
        if self._start is None or end is None:
            return None
        wall = end[2] - self._start[2]
        busy, ours = end[0] - self._start[0], end[1] - self._start[1]
        return {"wall": wall, "busy": busy / wall, "ours": ours / wall, "others": max(0.0, busy - ours) / wall}


def probe_others(seconds=2.0):
    """Cores other processes keep busy, measured while this process sleeps for `seconds` (None if unknown)."""
    meter = CpuMeter()
    time.sleep(seconds)
    usage = meter.stop()
    return usage["others"] if usage else None


def describe_cpu(usage):
    """A sentence about a CpuMeter.stop() result."""
    if not usage:
        return "CPU usage of other processes: unknown (no /proc/stat)"
    return (f"during the measurement ({usage['wall']:.0f} s) other processes kept on average "
            f"**{usage['others']:.2f} of the {os.cpu_count()} cores** busy (this benchmark: {usage['ours']:.2f})")


def machine_lines():
    """Markdown bullet lines describing the machine and the numeric stack."""
    import numpy as np
    lines = [f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
             f"numpy {np.__version__}",
             f"- load average when the report was written (1/5/15 min): {load_average()} "
             "(the machine is shared with other engineers' jobs)"]
    lines += [f"- {line}" for line in blas_info()]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        lines.append(f"- `{var}` = {os.environ.get(var, '(not set)')}")
    return lines


def output_dir(quick=False):
    """benchmarks/results/ (committed), or results/quick/ for smoke runs (ignored by git)."""
    folder = RESULTS / "quick" if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_report(name, lines, quick=False):
    """Write <name>.md into output_dir(quick) and return its path."""
    path = output_dir(quick) / f"{name}.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def new_figure(*args, **kwargs):
    """A matplotlib figure drawn off-screen (Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kwargs)


def save_figure(fig, name, quick=False):
    """Write <name>.png into output_dir(quick) and return its path."""
    import matplotlib.pyplot as plt
    path = output_dir(quick) / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
