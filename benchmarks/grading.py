"""Benchmark 3: seconds per submission through the instructor's pipeline, on a generated class.

A course is built in a temporary folder with the kit's Python API: release, collect a class of
generated submissions (one per variant of autograder.variants: correct code, every bug kind, and
the untouched release), then:

- grade it the production way (sandbox on; every grade re-verifies outside the kernel) with 1
  worker, then 2 workers, twice (the second round in reverse order, so that a drift in load falls
  on both alike); grades must be identical between all runs;
- one submission's job, in a fresh process like production, instrumented step by step
  (benchmarks/stages.py): wall and CPU (all processes of the job, from a cpuacct cgroup) of the
  process start-up, sandbox start, kernel start and imports, the notebook's own cells, nbgrader's
  bookkeeping and the re-verification (worker start, test cells); graded twice in that process, so
  that cold (what each job pays today) minus warm (a process that graded one already) is the cost of
  one process per submission;
- fixed costs measured alone: interpreter start and imports of a job and of a verification
  worker, copying the course;
- feedback for the whole class.

Targets: at most 3 s per submission with the sandbox; 2 workers at least 1.8x as fast as 1
(issue 12: at most 2 s with 1 worker).
Run: python -m benchmarks.grading [--quick]   (minutes; --quick grades 4 submissions)
"""
import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common, stages

TARGET_SECONDS = 2.0 + 1.0  # per submission, with the sandbox (issue 8)
TARGET_CHEAP = 2.0          # per submission, 1 worker (issue 12, item 5)
TARGET_SPEEDUP = 1.8
MIN_CLASS = 20
FORKSERVER_LABEL = "before issue 12.5: 1 worker, the forkserver preloads the job's module only (no prewarm)"
QUICK_VARIANTS = ("perfect", "loss_and_grad_per_row_loop", "dz_missing_1_over_n", "untouched")


def silent(*_args, **_kwargs):
    """An echo= that prints nothing."""


def class_notebooks(course, quick=False, size=None):
    """{student: notebook text} of a generated class.

    With autograder.variants: one submission per variant (correct code, every bug kind, the untouched
    release), repeated to at least MIN_CLASS students; quick: the 4 QUICK_VARIANTS. Without it (not
    importable): alternately the reference solution and the untouched release notebook.
    """
    import nbformat

    from autograder.testcells import read_notebook
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    limit = size
    size = len(QUICK_VARIANTS) if quick else size or MIN_CLASS
    try:
        from autograder.variants import VARIANTS, make_submission
    except ImportError:
        return {f"s{i:02d}-{'reference' if i % 2 == 0 else 'untouched'}":
                nbformat.writes(source_nb if i % 2 == 0 else release_nb) for i in range(size)}
    names = list(QUICK_VARIANTS) if quick else list(VARIANTS)
    chosen = [names[i % len(names)] for i in range(max(size, len(names)))][:limit or None]
    if "perfect" in names and "perfect" not in chosen:  # the profiled submission: the correct code
        chosen[-1] = "perfect"
    return {f"s{i:02d}-{name.replace('_', '-')}"[:60]:
            nbformat.writes(make_submission(release_nb, source_nb, VARIANTS[name])) for i, name in enumerate(chosen)}


def write_class(folder, notebooks):
    """One folder per student, as students hand them in."""
    for student, text in notebooks.items():
        (folder / student).mkdir(parents=True)
        (folder / student / "assignment.ipynb").write_text(text)


def stop_forkserver():
    """Stop the forkserver this process started, if any: the next grade() starts its own, as every
    `python -m autograder grade` does, so that each run pays its start-up (imports, prewarm)."""
    from multiprocessing import forkserver
    forkserver._forkserver._stop()  # noqa: SLF001 - no public way to stop it


@contextlib.contextmanager
def forkserver_jobs(prewarm=True):
    """Each grade run in a forkserver of its own. prewarm=False: the comparison, in this process
    only, with the forkserver as it was before issue 12 item 5 (the job's module preloaded alone,
    no autograder.grading.prewarm): jobs.start_forkserver is replaced while the block runs."""
    from autograder.grading import jobs

    stop_forkserver()
    saved = jobs.start_forkserver

    def job_module_only(module):
        import multiprocessing
        from multiprocessing import forkserver
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([module])
        forkserver.ensure_running()
        return ctx

    if not prewarm:
        jobs.start_forkserver = job_module_only
    try:
        yield
    finally:
        jobs.start_forkserver = saved
        if not prewarm:
            stop_forkserver()  # later runs must not inherit it


