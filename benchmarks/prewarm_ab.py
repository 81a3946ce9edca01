"""Issue 12 item 5: CPU per submission with and without autograder.grading.prewarm, side by side.

A quick course (the 4 QUICK_VARIANTS) is graded with 1 worker, alternately (ABBA) with the jobs'
forkserver preloading the job's module alone (as before) and prewarm first (as now). Each run starts
its forkserver and waits until its preload is done, so the figures are the jobs' own steady-state
cost; the forkserver's start-up is paid once per grade run and measured by benchmarks.grading's
fixed costs. CPU is every process's (grader, forkserver, jobs, sandboxes) from a cpuacct cgroup.
Run: python -m benchmarks.prewarm_ab [ROUNDS]   (prints one line per run and the means)
"""
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import forkserver
from pathlib import Path

from benchmarks import stages
from benchmarks.grading import class_notebooks, silent, stop_forkserver, write_class

VARIANTS = {"before (job module only)": lambda module: [module],
            "prewarm": lambda module: ["autograder.grading.prewarm", module]}


def _forkserver_with(preload):
    def start(module):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(preload(module))
        forkserver.ensure_running()
        return ctx
    return start


def main(rounds=4):
    from autograder.course import Course
    from autograder.grading import jobs
    from autograder.verbs.collect import collect
    from autograder.verbs.grade import grade
    from autograder.verbs.release import release

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    root = Path(tempfile.mkdtemp(prefix="bench-prewarm-"))
    clock = stages.CpuClock()
    saved = jobs.start_forkserver
    runs = {name: [] for name in VARIANTS}
    try:
        course = Course(root / "course")
        release(course, echo=silent)
        write_class(root / "incoming", class_notebooks(course, quick=True))
        collect(root / "incoming", course, echo=silent)
        names = list(VARIANTS)
        for round_ in range(rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                stop_forkserver()
                jobs.start_forkserver = _forkserver_with(VARIANTS[name])
                jobs.start_forkserver("autograder.grading.job")
                time.sleep(4)  # its preload done: what follows is the jobs' own cost
                cpu0, wall0 = clock(), time.monotonic()
                outcomes = grade(course, workers=1, sandbox=True, progress=False, echo=silent)
                cpu, wall, n = clock() - cpu0, time.monotonic() - wall0, len(outcomes)
                points = sorted((o.student, sum(o.scores.values())) for o in outcomes)
                runs[name].append((wall / n, cpu / n, points))
                print(f"{name}: {wall / n:.2f} s wall, {cpu / n:.2f} s CPU per submission; {points}", flush=True)
    finally:
        jobs.start_forkserver = saved
        stop_forkserver()
        clock.close()
        shutil.rmtree(root, ignore_errors=True)
    for name, rows in runs.items():
        print(f"mean {name}: {sum(r[0] for r in rows) / len(rows):.2f} s wall, "
              f"{sum(r[1] for r in rows) / len(rows):.2f} s CPU per submission")
    print("grades identical:", len({str(r[2]) for rows in runs.values() for r in rows}) == 1)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
