"""python -m autograder VERB [--course DIR]: one verb per instructor task."""
import argparse
import os
import sys
from pathlib import Path

from autograder.course import Course, CourseError


def _default(trait):
    """A limit's default, from the one place it is set (GradingExecute's traits)."""
    from autograder.grading.execute import GradingExecute
    return GradingExecute.class_traits()[trait].default_value


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--course", metavar="DIR", default=argparse.SUPPRESS,
                        help="the nbgrader course directory (default: course/ beside the kit)")
    parser = argparse.ArgumentParser(prog="python -m autograder", parents=[common],
                                     description="Release, collect, grade and report the backprop assignment.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("release", parents=[common], help="build the course and the student version")
    p.add_argument("--cell-timeout", type=int, default=None, metavar="S",
                   help=f"seconds per cell (default {_default('timeout')})")
    p.add_argument("--submission-timeout", type=int, default=None, metavar="S",
                   help=f"seconds per submission, all cells (default {_default('submission_timeout')})")

    p = verbs.add_parser("collect", parents=[common], help="ingest submissions: a folder or an LMS zip")
    p.add_argument("path", help="folder of per-student folders or files, or a .zip of either")
    p.add_argument("--pattern", default=None, metavar="REGEX",
                   help="regex with a (?P<student_id>...) group, matched on file names of flat downloads")

    p = verbs.add_parser("grade", parents=[common], help="autograde (all, or --student), sandboxed")
    p.add_argument("--student", action="append", metavar="ID", help="grade only this student (repeatable)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="parallel graders (default: cores)")
    p.add_argument("--no-sandbox", action="store_true", help="run student code without bubblewrap (trusted code only)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="course-wide seed mixed into each submission's hidden inputs; change it per term "
                        "(default: $BACKPROP_GRADER_SEED or 0)")

    p = verbs.add_parser("feedback", parents=[common], help="per-student HTML feedback, hidden tests removed")
    p.add_argument("--student", action="append", metavar="ID")

    verbs.add_parser("export", parents=[common], help="grades.csv and grades.json")
    verbs.add_parser("report", parents=[common], help="grade histogram, per-test pass rates, text table")
    verbs.add_parser("demo", parents=[common], help="the whole workflow on a bundled sample class")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    # nbgrader shells out to `alembic`, which lives beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    course = Course(getattr(args, "course", None))
    try:
        if args.verb == "release":
            from autograder.verbs.release import release
            release(course, cell_timeout=args.cell_timeout, submission_timeout=args.submission_timeout)
        elif args.verb == "collect":
            from autograder.verbs.collect import DEFAULT_PATTERN, collect
            collect(args.path, course, pattern=args.pattern or DEFAULT_PATTERN)
        elif args.verb == "grade":
            from autograder.verbs.grade import grade
            outcomes = grade(course, args.student, workers=args.workers, sandbox=not args.no_sandbox,
                             seed=args.seed)
            failed = [o.student for o in outcomes if not o.ok]
            print(f"graded {len(outcomes) - len(failed)} of {len(outcomes)} submissions"
                  + (f"; not graded: {', '.join(failed)}" if failed else ""))
        elif args.verb == "feedback":
            from autograder.verbs.feedback import feedback
            feedback(course, args.student)
        elif args.verb == "export":
            from autograder.verbs.export import export
            export(course)
        elif args.verb == "report":
            from autograder.verbs.report import report
            report(course)
        elif args.verb == "demo":
            from autograder.samples.demo import demo
            demo(course)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
