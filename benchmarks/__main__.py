"""python -m benchmarks [--quick] [--only NAME ...]: run the benchmarks, write benchmarks/results/.

training       one epoch of the 784-128-10 network: numpy f64/f32, per-row loop, PyTorch
hidden_checks  the test cells of one submission, in-process
grading        seconds per submission through release, grade (production path, 1/2 workers), feedback;
               one submission's job stage by stage (stages.py)
cluster        the Dask path against the local pool at the same cores; 10,000-submission projection
gradebook_db   merge, snapshot and read-back on SQLite and PostgreSQL (a throwaway server)
similarity     the similarity report on a synthetic class of 200 (40 with --quick), planted copies first

--quick is a smoke run (few repetitions, 4 submissions); its results go to benchmarks/results/quick/,
which git ignores, so the committed full results stay as they are.
"""
import argparse
import time

NAMES = ("training", "hidden_checks", "grading", "cluster", "gradebook_db", "similarity")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few repetitions, 4 submissions")
    parser.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}")
    args = parser.parse_args(argv)
    from benchmarks import cluster, common, gradebook_db, grading, hidden_checks, similarity, training
    runs = {"training": training.run, "hidden_checks": hidden_checks.run, "grading": grading.run,
            "cluster": cluster.run, "gradebook_db": gradebook_db.run,
            "similarity": lambda quick: similarity.run(40 if quick else 200, quick=quick)}
    for name in args.only or NAMES:
        print(f"\n=== {name}{' (quick)' if args.quick else ''}", flush=True)
        start = time.perf_counter()
        runs[name](quick=args.quick)
        print(f"=== {name}: {time.perf_counter() - start:.0f} s; report in "
              f"{common.output_dir(args.quick) / (name + '.md')}", flush=True)


if __name__ == "__main__":  # the guard matters: grading's worker processes re-import this module
    main()
