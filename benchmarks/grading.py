"""Benchmark 3: seconds per submission through the instructor's pipeline, on a generated class.

A course is built in a temporary folder with the kit's Python API: release, collect a class of
generated submissions (one per variant of autograder.variants: correct code, every bug kind, and
the untouched release), then grade it several ways:

- autograde only (verify=False), sandbox on, 1 worker;
- autograde only, sandbox off, 1 worker;
- the production path (sandbox on, out-of-kernel verification on) with 1 worker, then 2 workers;
  (these four twice, the second round in reverse order, so that a drift in load falls on all alike)
- out-of-kernel verification alone (autograder.judge.verify.verify, sandboxed), one submission at a time;
- feedback for the whole class;
- one submission profiled stage by stage, and its notebook run by plain nbclient, cell by cell.

Targets: at most 3 s per submission with the sandbox; 2 workers at least 1.8x as fast as 1.
Run: python -m benchmarks.grading [--quick]   (minutes; --quick grades 4 submissions)
"""
import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import common

TARGET_SECONDS = 2.0 + 1.0  # per submission, with the sandbox
TARGET_SPEEDUP = 1.8
CELLS_STAGE = "the notebook's cells, run in the kernel"
MIN_CLASS = 20
QUICK_VARIANTS = ("perfect", "loss_and_grad_per_row_loop", "dz_missing_1_over_n", "untouched")


def silent(*_args, **_kwargs):
    """An echo= that prints nothing."""


def class_notebooks(course, quick=False):
    """{student: notebook text} of a generated class.

    With autograder.variants: one submission per variant (correct code, every bug kind, the untouched
    release), repeated to at least MIN_CLASS students; quick: the 4 QUICK_VARIANTS. Without it (not
    importable): alternately the reference solution and the untouched release notebook.
    """
    import nbformat

    from autograder.testcells import read_notebook
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    size = len(QUICK_VARIANTS) if quick else MIN_CLASS
    try:
        from autograder.variants import VARIANTS, make_submission
    except ImportError:
        return {f"s{i:02d}-{'reference' if i % 2 == 0 else 'untouched'}":
                nbformat.writes(source_nb if i % 2 == 0 else release_nb) for i in range(size)}
    names = list(QUICK_VARIANTS) if quick else list(VARIANTS)
    chosen = [names[i % len(names)] for i in range(max(size, len(names)))]
    return {f"s{i:02d}-{name.replace('_', '-')}"[:60]: nbformat.writes(make_submission(release_nb, source_nb, VARIANTS[name]))
            for i, name in enumerate(chosen)}


def write_class(folder, notebooks):
    """One folder per student, as students hand them in."""
    for student, text in notebooks.items():
        (folder / student).mkdir(parents=True)
        (folder / student / "assignment.ipynb").write_text(text)


def grade_class(course, *, workers, sandbox, verify):
    """One grade() of the whole class: wall s, per-submission s, scores {student: {cell: pts}}, failed,
    the cores other processes kept busy just before it (others_before, a 2 s probe) and the cores all
    processes, this run's included, kept busy during it (busy)."""
    from autograder.verbs.grade import grade
    before = common.probe_others()
    meter = common.CpuMeter()
    seconds, outcomes = common.timed(grade, course, workers=workers, sandbox=sandbox, verify=verify,
                                     progress=False, echo=silent)
    usage = meter.stop()
    nan = float("nan")
    return {"wall": seconds, "per_submission": [o.seconds for o in outcomes],
            "scores": {o.student: dict(o.scores) for o in outcomes},
            "failed": [o.student for o in outcomes if not o.ok], "n": len(outcomes),
            "others_before": nan if before is None else before, "busy": usage["busy"] if usage else nan}


def verify_class(course, students, scratch):
    """Out-of-kernel verification alone, sandboxed, one submission after the other: [seconds]."""
    from autograder.judge.verify import verify
    source = course.notebook(course.source)
    seconds = []
    for student in students:
        t, _ = common.timed(verify, source, course.notebook(course.submitted(student)),
                            scratch / f"{student}-verify", sandbox=True, seed=0)
        seconds.append(t)
    return seconds


