"""python -m autograder VERB [--course DIR] [--assignment NAME]: one verb per instructor task.

Each verb is a module with HELP, add_arguments(parser) and run(course, args); VERBS lists them
in the order of a term.
"""
import argparse
import importlib
import os
import sys
from pathlib import Path

from autograder.course import ASSIGNMENT, Course, CourseError

VERBS = {  # verb -> its module
    "release": "autograder.verbs.release",
    "deadline": "autograder.verbs.deadline",
    "roster": "autograder.verbs.roster",
    "collect": "autograder.verbs.collect",
    "grade": "autograder.verbs.grade",
    "feedback": "autograder.verbs.feedback",
    "export": "autograder.verbs.export",
    "report": "autograder.verbs.report",
    "similarity": "autograder.verbs.similarity",
    "demo": "autograder.samples.demo",
}


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--course", metavar="DIR", default=argparse.SUPPRESS,
                        help="the nbgrader course directory (default: course/ beside the kit)")
    common.add_argument("--assignment", metavar="NAME", default=argparse.SUPPRESS,
                        help=f"which of the course's assignments (default: {ASSIGNMENT})")
    parser = argparse.ArgumentParser(prog="python -m autograder", parents=[common],
                                     description="Release, collect, grade and report a course's assignments.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, module_name in VERBS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(verbs.add_parser(verb, parents=[common], help=module.HELP))
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    # nbgrader shells out to `alembic`, which lives beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        course = Course(getattr(args, "course", None), getattr(args, "assignment", None))
        return importlib.import_module(VERBS[args.verb]).run(course, args) or 0
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
