"""`release`: build the course directory and the student version of the assignment."""
from pathlib import Path

from autograder.course import Course, CourseError, copy_sources, failure_line, open_api, write_config
from autograder.gradebook_db import check_db_url, configured_db_url
from autograder.seeds import ensure_secret
from autograder.term import local_exchange
from autograder.testcells import convention_problems, read_notebook


def release(course=None, *, from_dir=None, cell_timeout=None, submission_timeout=None, db_url=None, echo=print):
    """Write nbgrader_config.py, fill source/<assignment>/ (the kit's own, or `from_dir`), run
    generate_assignment.

    `db_url` puts the gradebook in that database (checked first); None keeps the course's (a
    release without --db never moves a course off its database).
    Returns the release folder (what students receive).
    """
    course = course or Course()
    check_conventions(course, from_dir)
    db_url = check_db_url(db_url) if db_url else configured_db_url(course.load_config())
    write_config(course, cell_timeout=cell_timeout, submission_timeout=submission_timeout, db_url=db_url)
    local_exchange.configure(course)  # formgrader's "released" needs an exchange (local_exchange.py)
    ensure_secret(course.root)  # seeds every submission's hidden inputs; stays in the course root
    copy_sources(course, from_dir)
    result = open_api(course).generate_assignment(course.assignment)
    if not result["success"]:
        raise CourseError(f"generate_assignment failed: {failure_line(result)}")
    local_exchange.publish(course)
    echo(f"Released '{course.assignment}'. Give students this folder: {course.release}")
    return course.release


def check_conventions(course, from_dir=None):
    """Refuse, before anything is written, an assignment notebook the grader could not grade: one
    line naming its first problem (testcells.convention_problems)."""
    folder = Path(from_dir) if from_dir is not None else course.source
    notebooks = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    if len(notebooks) != 1:
        return  # copy_sources says what is wrong with the folder
    try:
        problems = convention_problems(read_notebook(notebooks[0]), course.load_config())
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same problem for the instructor
        raise CourseError(f"{notebooks[0]} is not a readable notebook ({type(exc).__name__}: "
                          f"{str(exc)[:120]})") from None
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CourseError(f"{notebooks[0].name} cannot be graded by this kit: {problems[0]}{more}")


HELP = "build the course and the student version of an assignment"


def _default(trait):
    """A limit's default, from the one place it is set (GradingExecute's traits)."""
    from autograder.grading.execute import GradingExecute
    return GradingExecute.class_traits()[trait].default_value


def add_arguments(parser):
    parser.add_argument("--from", dest="from_dir", metavar="DIR", default=None,
                        help="the assignment's source: a folder with its notebook and the files students "
                             "receive (default for backprop: the kit's own; otherwise the source already there)")
    parser.add_argument("--cell-timeout", type=int, default=None, metavar="S",
                        help=f"seconds per cell (default {_default('timeout')})")
    parser.add_argument("--submission-timeout", type=int, default=None, metavar="S",
                        help=f"seconds per submission, all cells (default {_default('submission_timeout')})")
    parser.add_argument("--db", dest="db_url", metavar="URL", default=None,
                        help="the gradebook's database, e.g. postgresql://USER@HOST/DBNAME (default: the course's, "
                             "else gradebook.db in the course folder); written into nbgrader_config.py")
    # --- nbgrader's exchange (a JupyterHub course): autograder/term/exchange.py ---
    parser.add_argument("--exchange", action="store_true",
                        help="also publish the release to nbgrader's exchange, replacing the version published "
                             "before, for students' `nbgrader fetch_assignment`")
    parser.add_argument("--exchange-root", metavar="DIR", default=None,
                        help="the exchange folder (implies --exchange; default: Exchange.root from the course's or "
                             "Jupyter's nbgrader_config, else COURSE/exchange)")


def run(course, args):
    release(course, from_dir=args.from_dir, cell_timeout=args.cell_timeout,
            submission_timeout=args.submission_timeout, db_url=args.db_url)
    if args.exchange or args.exchange_root:
        from autograder.term.exchange import publish
        publish(course, args.exchange_root)