def profile_one(course, student, sandbox, scratch):
    """Seconds per stage of grading one submission, from cProfile of the worker function in-process.

    Stages: the nbgrader autograde (kernel start-up until ready; running the notebook's cells; saving
    the grades to the gradebook; the rest of nbgrader's conversion), the out-of-kernel verification,
    and what grade_in_scratch does around them (scratch copies of the course).
    """
    import cProfile
    import pstats

    from autograder.grading.job import grade_in_scratch

    scratch.mkdir(parents=True)
    shutil.copy2(course.gradebook, scratch / "gradebook.db")
    profiler = cProfile.Profile()
    profiler.runcall(grade_in_scratch, str(course.root), student, str(scratch), sandbox, True, 0)
    stats = pstats.Stats(profiler).stats

    def cumulative(path_end, func):
        return sum(v[3] for (path, _, name), v in stats.items() if path.endswith(path_end) and name == func)

    total = cumulative("autograder/grade.py", "grade_in_scratch")
    autograde = cumulative("nbgrader/apps/api.py", "autograde")
    execute = cumulative("autograder/preprocessors.py", "preprocess")
    setup = cumulative("nbclient/client.py", "setup_kernel")
    save = cumulative("nbgrader/preprocessors/saveautogrades.py", "preprocess")
    verify = cumulative("autograder/verify.py", "verify")
    return {"kernel start-up (until ready)": setup, CELLS_STAGE: execute - setup,
            "saving grades (SaveAutoGrades, SQLite)": save, "rest of nbgrader autograde": autograde - execute - save,
            "out-of-kernel verification": verify, "scratch course copy, reading grades": total - autograde - verify,
            "total": total}


