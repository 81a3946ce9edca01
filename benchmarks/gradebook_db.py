"""The gradebook on SQLite and on PostgreSQL: what the database costs the kit's own steps.

For a class of N students (synthetic outcomes: every test cell at full points, written answers
waiting for a TA; no grading), on each database: merging one student's outcome (grade's one
writer, rows re-read under a row lock), the SQLite snapshot every grading job grades against
(gradebook_snapshot), and reading the whole class back (results.collect_grades: export, report).
PostgreSQL runs as a throwaway local server on a Unix socket (tests/postgres_server.py), so the
figures leave out a network's round trips.

python -m benchmarks.gradebook_db [--quick]
"""
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, cpu_model, fmt, load_average, output_dir, summarize, table

CLASS_SIZE = {True: 8, False: 40}
quiet = lambda *args, **kwargs: None  # noqa: E731


def _server_module():
    spec = importlib.util.spec_from_file_location("postgres_server", REPO / "tests" / "postgres_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outcomes(course, students):
    from autograder.grading.job import Outcome
    from autograder.results import graded_cells
    from autograder.testcells import read_notebook

    cells = graded_cells(read_notebook(course.notebook(course.source)))
    grades = {gid: (points, False) if kind == "auto" else (None, True) for gid, points, kind in cells}
    notebook = course.notebook(course.release).read_bytes()
    return [Outcome(s, True, "benchmark", grades=grades, notebook=notebook) for s in students]


def measure(course, students):
    """{step: summarize()} of one database's course."""
    from autograder.gradebook_db import gradebook_snapshot
    from autograder.grading.merge import merge
    from autograder.results import collect_grades

    merges = []
    for outcome in _outcomes(course, students):
        start = time.perf_counter()
        merge(course, outcome)
        merges.append(time.perf_counter() - start)
    snapshots, reads = [], []
    for _ in range(5):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            gradebook_snapshot(course, Path(folder) / "gradebook.db")
            snapshots.append(time.perf_counter() - start)
        start = time.perf_counter()
        collect_grades(course)
        reads.append(time.perf_counter() - start)
    return {"merge one student": summarize(merges), "snapshot for the jobs": summarize(snapshots),
            "read the class (export/report)": summarize(reads)}


def run(quick=False):
    from autograder.course import Course
    from autograder.verbs.release import release

    server_module = _server_module()
    bin_dir = server_module.postgres_bin_dir()
    if bin_dir is None:
        print("PostgreSQL is not installed (make postgres-deps): nothing measured")
        return
    n = CLASS_SIZE[quick]
    students = [f"student{i:03d}" for i in range(n)]
    base = Path(tempfile.mkdtemp(prefix="bench-gradebook-"))
    server = server_module.PostgresServer(bin_dir).start()
    try:
        results = {}
        for name, url in (("SQLite", None), ("PostgreSQL", server.url("bench"))):
            course = Course(base / name)
            release(course, db_url=url, echo=quiet)
            results[name] = measure(course, students)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    steps = list(results["SQLite"])
    rows = [[step] + [fmt(results[db][step], 1000) for db in results] for step in steps]
    lines = ["# Gradebook database: SQLite vs PostgreSQL", "",
             f"A class of {n} students, synthetic outcomes (no grading); milliseconds, median (min–max); "
             f"merge: one per student, the rest 5 times. PostgreSQL {bin_dir.parent.name} local, Unix socket, "
             "fsync off (a test server).", "",
             *table(["step", "SQLite ms", "PostgreSQL ms"], rows), "",
             f"Machine: {cpu_model()}, load average {load_average()} at the end (a shared machine).", ""]
    out = output_dir(quick)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradebook_db.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    run(quick="--quick" in sys.argv[1:])