def grade_class(course, *, workers, sandbox, cpu_clock, before=False):
    """One grade() of the whole class (production path): wall s, CPU s of every process it started
    (cpu, from the cpuacct clock), per-submission s, scores {student: {cell: pts}}, failed, the
    cores other processes kept busy just before it (others_before, a 2 s probe) and the cores all
    processes, this run's included, kept busy during it (busy)."""
    from autograder.verbs.grade import grade
    before = common.probe_others()
    meter = common.CpuMeter()
    cpu0 = cpu_clock()
    with forkserver_jobs(prewarm=not before):
        seconds, outcomes = common.timed(grade, course, workers=workers, sandbox=sandbox, progress=False,
                                         echo=silent)
    cpu = cpu_clock() - cpu0
    usage = meter.stop()
    nan = float("nan")
    return {"wall": seconds, "cpu": cpu, "per_submission": [o.seconds for o in outcomes],
            "scores": {o.student: dict(o.scores) for o in outcomes},
            "failed": [o.student for o in outcomes if not o.ok], "n": len(outcomes),
            "others_before": nan if before is None else before, "busy": usage["busy"] if usage else nan}


def profile_stages(course, student, scratch, sandbox):
    """One profiled job (stages.profiled_job) run through autograder.grading.jobs like production:
    its cold and warm stage records, plus what the parent saw (wall from start to result)."""
    from autograder.grading import jobs
    from autograder.verbs.grade import BOOKKEEPING_SECONDS, submission_budget

    scratch.mkdir(parents=True)
    shutil.copy2(course.gradebook, scratch / "gradebook.db")
    budget = submission_budget(course)
    jobs.start_forkserver("autograder.grading.job")  # as grade's jobs are forked (a no-op if running)
    t_submit = time.time()
    work = [jobs.Job("profile", (t_submit, str(course.root), student, str(scratch), sandbox, None, budget))]
    [(_, result)] = list(jobs.run(stages.profiled_job, work, workers=1, seconds=2 * budget + BOOKKEEPING_SECONDS))
    t_received = time.time()
    if not isinstance(result, dict):
        raise RuntimeError(f"the profiled job failed: {result}")
    result["parent_wall"] = t_received - t_submit
    result["return_and_exit"] = t_received - result["t_return"]
    return result


def measure_one(course, students, root, sandbox_ok, quick):
    """The profiled jobs of the correct submission and the fixed costs: (profiles, costs, student)."""
    perfect = next((st for st in students if "perfect" in st or "reference" in st), students[0])
    profiles = []
    for i in range(1 if quick else 3):
        meter = common.CpuMeter()
        profiles.append(profile_stages(course, perfect, root / "profile" / str(i), sandbox_ok))
        usage = meter.stop()
        profiles[-1]["busy"] = usage["busy"] if usage else float("nan")
        print(f"  profiled job {i + 1} ({perfect}): cold {profiles[-1]['cold']['grade_in_scratch']:.2f} s, "
              f"warm {profiles[-1]['warm']['grade_in_scratch']:.2f} s in grade_in_scratch; "
              f"{profiles[-1]['parent_wall']:.2f} s seen by the parent", flush=True)
    costs = fixed_costs(course, 2 if quick else 5)
    return profiles, costs, perfect


def profile_again(quick):
    """Measure the profiled jobs and fixed costs again (on a course with the QUICK_VARIANTS) and
    write the report with them and the grade runs saved in grading.json."""
    import json

    from autograder.course import Course
    from autograder.sandbox.bwrap import bwrap_available
    from autograder.verbs.collect import collect
    from autograder.verbs.release import release

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    saved = json.loads((common.output_dir(quick) / "grading.json").read_text())
    root = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        course = Course(root / "course")
        release(course, echo=silent)
        write_class(root / "incoming", class_notebooks(course, quick=True))
        collect(root / "incoming", course, echo=silent)
        profiles, costs, perfect = measure_one(course, course.submitted_students(), root, bwrap_available(), quick)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    saved.update(profiles=profiles, costs=costs, profiled=perfect, load_after=common.load_average(),
                 profiled_separately=time.strftime("%H:%M UTC", time.gmtime()))
    return write(save_raw(saved))