def kernel_cell_times(course, student, top=6):
    """[(cell, seconds)] of the slowest cells of one submission run by nbclient, as in autograding.

    No sandbox, no nbgrader: the kernel-side cost of the notebook itself, with NBGRADER_EXECUTION set
    (so the notebook trains on its short grading budget, as when autograded).
    """
    import datetime as dt

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(course.notebook(course.submitted(student))), as_version=4)
    old = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        client = NotebookClient(nb, timeout=120, record_timing=True, kernel_name="python3",
                                resources={"metadata": {"path": str(course.source)}})
        seconds, _ = common.timed(client.execute)
    finally:
        if old is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = old
    cells = []
    for cell in nb.cells:
        timing = cell.metadata.get("execution", {})
        if cell.cell_type == "code" and "shell.execute_reply" in timing:
            start, end = (dt.datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            cells.append((cell.metadata.get("nbgrader", {}).get("grade_id", "?"), (end - start).total_seconds()))
    in_cells = sum(t for _, t in cells)
    return seconds, in_cells, sorted(cells, key=lambda c: -c[1])[:top]


def run(quick=False):
    """Build a course, measure every stage, print and write grading.md / grading.png."""
    from autograder.course import Course
    from autograder.sandbox.bwrap import bwrap_available
    from autograder.verbs.collect import collect
    from autograder.verbs.feedback import feedback
    from autograder.verbs.release import release

    # nbgrader shells out to `alembic`, which lives beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    sandbox_ok = bwrap_available()
    root = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        course = Course(root / "course")
        version = common.reference_version()
        t_release, _ = common.timed(release, course, echo=silent)
        notebooks = class_notebooks(course, quick)
        write_class(root / "incoming", notebooks)
        t_collect, _ = common.timed(collect, root / "incoming", course, echo=silent)
        students = course.submitted_students()
        print(f"grading: class of {len(students)} submissions; release {t_release:.1f} s, "
              f"collect {t_collect:.2f} s; sandbox {'available' if sandbox_ok else 'NOT available'}", flush=True)

        plan = [("autograde, sandbox off, 1 worker", dict(workers=1, sandbox=False, verify=False))]
        if sandbox_ok:
            plan = [("autograde, sandbox on, 1 worker", dict(workers=1, sandbox=True, verify=False)), *plan,
                    ("production (sandbox + verify), 1 worker", dict(workers=1, sandbox=True, verify=True)),
                    ("production (sandbox + verify), 2 workers", dict(workers=2, sandbox=True, verify=True))]
        else:
            plan += [("production without sandbox (verify), 1 worker", dict(workers=1, sandbox=False, verify=True)),
                     ("production without sandbox (verify), 2 workers", dict(workers=2, sandbox=False, verify=True))]
        # Rounds in ABBA order (the second round reversed), so a drift in the machine's load over the
        # minutes this takes falls on every configuration alike.
        runs = {label: [] for label, _ in plan}
        for round_ in range(1 if quick else 2):
            for label, kwargs in (plan if round_ % 2 == 0 else plan[::-1]):
                r = grade_class(course, **kwargs)
                runs[label].append(r)
                print(f"  round {round_ + 1}, {label}: {r['wall']:.1f} s wall, {r['wall'] / r['n']:.2f} s per "
                      f"submission (others {r['others_before']:.2f} cores before)", flush=True)
        t_verify = verify_class(course, students, root / "verify") if sandbox_ok else []
        if t_verify:
            print(f"  verification alone: {np.median(t_verify):.2f} s median per submission", flush=True)
        t_feedback, made = common.timed(feedback, course, echo=silent)
        print(f"  feedback: {t_feedback:.1f} s for {sum(1 for p in made.values() if p)} pages", flush=True)

        # Where one submission's time goes: the reference ("perfect") submission, profiled in-process.
        perfect = next((st for st in students if "perfect" in st or "reference" in st), students[0])
        stages = {}
        for i in range(1 if quick else 3):
            for sandbox in ([True, False] if sandbox_ok else [False]):
                stages.setdefault(sandbox, []).append(
                    profile_one(course, perfect, sandbox, root / "profile" / f"{i}-{sandbox}"))
        cells = kernel_cell_times(course, perfect)
        print(f"  profiled one submission ({perfect}); kernel run outside nbgrader: {cells[0]:.1f} s", flush=True)
        load_after = common.load_average()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    return write(dict(quick=quick, n=len(students), runs=runs, t_release=t_release, t_collect=t_collect,
                      t_verify=t_verify, t_feedback=t_feedback, feedback_pages=sum(1 for p in made.values() if p),
                      sandbox_ok=sandbox_ok, load_after=load_after, variants=list(notebooks),
                      stages=stages, cells=cells, profiled=perfect, version=version))


def stage_table(s):
    """Rows: stage, median seconds with the sandbox, without (over the profiled repetitions)."""
    rows = []
    keys = list(next(iter(s["stages"].values()))[0])
    for key in keys:
        row = [key]
        for sandbox in (True, False):
            runs = s["stages"].get(sandbox)
            row.append(f"{common.summarize([r[key] for r in runs])['median']:.2f}" if runs else "-")
        rows.append(row)
    return ["stage of one submission (grade_in_scratch, in-process)", "s, sandbox on", "s, sandbox off"], rows


def sandbox_cost(med):
    """A sentence on what bubblewrap adds to one submission, from the profiled medians."""
    diff = med[True]["total"] - med[False]["total"]
    text = f"Without the sandbox the same submission takes {med[False]['total']:.2f} s (on − off = {diff:+.2f} s"
    return text + ("), so the sandbox's own cost is small against the rest. " if diff < 0.5 else
                   "): that difference is the sandbox's cost. ")


def analysis(s, one, two, per_sub_serial, speedup):
    """Generated paragraphs: what bounds each missed target, with the measured numbers."""
    lines = ["## What bounds the results", ""]
    runs = s["runs"]
    others = [o for r in runs.values() for o in r["others_before"]]
    busy = [b for r in runs.values() for b in r["busy"]]
    lines.append(f"- **The machine.** Just before each grade run, other processes kept {min(others):.2f}–"
                 f"{max(others):.2f} of the 2 cores busy (2 s probes); during the runs all processes together, this "
                 f"benchmark's included, kept {min(busy):.2f}–{max(busy):.2f} cores busy. "
                 + ("The machine was quiet: the figures are the pipeline's own. " if max(others) < 0.2 else
                    "The figures include that contention. ")
                 + "The configurations were run in ABBA order so that a drift in load falls on all of them alike.")
    if s["stages"]:
        med = {sb: {k: common.summarize([r[k] for r in v])["median"] for k in v[0]} for sb, v in s["stages"].items()}
        on = med.get(True) or med[False]
        total_on = on["total"]
        wall_cells, in_cells, slow = s["cells"]
        if per_sub_serial > TARGET_SECONDS:
            lines.append(
                f"- **≤ {TARGET_SECONDS:g} s per submission** (measured {per_sub_serial:.2f} s serial). The profile of "
                f"one submission ({s['profiled']}) gives {total_on:.2f} s in the worker with the sandbox: kernel "
                f"start-up {on['kernel start-up (until ready)']:.2f} s, the notebook's own cells "
                f"{on[CELLS_STAGE]:.2f} s, SQLite grade saving "
                f"{on['saving grades (SaveAutoGrades, SQLite)']:.2f} s, the rest of nbgrader "
                f"{on['rest of nbgrader autograde']:.2f} s, verification {on['out-of-kernel verification']:.2f} s. "
                + (sandbox_cost(med) if len(med) == 2 else "")
                + f"Run by plain nbclient (no nbgrader, no sandbox) the notebook takes {wall_cells:.2f} s including "
                f"kernel start, {in_cells:.2f} s of it inside cells; the slowest cells are "
                + ", ".join(f"`{gid}` {t:.2f} s" for gid, t in slow[:4])
                + ". So the floor is a fresh kernel per submission (start-up, then the imports cell pulls in numpy "
                "and matplotlib) plus the notebook's own work (its training and timing cells), before any grading "
                f"logic; grade() adds {per_sub_serial - common.summarize(one['per_submission'])['median']:.2f} s per "
                "submission on top of the worker's latency (process pool start-up, merging into the gradebook). "
                f"With 2 workers the throughput is {two['wall'] / two['n']:.2f} s per submission.")
    fmt_list = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    lat1, lat2 = (common.summarize(r["per_submission"])["median"] for r in (one, two))
    rounds = len(one["walls"])
    work1, work2 = (sum(r["per_submission"]) / rounds for r in (one, two))  # worker seconds per class
    serial = one["wall"] - work1  # grade()'s own part: pool start-up, merging results, status file
    bound = one["wall"] / (work2 / 2 + serial)
    text = (f"- **2 workers ≥ {TARGET_SPEEDUP:g}× serial** (measured {speedup:.2f}×, per round "
            f"{', '.join(f'{a / b:.2f}×' for a, b in zip(one['walls'], two['walls']))}). Of the 1-worker wall time "
            f"({one['wall']:.1f} s per class), the submissions' latencies in the worker add up to {work1:.1f} s; the "
            f"other {serial:.1f} s is grade()'s serial part (process pool start-up, merging each result into the "
            "gradebook, the status file), which a second worker cannot share. With 2 workers each submission "
            f"also took longer in its worker ({lat1:.2f} → {lat2:.2f} s median; {work1:.1f} → {work2:.1f} s in all), "
            f"so the best the pool could do is {one['wall']:.1f} / ({work2:.1f} / 2 + {serial:.1f}) = {bound:.2f}×. "
            f"All processes kept {fmt_list(one['busy'])} cores busy during the 1-worker runs and "
            f"{fmt_list(two['busy'])} during the 2-worker runs; other processes held {fmt_list(one['others_before'])} "
            f"and {fmt_list(two['others_before'])} cores just before them")
    if max(two["others_before"] + one["others_before"]) >= 0.2:
        text += ", so part of the slow-down per submission is other people's load."
    else:
        text += (": the machine was quiet, so the slow-down per submission comes from the two workers (and "
                 "their kernels) sharing the 2 cores with each other and with the merging process.")
    lines.append(text)
    return lines + [""]


def merge_rounds(runs):
    """One configuration's rounds as one record: mean wall, walls, pooled latencies, per-round load."""
    return {"wall": sum(r["wall"] for r in runs) / len(runs), "walls": [r["wall"] for r in runs],
            "per_submission": [t for r in runs for t in r["per_submission"]], "n": runs[0]["n"],
            "scores": runs[0]["scores"], "all_scores": [r["scores"] for r in runs],
            "busy": [r["busy"] for r in runs], "others_before": [r["others_before"] for r in runs]}


def write(s):
    """Print the tables and write grading.md / grading.png; returns s with the verdicts."""
    s = {**s, "rounds": s["runs"], "runs": {label: merge_rounds(rs) for label, rs in s["runs"].items()}}
    n = s["n"]
    headers = ["stage", "wall s (whole class; each round)", "s per submission (mean wall / n)",
               "per-submission latency in the worker, median (IQR) [min–max]",
               "cores busy during the run (all processes) / others just before, each round"]
    rows = [["release (once per class)", f"{s['t_release']:.1f}", f"{s['t_release'] / n:.2f}", "-", "-"],
            ["collect", f"{s['t_collect']:.2f}", f"{s['t_collect'] / n:.3f}", "-", "-"]]
    for label, r in s["runs"].items():
        st = common.summarize(r["per_submission"])
        rows.append([f"grade: {label}", " + ".join(f"{w:.1f}" for w in r["walls"]), f"{r['wall'] / r['n']:.2f}",
                     f"{st['median']:.2f} ({st['q1']:.2f}–{st['q3']:.2f}) [{st['min']:.2f}–{st['max']:.2f}]",
                     ", ".join(f"{b:.2f} / {o:.2f}" for b, o in zip(r["busy"], r["others_before"]))])
    if s["t_verify"]:
        st = common.summarize(s["t_verify"])
        rows.append(["out-of-kernel verification alone (sandboxed, serial)", f"{sum(s['t_verify']):.1f}",
                     f"{sum(s['t_verify']) / n:.2f}",
                     f"{st['median']:.2f} ({st['q1']:.2f}–{st['q3']:.2f}) [{st['min']:.2f}–{st['max']:.2f}]", "-"])
    rows.append(["feedback (serial, nbgrader)", f"{s['t_feedback']:.1f}", f"{s['t_feedback'] / n:.2f}", "-", "-"])
    common.print_table(headers, rows)

    prod = [label for label in s["runs"] if label.startswith("production")]
    one, two = s["runs"][prod[0]], s["runs"][prod[1]]
    speedup = one["wall"] / two["wall"]
    round_speedups = [a / b for a, b in zip(one["walls"], two["walls"])]
    production_scores = one["all_scores"] + two["all_scores"]
    identical = all(sc == production_scores[0] for sc in production_scores)
    differing = sorted(st for st in production_scores[0]
                       if any(sc.get(st) != production_scores[0][st] for sc in production_scores))
    sandbox_on = [label for label in s["runs"] if "sandbox on" in label]
    sandbox_off = [label for label in s["runs"] if "sandbox off" in label]
    kernel_same = (all(sc == s["runs"][sandbox_on[0]]["scores"]
                       for sc in s["runs"][sandbox_on[0]]["all_scores"] + s["runs"][sandbox_off[0]]["all_scores"])
                   if sandbox_on else None)

    per_sub_serial = one["wall"] / one["n"]
    per_sub_parallel = two["wall"] / two["n"]
    targets = [
        (f"≤ {TARGET_SECONDS:g} s per submission with the sandbox, 1 worker (production path: sandbox + "
         "verification; whole-class wall / n)", per_sub_serial <= TARGET_SECONDS if s["sandbox_ok"] else None,
         f"{per_sub_serial:.2f} s/submission"),
        (f"≤ {TARGET_SECONDS:g} s per submission with the sandbox, 2 workers (grade's default on 2 cores)",
         per_sub_parallel <= TARGET_SECONDS if s["sandbox_ok"] else None, f"{per_sub_parallel:.2f} s/submission"),
        (f"2 workers ≥ {TARGET_SPEEDUP:g}× as fast as 1 (production path, whole-class wall time)",
         speedup >= TARGET_SPEEDUP,
         f"{speedup:.2f}× ({' + '.join(f'{w:.1f}' for w in one['walls'])} s → "
         f"{' + '.join(f'{w:.1f}' for w in two['walls'])} s; per round: "
         f"{', '.join(f'{r:.2f}×' for r in round_speedups)})"),
    ]
    print()
    for what, ok, detail in targets:
        print(f"  {'met   ' if ok else 'MISSED' if ok is not None else 'n/a   '} {what}: {detail}")
    print(f"  grades identical with 1 and 2 workers: {identical}"
          + (f" (differ: {', '.join(differing)})" if differing else ""))
    sh, sr = stage_table(s)
    print()
    common.print_table(sh, sr)

    total_points = {st: sum(sc.values()) for st, sc in one["scores"].items()}
    wall_cells, in_cells, slow = s["cells"]
    lines = [
        "# Benchmark: grading a class, seconds per submission",
        "",
        f"A course built in a temporary folder with the kit's Python API (`release`, `collect`, `grade`, "
        f"`feedback`, `autograder.judge.verify.verify`), graded on a generated class of **{n} submissions**: "
        + ("one per variant of `autograder.variants` (correct variants, every bug kind, the untouched release). "
           if n > len(QUICK_VARIANTS) else f"variants {', '.join(QUICK_VARIANTS)}. ")
        + "Each grade run covers the whole class; the runs follow each other on the same course, in the order "
        "of the table. " + ("**Quick smoke run: 4 submissions.**" if s["quick"] else ""),
        "",
        f"Measured: {s['version']} (released into the course at the start). Generated by "
        "`python -m benchmarks.grading` (or `make bench`).",
        "",
        "## Machine",
        "",
        *common.machine_lines(),
        f"- bubblewrap sandbox: {'available' if s['sandbox_ok'] else 'NOT available (sandboxed rows skipped)'}",
        f"- load average after the last run: {s['load_after']}",
        "",
        "## Seconds per submission",
        "",
        *common.table(headers, rows),
        "",
        "\"wall / n\" is throughput: the whole class's wall time (mean of the rounds), including grade()'s fixed costs (process "
        "pool start-up, merging each result into the gradebook), divided by the class size. The latency "
        "column is `Outcome.seconds`, measured inside the worker for one submission (scratch copy, "
        "nbgrader autograde in a kernel, and verification where on). The last column is the machine's load: "
        "cores kept busy by all processes during the run, and by other processes in a 2 s probe just before it.",
        "",
        "## Targets",
        "",
        *common.table(["target", "verdict", "measured"],
                      [[w, common.verdict(ok) if ok is not None else "n/a", d] for w, ok, d in targets]),
        "",
        f"Grades identical between the 1-worker and 2-worker production runs: **{'yes' if identical else 'NO'}**"
        + (f" (differ: {', '.join(differing)})" if differing else "") + ". "
        + (f"Kernel scores identical with the sandbox on and off: **{'yes' if kernel_same else 'NO'}**."
           if kernel_same is not None else ""),
        "",
        *analysis(s, one, two, per_sub_serial, speedup),
        "## Where one submission's time goes",
        "",
        f"`autograder.grading.job.grade_in_scratch` (what a worker runs) on `{s['profiled']}`, called in this process "
        f"under cProfile, median of {len(next(iter(s['stages'].values())))} runs each way (cumulative times of "
        "nbclient's setup_kernel, GradingExecute, SaveAutoGrades, nbgrader's autograde and verify):",
        "",
        *common.table(sh, sr),
        "",
        f"The same notebook run by plain nbclient, no nbgrader, no sandbox, `NBGRADER_EXECUTION` set: "
        f"{wall_cells:.2f} s in all, {in_cells:.2f} s inside cells. Slowest cells:",
        "",
        *common.table(["cell", "seconds"], [[f"`{gid}`", f"{t:.2f}"] for gid, t in slow]),
        "",
        "## The class and its points (production run, 1 worker)",
        "",
        *common.table(["student (variant)", "points"], [[st, f"{p:g}"] for st, p in sorted(total_points.items())]),
        "",
    ]
    common.write_report("grading", lines, s["quick"])
    fig, (ax1, ax2) = common.new_figure(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    labels = [r[0].replace("grade: ", "").replace(" (sandbox + verify)", "") for r in rows]
    values = [float(r[2]) for r in rows]
    ax1.barh(labels[::-1], values[::-1], color="tab:blue")
    ax1.axvline(TARGET_SECONDS, color="red", linestyle="--", linewidth=1, label=f"target {TARGET_SECONDS:g} s")
    ax1.set_xlabel("seconds per submission (wall / n)")
    ax1.tick_params(axis="y", labelsize=8)
    ax1.legend()
    ax1.grid(axis="x", alpha=0.3)
    data = [r["per_submission"] for r in s["runs"].values()] + ([s["t_verify"]] if s["t_verify"] else [])
    names = [label.replace(" (sandbox + verify)", "").replace("autograde, ", "") for label in s["runs"]] + \
        (["verify alone"] if s["t_verify"] else [])
    ax2.boxplot(data, orientation="horizontal", tick_labels=names)
    ax2.tick_params(axis="y", labelsize=8)
    ax2.set_xlabel("latency of one submission in its worker, s")
    ax2.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Grading {n} submissions: 2 workers {speedup:.2f}× faster than 1; grades identical: {identical}")
    common.save_figure(fig, "grading", s["quick"])
    return {**s, "targets": targets, "speedup": speedup, "identical": identical}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 submissions, results in results/quick/")
    run(parser.parse_args(argv).quick)


if __name__ == "__main__":
    main()
