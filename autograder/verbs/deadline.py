"""`deadline`: the assignment's due date, the students' extensions, and the late policy.

    deadline --due "2026-12-14 23:59" --timezone Europe/Berlin   # into the gradebook (UTC), as nbgrader's own
    deadline --extend ada --hours 48                             # or --until "2026-12-20 12:00"
    deadline                                                     # due date, policy, extensions

The due date is nbgrader's Assignment.duedate; extensions go to course/deadlines.json
(autograder.term.deadlines). Penalties are computed when a submission is graded (nbgrader's
AssignLatePenalties with autograder.grading.late.LatePolicy), so a change here reaches stored
grades only when they are graded again; every change says so.
"""
import datetime as dt
import math

from autograder.course import ASSIGNMENT, CourseError
from autograder.term import deadlines

NO_DUE = ("none", "never", "")
POLICY_CLASS = "autograder.grading.late.LatePolicy"


def due_date(course):
    """The assignment's due date from the gradebook (aware, UTC), or None."""
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        return deadlines.as_utc(gb.find_assignment(course.assignment).duedate)


def set_due(course, text, zone=None, echo=print):
    """Store the due date (`text` in `zone`, default the zone it was set in before, else UTC) in
    the gradebook and the zone in deadlines.json. "none" removes the due date."""
    from nbgrader.api import Gradebook

    data = deadlines.load(course.root)
    entry = data.setdefault(course.assignment, {})
    tz = deadlines.timezone(zone if zone is not None else entry.get("timezone"))
    when = None if text.strip().lower() in NO_DUE else deadlines.parse_when(text, tz, "--due")
    with Gradebook(course.db_url) as gb:
        assignment = gb.find_assignment(course.assignment)
        assignment.duedate = None if when is None else deadlines.to_naive_utc(when)
        gb.db.commit()
    entry["timezone"] = "UTC" if tz is deadlines.UTC else tz.key
    deadlines.save(course.root, data)
    echo(f"{course.assignment}: " + ("no due date: nobody is late" if when is None
                                     else f"due {deadlines.show(when, tz)}"))
    _regrade_hint(course, None, echo)


def known_students(course):
    """Students the course knows: in the gradebook or with a collected submission."""
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        return {s.id for s in gb.students} | set(course.submitted_students())


def extend(course, student, *, hours=None, until=None, zone=None, echo=print):
    """Give `student` an extension of `hours` (0 removes it) or until the date `until`."""
    if student not in known_students(course):
        raise CourseError(f"unknown student {student!r}: not in the gradebook and nothing collected for them "
                          f"(check the id, collect first, or add them with `nbgrader db student add {student}`)")
    data = deadlines.load(course.root)
    entry = data.setdefault(course.assignment, {})
    extensions = entry.setdefault("extensions", {})
    tz = deadlines.timezone(zone if zone is not None else entry.get("timezone"))
    granted = deadlines.iso_utc(dt.datetime.now(deadlines.UTC))
    if until is not None:
        extensions[student] = {"until": deadlines.iso_utc(deadlines.parse_when(until, tz, "--until")),
                               "granted": granted}
    elif hours == 0:
        extensions.pop(student, None)
    else:
        extensions[student] = {"hours": hours, "granted": granted}
    deadlines.save(course.root, data)
    due = due_date(course)
    if student not in extensions:
        echo(f"{student}: no extension" + (f"; due {deadlines.show(due, tz)}" if due else ""))
    else:
        echo(f"{student}: {_extension_text(extensions[student], due, tz)}")
    if due is None:
        echo(f"note: {course.assignment} has no due date yet, so nobody is late: set one with --due")
    _regrade_hint(course, student, echo)


def _extension_text(extension, due, tz):
    """"extension of 48 h: due 2026-12-16 23:59 Europe/Berlin (...)"."""
    if "hours" not in extension:
        until = dt.datetime.fromisoformat(extension["until"].replace("Z", "+00:00"))
        what = f"extension until {deadlines.show(until, tz)}"
        return what + (" (not after the due date: no extension)" if due is not None and until <= due else "")
    what = f"extension of {extension['hours']:g} h"
    if due is None:
        return what
    return f"{what}: due {deadlines.show(deadlines.student_due(due, extension), tz)}"