def _timed_process(argv, env=None):
    """(wall s, CPU s of the process and its children) of one subprocess run to completion."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user + after.children_system) - (before.children_user + before.children_system)


def fixed_costs(course, reps):
    """{what: ([wall], [cpu])}: process start-ups and copies that every submission pays, alone."""
    py = sys.executable
    worker_env = {"PATH": os.defpath, "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1",
                  "OMP_NUM_THREADS": "1"}
    probes = {
        "python -c pass (interpreter start)": [py, "-c", "pass"],
        "job process imports: autograder.grading.job (nbgrader preprocessors, gradebook ORM, traitlets)":
            [py, "-c", "import autograder.grading.job"],
        "... + what its first autograde imports (nbgrader apps, nbconvert, nbclient, jupyter_client, zmq)":
            [py, "-c", "import autograder.grading.job, nbgrader.apps, nbgrader.converters, nbclient, "
                       "jupyter_client, zmq, autograder.grading.execute, autograder.sandbox.kernel"],
        "... the same with `rfc3987_syntax` made unimportable (jsonschema then skips its `iri` format check)":
            [py, "-c", "import sys; sys.modules['rfc3987_syntax'] = None; import autograder.grading.job, "
                       "nbgrader.apps, nbgrader.converters, nbclient, jupyter_client, zmq, "
                       "autograder.grading.execute, autograder.sandbox.kernel"],
        "`import rfc3987_syntax` alone (builds a Lark grammar at import; pulled in by nbformat → jsonschema)":
            [py, "-c", "import rfc3987_syntax"],
        "verification worker: python -I, import numpy": [py, "-I", "-c", "import numpy"],
        "verification worker: python -I, numpy + matplotlib.pyplot (the imports cell)":
            [py, "-I", "-c", "import numpy, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot"],
    }
    out = {}
    for _ in range(reps):
        for what, argv in probes.items():
            wall, cpu = _timed_process(argv, worker_env if "-I" in argv else None)
            out.setdefault(what, ([], []))[0].append(wall)
            out[what][1].append(cpu)
    key = f"copying the course's source/ ({_size_kb(course.source)} KB: notebook, helpers, data) into scratch"
    with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp:
        for i in range(reps):
            before = time.process_time()
            wall, _ = common.timed(shutil.copytree, course.source, Path(tmp) / f"source-{i}")
            out.setdefault(key, ([], []))[0].append(wall)
            out[key][1].append(time.process_time() - before)
    return out


def _size_kb(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) // 1024


def run(quick=False, students=None):
    students_limit = students
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
    load_before = common.load_average()
    cpu_clock = stages.CpuClock()  # this process and everything it starts (the jobs, their sandboxes)
    try:
        course = Course(root / "course")
        version = common.reference_version()
        t_release, _ = common.timed(release, course, echo=silent)
        notebooks = class_notebooks(course, quick, students)
        write_class(root / "incoming", notebooks)
        t_collect, _ = common.timed(collect, root / "incoming", course, echo=silent)
        students = course.submitted_students()
        print(f"grading: class of {len(students)} submissions; release {t_release:.1f} s, "
              f"collect {t_collect:.2f} s; sandbox {'available' if sandbox_ok else 'NOT available'}", flush=True)

        kind = "sandbox + verification" if sandbox_ok else "NO sandbox (bwrap missing) + verification"
        plan = [(f"production ({kind}), 1 worker", dict(workers=1, sandbox=sandbox_ok)),
                (f"production ({kind}), 2 workers", dict(workers=2, sandbox=sandbox_ok)),
                (FORKSERVER_LABEL, dict(workers=1, sandbox=sandbox_ok, before=True))]
        # Rounds in ABBA order (the second round reversed), so a drift in the machine's load over the
        # minutes this takes falls on both configurations alike.
        runs = {label: [] for label, _ in plan}
        for round_ in range(1 if quick else 2):
            for label, kwargs in (plan if round_ % 2 == 0 else plan[::-1]):
                r = grade_class(course, cpu_clock=cpu_clock, **kwargs)
                runs[label].append(r)
                print(f"  round {round_ + 1}, {label}: {r['wall']:.1f} s wall, {r['wall'] / r['n']:.2f} s per "
                      f"submission (others {r['others_before']:.2f} cores before; failed: {r['failed'] or 'none'})",
                      flush=True)

        profiles, costs, perfect = measure_one(course, students, root, sandbox_ok, quick)
        t_feedback, made = common.timed(feedback, course, echo=silent)
        print(f"  feedback: {t_feedback:.1f} s for {sum(1 for p in made.values() if p)} pages", flush=True)
        load_after = common.load_average()
    finally:
        cpu_clock.close()
        shutil.rmtree(root, ignore_errors=True)

    return write(save_raw(dict(quick=quick, n=len(students), limited=bool(students_limit),
                                runs=runs, t_release=t_release, t_collect=t_collect,
                      t_feedback=t_feedback, feedback_pages=sum(1 for p in made.values() if p),
                      sandbox_ok=sandbox_ok, load_before=load_before, load_after=load_after,
                      variants=list(notebooks), profiles=profiles, costs=costs, profiled=perfect,
                      version=version)))


def save_raw(s):
    """Keep the measurements (results/grading.json) so that the report can be written again from
    them: python -m benchmarks.grading --report-only."""
    import json
    (common.output_dir(s["quick"]) / "grading.json").write_text(json.dumps(s, indent=1, default=str))
    return s


def _med(xs):
    return common.summarize(xs)["median"] if xs else float("nan")


def stage_rows(profiles):
    """(grouped rows, fine rows): median over the profiled jobs of each part's exclusive wall and CPU,
    cold (first submission of a fresh process) and warm (second submission in the same process)."""
    grouped, fine = [], []
    totals = {run: [stages.group_totals(p[run]) for p in profiles] for run in ("cold", "warm")}
    for g in stages.GROUP_ORDER:
        cw, cc = (_med([t[g][i] for t in totals["cold"]]) for i in (0, 1))
        ww, wc = (_med([t[g][i] for t in totals["warm"]]) for i in (0, 1))
        grouped.append([g, f"{cw:.2f}", f"{cc:.2f}", f"{ww:.2f}", f"{wc:.2f}", f"{cw - ww:+.2f}"])
    sums = {run: [(sum(v[0] for v in t.values()), sum(v[1] for v in t.values())) for t in totals[run]]
            for run in totals}
    grouped.append(["**total**", *(f"**{_med([x[i] for x in sums[run]]):.2f}**" for run in ("cold", "warm")
                                   for i in (0, 1))][:5] + [""])
    labels = list(stages.GROUPS) + sorted({k for p in profiles for k in p["cold"]["wall"]} - set(stages.GROUPS))
    for label in labels:
        vals = []
        for run in ("cold", "warm"):
            for field in ("wall", "cpu"):
                vals.append(_med([p[run][field].get(label, 0.0) for p in profiles]))
        if max(vals) < 0.005:
            continue
        fine.append([label, stages.GROUPS.get(label, "?"), *(f"{v:.2f}" for v in vals)])
    return grouped, fine, sums


def slow_cells(profiles, top=6):
    cold = {}
    for p in profiles:
        for gid, t in p["cold"]["cells"]:
            cold.setdefault(gid, []).append(t)
    meds = sorted(((gid, _med(ts)) for gid, ts in cold.items()), key=lambda c: -c[1])
    return meds[:top], sum(t for _, t in meds)


def analysis(s, one, two, per_sub_serial, speedup, grouped_cold, grouped_warm, sums, fork):
    """Generated paragraphs: what bounds the figures, with the measured numbers."""
    lines = ["## What bounds the results", ""]
    runs = s["runs"]
    others = [o for r in runs.values() for o in r["others_before"]]
    busy = [b for r in runs.values() for b in r["busy"]]
    lines.append(f"- **The machine.** Load average {s['load_before']} (1/5/15 min) when the benchmark started, "
                 f"{s['load_after']} at the end, on 2 cores. Just before each grade run, other processes kept "
                 f"{min(others):.2f}–{max(others):.2f} of the 2 cores busy (2 s probes); during the runs all processes "
                 f"together, this benchmark's included, kept {min(busy):.2f}–{max(busy):.2f} cores busy. "
                 + ("The machine was quiet: the figures are the pipeline's own. " if max(others) < 0.2 else
                    "**The figures include that contention**: on a quiet machine they would be lower, the 2-worker "
                    "figure most of all (it needs both cores). ")
                 + "The two configurations were run in ABBA order so that a drift in load falls on both alike.")
    cold_total = _med([x[0] for x in sums["cold"]])
    warm_total = _med([x[0] for x in sums["warm"]])
    cold_cpu = _med([x[1] for x in sums["cold"]])
    top = sorted(grouped_cold.items(), key=lambda kv: -kv[1][0])
    lines.append(
        f"- **One submission** (profiled job, cold as in production): {cold_total:.2f} s wall, {cold_cpu:.2f} s CPU "
        "across all its processes. The largest parts: "
        + ", ".join(f"{g} {w:.2f} s ({c:.2f} s CPU)" for g, (w, c) in top[:4])
        + f". Graded again in the same process (warm) it takes {warm_total:.2f} s: the "
        f"{cold_total - warm_total:.2f} s difference is what a job forked from the forkserver still pays on its "
        "first submission (fork, first-use caches and whatever the forkserver did not preload).")
    lat1, lat2 = (common.summarize(r["per_submission"])["median"] for r in (one, two))
    rounds = len(one["walls"])
    work1, work2 = (sum(r["per_submission"]) / rounds for r in (one, two))
    serial = one["wall"] - work1
    lines.append(
        f"- **1 worker: {per_sub_serial:.2f} s per submission.** The job's own latency (`Outcome.seconds`, inside "
        f"grade_in_scratch) has median {lat1:.2f} s; the rest of the wall time ({serial:.1f} s per class, "
        f"{serial / one['n']:.2f} s per submission) is outside grade_in_scratch: spawning the job's process and its "
        "imports (which `Outcome.seconds` does not see), returning the result, and the parent's merge into the "
        "gradebook.")
    bound = one["wall"] / (work2 / 2 + serial) if work2 else float("nan")
    text = (f"- **2 workers: {two['wall'] / two['n']:.2f} s per submission, {speedup:.2f}× one** (per round "
            f"{', '.join(f'{a / b:.2f}×' for a, b in zip(one['walls'], two['walls']))}). With 2 workers each job "
            f"also took longer ({lat1:.2f} → {lat2:.2f} s median), because two jobs, their kernels and verification "
            "workers, the parent and everyone else's processes share 2 cores. If the part outside the jobs "
            "stayed serial, the best the "
            f"pool could do is {one['wall']:.1f} / ({work2:.1f} / 2 + {serial:.1f}) = {bound:.2f}×; but that part "
            "is mostly per-job process start-up, which does run in parallel.")
    lines.append(text)
    if fork:
        lines.append(
            f"- **Before and after issue 12 item 5, same session.** The same class with 1 worker and the "
            f"forkserver as it was before (the job's module preloaded alone, `rfc3987_syntax` imported): "
            f"{fork['wall'] / fork['n']:.2f} s and {fork['cpu'] / fork['n']:.2f} s CPU per submission; with "
            f"autograder.grading.prewarm: {per_sub_serial:.2f} s and {one['cpu'] / one['n']:.2f} s CPU "
            f"({(fork['wall'] / fork['n']) / per_sub_serial:.2f}× by wall, {fork['cpu'] / one['cpu']:.2f}× by CPU); "
            "grades identical: see above. Every grade run starts a forkserver of its own, as each `grade` command "
            "does, so its start-up is in these figures, shared by the class.")
    return lines + [""]


def suggestions(s, one, fork, profiles):
    """Cuts of fixed per-submission costs that change neither grades nor the sandbox, with the
    measured figures they rest on: the ones in place, and what is left."""
    def cost(prefix):
        hit = [v for k, v in s["costs"].items() if k.startswith(prefix)]
        return (_med(hit[0][0]), _med(hit[0][1])) if hit else (float("nan"), float("nan"))

    def step(label, run="cold", field="wall"):
        return _med([p[run][field].get(label, 0.0) for p in profiles])

    full, no_rfc = cost("... + what its first"), cost("... the same with `rfc3987")
    rfc = cost("`import rfc3987_syntax`")
    lines = ["## Cuts that keep grades and the sandbox as they are", "",
             "In place (1-4), then what is left (5):", ""]
    measured = (f" Measured above, same session: {fork['cpu'] / fork['n']:.2f} → {one['cpu'] / one['n']:.2f} s CPU "
                f"and {fork['wall'] / fork['n']:.2f} → {one['wall'] / one['n']:.2f} s wall per submission with 1 "
                "worker, grades identical.") if fork else ""
    lines.append(
        "1. **Jobs are forked from a forkserver that imported and warmed what every job needs** "
        "(`autograder/grading/jobs.py` preloads `autograder.grading.prewarm`, then the job's module): nbgrader, "
        "nbconvert/nbclient's execution machinery, the kernelspec lookup, numpy and matplotlib (the grader's own "
        "run of the imports cell in Reverify), and SQLAlchemy's mapping of the gradebook classes (on an in-memory "
        f"database that is closed again).{measured} Still one process per submission, killed by the parent at its "
        "budget; student code never runs in it (kernel and verification worker are exec'd in bubblewrap). The "
        "forkserver holds no open gradebook or file; numpy's BLAS pool is the one thread it starts (OpenBLAS "
        "shuts it down at fork).")
    lines.append(
        f"2. **`rfc3987_syntax` is kept out of the forkserver** (it builds a Lark grammar at import: {rfc[1]:.2f} s "
        f"CPU, {rfc[0]:.2f} s wall here; it comes in through nbgrader → nbformat → jsonschema's optional `iri` "
        "format checker, which nbformat never uses: it validates without a format checker). prewarm puts "
        "`None` in `sys.modules` for it before nbformat is imported, only in the forkserver: a job's imports "
        f"measured alone go from {full[1]:.2f} to {no_rfc[1]:.2f} s CPU ({full[0]:.2f} → {no_rfc[0]:.2f} s wall), "
        "paid once per grade run.")
    exit_s = _med([p["return_and_exit"] for p in profiles])
    lines.append(
        f"3. **The job skips its interpreter's teardown** (`os._exit(0)` once the result is sent, `jobs._child`): "
        f"{exit_s:.2f} s wall now pass between the job returning its result and the parent seeing it finished.")
    shut = step("kernel shutdown, jail close")
    lines.append(
        f"4. **The kernel is stopped at once after the last cell** (`GradingExecute.shutdown_kernel = "
        f"\"immediate\"`): kernel shutdown and jail close now take {shut:.2f} s wall "
        f"({step('kernel shutdown, jail close', field='cpu'):.2f} s CPU) per submission.")
    lines.append(
        f"5. **Left, measured but not worth much**: copying the course into scratch "
        f"{step('scratch copy of the course, notebook check'):.2f} s; the verification run directory "
        f"{step('verification: run dir (copy helpers, data, worker, font cache)'):.2f} s cold / "
        f"{step('verification: run dir (copy helpers, data, worker, font cache)', 'warm'):.2f} s warm (the cold "
        "figure was importing matplotlib to find its font cache, preloaded now); waiting for the verification worker "
        f"{step('verification: waiting for the worker (Python, numpy, imports, student code)'):.2f} s (it starts "
        "while the grader builds its namespace; it could start even earlier, alongside the kernel, which would "
        "shorten latency but not CPU). The kernel's start until ready "
        f"({step('kernel start until ready (Python, ipykernel)'):.2f} s) is the sandbox's price of a fresh "
        "kernel per submission and stays.")
    return lines + [""]


def merge_rounds(runs):
    """One configuration's rounds as one record: mean wall, walls, pooled latencies, per-round load."""
    return {"wall": sum(r["wall"] for r in runs) / len(runs), "walls": [r["wall"] for r in runs],
            "cpu": sum(r["cpu"] for r in runs) / len(runs),
            "per_submission": [t for r in runs for t in r["per_submission"]], "n": runs[0]["n"],
            "scores": runs[0]["scores"], "all_scores": [r["scores"] for r in runs],
            "busy": [r["busy"] for r in runs], "others_before": [r["others_before"] for r in runs]}


