"""`roster`: who is in the class. `roster import FILE` reads a Canvas gradebook export or a Moodle
participants export, stores each student in the nbgrader gradebook (names, email, LMS id: formgrader
shows names instead of "None, None") and keeps the LMS's ids for `export --lms`. `roster` alone lists
the class and who has no submission for the assignment.

A student's id in the kit (the folder `collect` files their notebook under) comes from one named
column of the export, `--id-column`: the mapping is never guessed.
"""
import dataclasses
from pathlib import Path

from autograder.course import CourseError
from autograder.term import lms

HELP = "import the class list from Canvas or Moodle, or list it"
# A whole university's user list is a few MB; a class's export is far smaller.
MAX_ROSTER_BYTES = 64 * 2**20


def add_arguments(parser):
    parser.add_argument("action", nargs="?", choices=["import", "list"], default="list",
                        help="import FILE: read an LMS export; list (the default): show the class")
    parser.add_argument("file", nargs="?", help="Canvas: Grades > Export (CSV); Moodle: Participants > "
                                                "Download table data as CSV, or a grades export")
    parser.add_argument("--format", choices=["auto", "canvas", "moodle"], default="auto",
                        help="which LMS wrote FILE (default: recognised from its columns)")
    parser.add_argument("--id-column", metavar="NAME", default=None,
                        help="the column whose values are the kit's student ids, the names submissions are "
                             "collected under (default: Canvas 'SIS Login ID', Moodle 'ID number')")


def run(course, args):
    if args.action == "import":
        if not args.file:
            raise CourseError("roster import needs the LMS's export: `python -m autograder roster import FILE`")
        import_roster(course, args.file, fmt=args.format, id_column=args.id_column)
    else:
        if args.file:
            raise CourseError(f"did you mean `roster import {args.file}`?")
        list_roster(course)


def import_roster(course, path, fmt="auto", id_column=None, echo=print):
    """Read the LMS export at `path`, store its students in the gradebook and the roster file."""
    course.require_release()
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"{path} is not a file")
    size = path.stat().st_size
    if size > MAX_ROSTER_BYTES:
        raise CourseError(f"{path} is {size >> 20} MB, more than a class's export ({MAX_ROSTER_BYTES >> 20} MB at "
                          "most): export only the course's students from the LMS")
    roster = lms.parse_roster(path.read_bytes(), path.name, fmt=fmt, id_column=id_column)
    roster.members, adopted = match_existing_case(roster.members, gradebook_ids(course.db_url),
                                                  set(course.submitted_students()))
    before = store_students(course.db_url, roster.members)
    lms.save_roster(course, roster, path)
    ids = {m.student_id for m in roster.members}
    new = len(ids - before)
    echo(f"{len(roster.members)} students from {roster.format.capitalize()} ({path.name}), ids from column "
         f"'{roster.id_column}': {new} new, {len(ids) - new} updated in the gradebook")
    if adopted:
        echo("ids that differ only in capital letters from a student already collected or in the gradebook "
             f"take that student's id: {', '.join(f'{old} -> {new}' for old, new in adopted)}")
    for note in roster.skipped:
        echo(note)
    gone = sorted(before - ids)
    if gone:
        echo(f"{len(gone)} students of the gradebook are not in this roster (kept, grades and all): "
             f"{', '.join(gone)}")
    return roster


def match_existing_case(members, known, submitted):
    """(members, [(roster id, id used)]): a roster id that differs only in capital letters from a
    student the course already has takes that student's id. The existing id is what collect filed
    the notebook under and what grades are stored by; the LMS's own ids (what its grade import
    matches on) are untouched, so only the spelling the TA never chose changes. A student with a
    submission wins over one only in the gradebook; two candidates with submissions are an error."""
    by_fold = {}
    for student in set(known) | set(submitted):
        by_fold.setdefault(student.casefold(), set()).add(student)
    result, adopted = [], []
    for member in members:
        variants = by_fold.get(member.student_id.casefold(), set())
        pool = (variants & set(submitted)) or variants
        if not pool or member.student_id in pool:
            result.append(member)
            continue
        if len(pool) > 1:
            raise CourseError(f"roster id {member.student_id!r} matches {', '.join(sorted(pool))} except for capital "
                              "letters: keep one of them (rename or remove the other's submitted folder) and import "
                              "again")
        (existing,) = pool
        adopted.append((member.student_id, existing))
        result.append(dataclasses.replace(member, student_id=existing))
    return result, adopted


def gradebook_ids(db_url):
    """The ids of every student in the gradebook."""
    from nbgrader.api import Gradebook, Student
    with Gradebook(db_url) as gb:
        return {student_id for (student_id,) in gb.db.query(Student.id)}


def store_students(db_url, members):
    """Create or update every member's gradebook student in one transaction (nbgrader's
    update_or_create_student commits once per student: minutes for a large roster). Only what
    the export knows is written: a Canvas export has no email, and must not erase one. Returns the
    ids the gradebook held before."""
    from nbgrader.api import Gradebook, Student
    from sqlalchemy.exc import SQLAlchemyError

    with Gradebook(db_url) as gb:
        existing = {student.id: student for student in gb.db.query(Student)}
        before = set(existing)
        try:
            for member in members:
                known = {"first_name": member.first_name, "last_name": member.last_name, "email": member.email,
                         "lms_user_id": member.lms_user_id}
                known = {k: v for k, v in known.items() if v}
                student = existing.get(member.student_id)
                if student is None:
                    gb.db.add(Student(id=member.student_id, **known))
                else:
                    for key, value in known.items():
                        setattr(student, key, value)
            gb.db.commit()
        except SQLAlchemyError as exc:
            gb.db.rollback()
            raise CourseError(f"the gradebook did not take the roster (nothing was changed): {exc}".splitlines()[0]) \
                from None
    return before


def class_list(course):
    """[(student_id, name, lms id, what) ...] for everyone in the gradebook, roster or submitted/."""
    from nbgrader.api import Gradebook
    roster = lms.load_roster(course)
    members = {m.student_id: m for m in (roster.members if roster else [])}
    with Gradebook(course.db_url) as gb:
        known = {s.id: (s.first_name, s.last_name, s.lms_user_id) for s in gb.students}
    submitted = set(course.submitted_students())
    rows = []
    for student in sorted(set(known) | set(members) | submitted, key=str.casefold):
        first, last, lms_id = known.get(student, (None, None, None))
        name = " ".join(part for part in (first, last) if part) or "-"
        what = "submitted" if student in submitted else "no submission"
        if roster and student not in members:
            what += ", not in the roster"
        rows.append((student, name, lms_id or "-", what))
    return rows


def list_roster(course, echo=print):
    course.require_release()
    rows = class_list(course)
    if not rows:
        echo("no students yet: `python -m autograder roster import FILE` reads them from Canvas or Moodle")
        return rows
    header = ("student", "name", "LMS id", course.assignment)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    missing = [r[0] for r in rows if r[3].startswith("no submission")]
    echo(f"{len(rows)} students, {len(missing)} without a submission for {course.assignment}"
         + (f": {', '.join(missing)}" if missing else ""))
    return rows