def _graded(course):
    """Students with a stored grade of this assignment."""
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url) as gb:
        return sorted(s.student.id for s in gb.find_assignment(course.assignment).submissions)


def _regrade_hint(course, student, echo):
    graded = _graded(course)
    if student is not None and student not in graded:
        return
    if graded:
        who = f" --student {student}" if student else ""
        assignment = "" if course.assignment == ASSIGNMENT else f" --assignment {course.assignment}"
        echo(f"stored grades do not change by themselves (the penalty is computed when a submission is graded): "
             f"run `python -m autograder grade{assignment}{who}` again, then `export`")


def policy_line(course):
    """The course's late policy in one line, as its nbgrader_config.py sets it."""
    from autograder.grading.late import LatePolicy, describe

    config = course.load_config()
    configured = config.AssignLatePenalties.get("plugin_class", "")
    if not isinstance(configured, str):  # a class object, from a config built in Python
        configured = f"{configured.__module__}.{configured.__qualname__}"
    if configured != POLICY_CLASS:
        return (f"late policy: nbgrader's default (no penalty): nbgrader_config.py does not name {POLICY_CLASS} "
                f"(run `python -m autograder release` again to rewrite it)")
    return "late policy: " + describe(LatePolicy(config=config).policy())


def listing(course, echo=print):
    """Due date, policy and extensions of the assignment."""
    entry = deadlines.assignment_entry(course.root, course.assignment)
    tz = deadlines.timezone(entry["timezone"])
    due = due_date(course)
    if due is None:
        echo(f'{course.assignment}: no due date: nobody is late (set one with `python -m autograder deadline '
             f'--due "2026-12-14 23:59" --timezone Europe/Berlin`)')
    else:
        echo(f"{course.assignment}: due {deadlines.show(due, tz)}")
    echo(policy_line(course))
    extensions = entry["extensions"]
    echo(f"extensions ({len(extensions)}):" if extensions else "extensions: none")
    for student in sorted(extensions):
        echo(f"  {student}: {_extension_text(extensions[student], due, tz)}")


HELP = "set the due date (--due), give a student more time (--extend), or list both"


def add_arguments(parser):
    parser.add_argument("--due", metavar="DATE", default=None,
                        help='due date and time, e.g. "2026-12-14 23:59" (in --timezone); "none" removes it')
    parser.add_argument("--timezone", metavar="ZONE", default=None,
                        help="time zone of --due and --until, e.g. Europe/Berlin (default: the one the due date "
                             "was set in, else UTC)")
    parser.add_argument("--extend", metavar="STUDENT", default=None,
                        help="give this student an extension: with --hours N (0 removes it) or --until DATE")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--hours", type=float, default=None, metavar="N", help="extension in hours")
    length.add_argument("--until", metavar="DATE", default=None, help="extension to this date and time")


def run(course, args):
    course.require_release()
    if args.extend is None and (args.hours is not None or args.until is not None):
        raise CourseError("--hours and --until say how long an extension is: give the student with --extend STUDENT")
    if args.extend is not None and args.hours is None and args.until is None:
        raise CourseError(f"--extend {args.extend} needs --hours N or --until DATE")
    if args.hours is not None and (not math.isfinite(args.hours) or args.hours < 0):
        raise CourseError(f"--hours {args.hours:g} must be a number of hours >= 0 (0 removes the extension)")
    if args.timezone is not None:
        deadlines.timezone(args.timezone)  # a bad zone fails before anything is written
    if args.due is None and args.extend is None:
        listing(course)
        return
    if args.due is not None:
        set_due(course, args.due, args.timezone)
    if args.extend is not None:
        extend(course, args.extend, hours=args.hours, until=args.until, zone=args.timezone)