def write(s):
    """Print the tables and write grading.md / grading.png; returns s with the verdicts."""
    s = {**s, "rounds": s["runs"], "runs": {label: merge_rounds(rs) for label, rs in s["runs"].items()}}
    n = s["n"]
    headers = ["stage", "wall s (whole class; each round)", "s per submission (mean wall / n)",
               "CPU s per submission (all processes)", "per-submission latency in the job, median (IQR) [min–max]",
               "cores busy during the run (all processes) / others just before, each round"]
    rows = [["release (once per class)", f"{s['t_release']:.1f}", f"{s['t_release'] / n:.2f}", "-", "-", "-"],
            ["collect", f"{s['t_collect']:.2f}", f"{s['t_collect'] / n:.3f}", "-", "-", "-"]]
    for label, r in s["runs"].items():
        st = common.summarize(r["per_submission"])
        rows.append([f"grade: {label}", " + ".join(f"{w:.1f}" for w in r["walls"]), f"{r['wall'] / r['n']:.2f}",
                     f"{r['cpu'] / r['n']:.2f}",
                     f"{st['median']:.2f} ({st['q1']:.2f}–{st['q3']:.2f}) [{st['min']:.2f}–{st['max']:.2f}]",
                     ", ".join(f"{b:.2f} / {o:.2f}" for b, o in zip(r["busy"], r["others_before"]))])
    rows.append(["feedback (serial, nbgrader)", f"{s['t_feedback']:.1f}", f"{s['t_feedback'] / n:.2f}", "-", "-",
                 "-"])
    common.print_table(headers, rows)

    one, two = list(s["runs"].values())[:2]
    fork = s["runs"].get(FORKSERVER_LABEL)
    speedup = one["wall"] / two["wall"]
    round_speedups = [a / b for a, b in zip(one["walls"], two["walls"])]
    all_scores = [sc for r in s["runs"].values() for sc in r["all_scores"]]
    identical = all(sc == all_scores[0] for sc in all_scores)
    differing = sorted(st for st in all_scores[0] if any(sc.get(st) != all_scores[0][st] for sc in all_scores))
    failed = sorted({st for r in s["rounds"].values() for x in r for st in x["failed"]})
    per_sub_serial = one["wall"] / one["n"]
    per_sub_parallel = two["wall"] / two["n"]
    ok = s["sandbox_ok"]
    targets = [
        (f"≤ {TARGET_SECONDS:g} s per submission, production path (sandbox + verification), 1 worker "
         "(issue 8; whole-class wall / n)", per_sub_serial <= TARGET_SECONDS if ok else None,
         f"{per_sub_serial:.2f} s/submission"),
        (f"≤ {TARGET_SECONDS:g} s per submission, production path, 2 workers (grade's default on 2 cores)",
         per_sub_parallel <= TARGET_SECONDS if ok else None, f"{per_sub_parallel:.2f} s/submission"),
        (f"2 workers ≥ {TARGET_SPEEDUP:g}× as fast as 1 (production path, whole-class wall time)",
         speedup >= TARGET_SPEEDUP,
         f"{speedup:.2f}× ({' + '.join(f'{w:.1f}' for w in one['walls'])} s → "
         f"{' + '.join(f'{w:.1f}' for w in two['walls'])} s; per round: "
         f"{', '.join(f'{r:.2f}×' for r in round_speedups)})"),
        (f"≤ {TARGET_CHEAP:g} s per submission, 1 worker (issue 12, item 5: a cheaper submission)",
         per_sub_serial <= TARGET_CHEAP if ok else None, f"{per_sub_serial:.2f} s/submission"),
    ]
    print()
    for what, verdict_ok, detail in targets:
        print(f"  {'met   ' if verdict_ok else 'MISSED' if verdict_ok is not None else 'n/a   '} {what}: {detail}")
    print(f"  grades identical in every run (1 worker, 2 workers, forkserver experiment): {identical}"
          + (f" (differ: {', '.join(differing)})" if differing else "") + f"; not graded: {failed or 'none'}")

    profiles = s["profiles"]
    grouped, fine, sums = stage_rows(profiles)
    g_headers = ["part of one submission (profiled job)", "cold: wall s", "cold: CPU s", "warm: wall s",
                 "warm: CPU s", "cold − warm, wall s"]
    f_headers = ["step (exclusive time)", "part", "cold: wall s", "cold: CPU s", "warm: wall s", "warm: CPU s"]
    print()
    common.print_table(g_headers, grouped)
    print()
    common.print_table(f_headers, fine)
    grouped_cold = {g: (_med([stages.group_totals(p["cold"])[g][0] for p in profiles]),
                        _med([stages.group_totals(p["cold"])[g][1] for p in profiles])) for g in stages.GROUP_ORDER}
    grouped_warm = {g: (_med([stages.group_totals(p["warm"])[g][0] for p in profiles]),
                        _med([stages.group_totals(p["warm"])[g][1] for p in profiles])) for g in stages.GROUP_ORDER}
    cells, in_cells = slow_cells(profiles)
    c_headers = ["fixed cost, measured alone", "wall s, median (min–max)", "CPU s, median"]
    c_rows = [[what, common.fmt(common.summarize(w), digits=2), f"{_med(c):.2f}"]
              for what, (w, c) in s["costs"].items()]
    print()
    common.print_table(c_headers, c_rows)
    parent = [p["parent_wall"] for p in profiles]
    ret = [p["return_and_exit"] for p in profiles]

    total_points = {st: sum(sc.values()) for st, sc in one["scores"].items()}
    lines = [
        "# Benchmark: grading a class, seconds per submission",
        "",
        f"A course built in a temporary folder with the kit's Python API (`release`, `collect`, `grade`, "
        f"`feedback`), graded on a generated class of **{n} submissions**: "
        + ("one per variant of `autograder.variants` (correct variants, every bug kind, the untouched release). "
           if not s.get("limited") else
           f"the first {n} variants of `autograder.variants` (`--students {n}`): "
           f"{', '.join(f'`{v}`' for v in s['variants'])}. ")
        + "Every grade is the production path: nbgrader's autograde with the course's pipeline (sandboxed kernel "
        "running the notebook without hidden tests, then `Reverify`: the grader runs every test cell outside the "
        "kernel against a sandboxed worker, with per-submission seeds), one child process per submission. "
        + ("**Quick smoke run: 4 submissions, one round, one profiled job.**" if s["quick"] else ""),
        "",
        f"Measured: {s['version']} (released into the course at the start). Generated by "
        "`python -m benchmarks.grading` (or `make bench`).",
        "",
        "## Machine",
        "",
        *common.machine_lines(),
        f"- bubblewrap sandbox: {'available' if ok else 'NOT available (graded without the sandbox)'}",
        f"- load average (1/5/15 min) when the benchmark started: {s['load_before']}; after the last run: "
        f"{s['load_after']}",
        f"- CPU of the profiled job read from: {profiles[0]['cpu_clock']}",
        "",
        "## Seconds per submission",
        "",
        *common.table(headers, rows),
        "",
        "\"wall / n\" is throughput: the whole class's wall time (mean of the rounds), including grade()'s own costs "
        "(spawning one process per submission, merging each result into the gradebook), divided by the class "
        "size. The latency column is `Outcome.seconds`, measured inside the job from the start of "
        "`grade_in_scratch` (so without the job process's start-up and imports). The last column is the "
        "machine's load: cores kept busy by all processes during the run, and by other processes in a 2 s "
        "probe just before it.",
        "",
        "## Targets",
        "",
        *common.table(["target", "verdict", "measured"],
                      [[w, common.verdict(v) if v is not None else "n/a", d] for w, v, d in targets]),
        "",
        f"Grades identical between every run (1 worker, 2 workers, the run before issue 12.5): "
        f"**{'yes' if identical else 'NO'}**"
        + (f" (differ: {', '.join(differing)})" if differing else "")
        + f". Submissions not graded in some run: {', '.join(failed) if failed else 'none'}.",
        "",
        *analysis(s, one, two, per_sub_serial, speedup, grouped_cold, grouped_warm, sums, fork),
        "## Where one submission's time goes",
        "",
        f"`{s['profiled']}` graded by `benchmarks.stages.profiled_job` run through `autograder.grading.jobs` (a "
        "spawned child process, as in production), which wraps the pipeline's steps with timestamps and reads the "
        "CPU of all the job's processes (grader, sandboxed kernel, sandboxed verification worker) from a cpuacct "
        "cgroup at each step boundary. Times are exclusive (a step nested in another counts only in the inner "
        f"one). **cold**: the first submission the process grades (what every job pays today); **warm**: the "
        f"same submission graded again in that process. Median of {len(profiles)} job(s)"
        + (f", measured in a separate run (`--profile-again`, finished {s['profiled_separately']}) on a course with "
           f"the same release, after the grade runs above" if s.get("profiled_separately") else "")
        + ". CPU above wall means "
        "processes ran in parallel (the verification worker loads while the grader builds its namespace; kernel "
        "threads).",
        "",
        *common.table(g_headers, grouped),
        "",
        f"Seen from the parent, the profiled job took {_med(parent):.2f} s from spawn to result "
        f"(both runs, cold and warm), of which {_med(ret):.2f} s after the job returned (pickling the result, "
        "process exit).",
        "",
        "Step by step:",
        "",
        *common.table(f_headers, fine),
        "",
        f"The notebook's code cells in the kernel (cold run): {in_cells:.2f} s in all; slowest:",
        "",
        *common.table(["cell", "seconds"], [[f"`{gid}`", f"{t:.2f}"] for gid, t in cells]),
        "",
        *suggestions(s, one, fork, profiles),
        "## Fixed costs per submission, measured alone",
        "",
        "Each a separate process or copy, repeated; the verification worker's rows use its environment "
        "(`python -I`, one BLAS thread) but no sandbox.",
        "",
        *common.table(c_headers, c_rows),
        "",
        "## The class and its points (production run, 1 worker)",
        "",
        *common.table(["student (variant)", "points"], [[st, f"{p:g}"] for st, p in sorted(total_points.items())]),
        "",
    ]
    common.write_report("grading", lines, s["quick"])

    fig, (ax1, ax2) = common.new_figure(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    labels = [r[0].replace("grade: ", "").replace(" (sandbox + verification)", "")
              .replace(FORKSERVER_LABEL, "forkserver experiment, 1 worker") for r in rows]
    values = [float(r[2]) for r in rows]
    ax1.barh(labels[::-1], values[::-1], color="tab:blue")
    ax1.axvline(TARGET_SECONDS, color="red", linestyle="--", linewidth=1, label=f"target {TARGET_SECONDS:g} s")
    ax1.axvline(TARGET_CHEAP, color="orange", linestyle=":", linewidth=1, label=f"issue 12: {TARGET_CHEAP:g} s")
    ax1.set_xlabel("seconds per submission (wall / n)")
    ax1.tick_params(axis="y", labelsize=8)
    ax1.legend()
    ax1.grid(axis="x", alpha=0.3)
    left = {"cold": 0.0, "warm": 0.0}
    colors = ["tab:gray", "tab:purple", "tab:blue", "tab:green", "tab:orange", "tab:red", "tab:brown"]
    for g, color in zip(stages.GROUP_ORDER, colors):
        widths = [grouped_cold[g][0], grouped_warm[g][0]]
        ax2.barh(["cold (production)", "warm"], widths, left=[left["cold"], left["warm"]], color=color, label=g)
        left = {"cold": left["cold"] + widths[0], "warm": left["warm"] + widths[1]}
    ax2.set_xlabel("wall s of one submission's job, by part")
    ax2.legend(fontsize=7, loc="upper right")
    ax2.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Grading {n} submissions: {per_sub_serial:.2f} s (1 worker), {per_sub_parallel:.2f} s (2 workers) "
                 f"per submission, {speedup:.2f}×; grades identical: {identical}")
    common.save_figure(fig, "grading", s["quick"])
    return {**s, "targets": targets, "speedup": speedup, "identical": identical}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 submissions, results in results/quick/")
    parser.add_argument("--students", type=int, help="grade only the first N generated submissions "
                        "(default: one per variant, at least 20)")
    parser.add_argument("--report-only", action="store_true",
                        help="write grading.md/.png again from the saved grading.json, measuring nothing")
    parser.add_argument("--profile-again", action="store_true",
                        help="measure only the profiled job and the fixed costs again, keep the saved grade runs")
    args = parser.parse_args(argv)
    if args.profile_again:
        profile_again(args.quick)
    elif args.report_only:
        import json
        write(json.loads((common.output_dir(args.quick) / "grading.json").read_text()))
    else:
        run(args.quick, args.students)


if __name__ == "__main__":
    main()
