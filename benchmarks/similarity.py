"""python -m benchmarks.similarity [--students N] [--quick]: what `python -m autograder similarity`
costs for a class of N synthetic students (default 200), stage by stage, and whether three planted
disguised copies still come out on top.

A synthetic student: each solution cell is the reference or one of the catalogue's versions of that
cell (autograder/variants.py), drawn at random, plus a few lines of their own (random constants:
numbers survive the normalisation, so every student has distinctive code, as real students do).
Three students copy a classmate with every local renamed and the layout changed.
"""
import argparse
import random
import re
import tempfile
import time
from pathlib import Path

import nbformat

from benchmarks import common

COPIES = 3


def cell_pool(source_nb):
    """{grade_id: [versions]}: the reference and every catalogue variant's version of each cell."""
    from autograder.testcells import reference_solutions
    from autograder.variants import VARIANTS

    reference = reference_solutions(source_nb)
    pool = {gid: [code] for gid, code in reference.items()}
    for variant in VARIANTS.values():
        if variant.name != "untouched":
            for gid, code in variant.code.items():
                if code not in pool[gid]:
                    pool[gid].append(code)
    return pool


def own_lines(rng, gid):
    """A few top-level lines only this student wrote."""
    return "".join(f"\n_{gid}_{j} = {rng.randrange(10**6)} * {rng.random():.4f} + {rng.randrange(1000)}"
                   for j in range(rng.randrange(2, 5)))


def disguised(code, rng):
    """Every identifier of `code` (not keywords, not in strings) renamed, spacing changed, comments added."""
    import keyword
    names = sorted({n for n in re.findall(r"(?<![\"'.\w])[A-Za-z_]\w*(?![\"'\w])", code) if not keyword.iskeyword(n)
                    and n not in {"np", "def", "range", "len", "float", "int", "print", "True", "False", "None"}})
    for name in names:
        code = re.sub(rf"(?<![\"'.\w]){name}(?![\"'\w(])", f"{name}_{rng.randrange(100)}x", code)
    return "# my work\n" + code.replace(" = ", "=").replace(", ", ",")


def synthetic_class(release_nb, source_nb, n, seed=0):
    """{student: notebook} of n students, the last COPIES of them disguised copies of the first ones."""
    rng = random.Random(seed)
    pool = cell_pool(source_nb)
    students = {}
    for i in range(n - COPIES):
        codes = {gid: rng.choice(versions) + own_lines(rng, gid) for gid, versions in pool.items()}
        students[f"s{i:04d}"] = codes
    for k in range(COPIES):
        students[f"copy_of_s{k:04d}"] = {gid: disguised(code, rng) for gid, code in students[f"s{k:04d}"].items()}
    notebooks = {}
    for student, codes in students.items():
        nb = nbformat.from_dict(release_nb)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.cell_type == "code" and gid in codes:
                cell.source = codes[gid]
        notebooks[student] = nb
    return notebooks


def run(n, quick=False):
    from autograder.course import Course
    from autograder.term import similarity as sim
    from autograder.testcells import read_notebook
    from autograder.verbs.release import release
    from autograder.verbs.similarity import similarity

    with tempfile.TemporaryDirectory() as tmp:
        course = Course(Path(tmp) / "course")
        release(course, echo=lambda *_: None)
        source_nb = read_notebook(course.notebook(course.source))
        release_nb = read_notebook(course.notebook(course.release))
        for student, nb in synthetic_class(release_nb, source_nb, n).items():
            course.submitted(student).mkdir(parents=True)
            nbformat.write(nb, str(course.notebook(course.submitted(student))))

        stages = {}  # name -> (wall s, CPU s): the machine is shared, CPU seconds are the figure to read
        wall, cpu = time.perf_counter(), time.process_time()
        *stages["read notebooks"], (release_cells, codes) = common.timed_cpu(sim.read_class, course,
                                                                              echo=lambda *_: None)
        *stages["fingerprint (tokenize once, drop release text and class-wide code)"], fps = common.timed_cpu(
            sim.distinctive_fingerprints, codes, release_cells)
        *stages["find candidate pairs"], candidates = common.timed_cpu(sim.candidate_pairs, fps)
        *stages["compare candidate pairs (copydetect compare_files)"], pairs = common.timed_cpu(sim.score_pairs, fps)
        stages["stages above, total"] = (time.perf_counter() - wall, time.process_time() - cpu)
        *stages["whole verb (the above + heatmap + page)"], _ = common.timed_cpu(similarity, course,
                                                                                  echo=lambda *_: None)
        page = course.root / "reports" / course.assignment / "similarity.html"
        page_kb = page.stat().st_size / 1024

    planted = {frozenset({f"s{k:04d}", f"copy_of_s{k:04d}"}) for k in range(COPIES)}
    top = [frozenset({p.a, p.b}) for p in pairs[:COPIES]]
    total_pairs = n * (n - 1) // 2
    lines = [f"# Similarity report cost: {n} synthetic students", "",
             f"Measured with `python -m benchmarks.similarity --students {n}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
             *common.machine_lines(), "",
             "| stage | wall s | CPU s |", "|---|---|---|",
             *[f"| {name} | {w:.2f} | {c:.2f} |" for name, (w, c) in stages.items()], "",
             f"- pairs in the class: {total_pairs}; sharing a distinctive fingerprint (compared): {len(candidates)}; "
             f"listed (at least {sim.MIN_OVERLAP} shared normalised characters): {len(pairs)}",
             f"- students with code of their own after the filters: {len(fps)} of {len(codes)}",
             f"- the {COPIES} planted disguised copies are the top {COPIES} pairs: {set(top) == planted} "
             f"(scores {', '.join(f'{p.score:.2f}' for p in pairs[:COPIES])}; next: "
             f"{pairs[COPIES].score if len(pairs) > COPIES else 0:.2f})",
             f"- page size: {page_kb:.0f} KB (top 10 pairs and the heatmap)"]
    path = common.write_report("similarity", lines, quick=quick)
    print("\n".join(lines))
    print(f"\nreport: {path}")
    return set(top) == planted


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.similarity", description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=None, help="class size (default 200; --quick: 40)")
    parser.add_argument("--quick", action="store_true", help="smoke run with 40 students")
    args = parser.parse_args(argv)
    n = args.students or (40 if args.quick else 200)
    return 0 if run(n, quick=args.quick) else 1


if __name__ == "__main__":
    raise SystemExit(main())
