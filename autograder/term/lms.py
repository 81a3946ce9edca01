"""The LMS round trip: a class roster read from Canvas or Moodle, grades written back for each.

Reading: a Canvas gradebook export (Grades > Export: Student, ID, SIS User ID, SIS Login ID,
Section, then one column per assignment "Title (id)", a "Points Possible" row, Canvas's test
student) or a Moodle participants or grades export (First name, Last name, ID number, Email
address, ...). Which column holds the kit's student id -- the folder name `collect` files a
submission under -- is always a named column (`--id-column`), never guessed from the data.

Writing: the CSV each LMS's own grade import reads. Canvas's importer matches a row by its ID
column (then SIS User ID, SIS Login ID, name) and an assignment by the "(id)" in its column title,
and wants the student columns in exactly this order. Moodle's "Import grades from CSV" lets the
teacher map an identifier column (email address or ID number) and a grade column to a grade item.

Everything but load_roster/save_roster/write_exports is pure: text in, rows or text out.
"""
import csv
import io
import json
import os
import re
import tempfile
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from autograder.course import CourseError, reserved_id

CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MOODLE_NAMES = ("First name", "Last name")
MOODLE_IDS = ("ID number", "Email address")
DEFAULT_ID_COLUMN = {"canvas": "SIS Login ID", "moodle": "ID number"}
ROSTER_FILE = "lms_roster.json"
EXPORT_FILES = {"canvas": "canvas_grades.csv", "moodle": "moodle_grades.csv"}
# The student view account Canvas adds to every course ("Student View").
CANVAS_TEST_STUDENT = {"student, test", "test student"}
CANVAS_ASSIGNMENT = re.compile(r"^(?P<title>.*\S)\s*\((?P<id>\d+)\)$")
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (a name a
# student set in the LMS, "=HYPERLINK(...)", would run when a TA opens the grade file).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
# Unicode's bidirectional overrides and isolates: they reorder how a name shows in a terminal.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# The LMS fields each import matches a row on: two roster rows with one value would send one
# student's grade to the other's account. Moodle does not require unique emails: a warning.
MATCH_KEYS = {"canvas": (("lms_user_id", "ID", True), ("sis_user_id", "SIS User ID", True)),
              "moodle": (("lms_user_id", "ID number", False), ("email", "Email address", False))}


@dataclass(frozen=True)
class Member:
    """One student of the LMS roster, with every field an LMS import may match on."""
    student_id: str          # the kit's id: submitted/<student_id>/, the gradebook's Student.id
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""    # Canvas: the numeric user ID; Moodle: the ID number
    display_name: str = ""   # as the LMS shows it (Canvas: "Last, First")
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""


@dataclass
class Roster:
    format: str                  # "canvas" or "moodle"
    id_column: str
    members: list                # [Member], in file order
    skipped: list                # one note per row left out (test student, teachers, points row)
    assignments: dict            # Canvas only: {assignment title: Canvas assignment id}


# ------------------------------------------------------------------------------------------------
# reading an LMS export


def read_table(data, source):
    """(header, [(row number, row)]) of CSV bytes as an LMS or Excel writes them: UTF-8 with or
    without a BOM, comma, semicolon or tab separated; rows numbered as a spreadsheet shows them,
    blank ones left out. One-line CourseError for anything else."""
    if data[:4] == b"PK\x03\x04":
        raise CourseError(f"{source} is a spreadsheet workbook, not CSV: export it from the LMS as CSV")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CourseError(f"{source} is not UTF-8 text: download it from the LMS again, or save it as "
                          "'CSV UTF-8' if a spreadsheet program opened it") from None
    if "\x00" in text:
        raise CourseError(f"{source} is not a CSV file (it holds binary data)")
    first = text.lstrip("\r\n").split("\n", 1)[0]
    if not first.strip():
        raise CourseError(f"{source} is empty")
    # The separator that splits the header into the most columns; Canvas and Moodle both offer ';'.
    delimiter = max(",;\t", key=lambda sep: len(next(csv.reader([first], delimiter=sep))))
    try:
        rows = [row for row in csv.reader(io.StringIO(text.lstrip("\r\n")), delimiter=delimiter)]
    except csv.Error as exc:
        raise CourseError(f"{source} is not a readable CSV file ({exc})") from None
    header = [clean_text(cell) for cell in rows[0]]
    body = [(number, [clean_text(cell) for cell in row]) for number, row in enumerate(rows[1:], start=2)
            if any(cell.strip() for cell in row)]
    return header, body


def clean_text(cell):
    """A cell as one line of plain text: control characters (a terminal runs escape sequences a
    name could carry when `roster list` prints it) and bidirectional overrides become spaces."""
    if cell.isprintable():
        return cell.strip()
    return "".join(" " if unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS else ch for ch in cell).strip()


def spreadsheet_safe(text):
    """`text` as a spreadsheet shows it instead of running it: a leading apostrophe before a cell
    that starts like a formula. Idempotent."""
    return "'" + text if text.startswith(FORMULA_START) else text


def detect_format(header):
    """"canvas", "moodle" or None, from the header row alone."""
    if list(header[:2]) == ["Student", "ID"] and "Section" in header:
        return "canvas"
    if all(name in header for name in MOODLE_NAMES) and any(name in header for name in MOODLE_IDS):
        return "moodle"
    return None


def parse_roster(data, source, fmt="auto", id_column=None):
    """The Roster in an LMS export's bytes. `id_column` names the column that holds the kit's
    student ids (default: Canvas's SIS Login ID, Moodle's ID number)."""
    header, rows = read_table(data, source)
    found = detect_format(header)
    if found is None or (fmt != "auto" and fmt != found):
        wanted = {"canvas": "a Canvas gradebook export (Student, ID, SIS User ID, SIS Login ID, Section, ...)",
                  "moodle": "a Moodle participants or grades export (First name, Last name, ID number, "
                            "Email address, ...)"}
        expected = wanted[fmt] if fmt in wanted else f"{wanted['canvas']} or {wanted['moodle']}"
        raise CourseError(f"{source} is not {expected}: its columns are {', '.join(header[:6]) or 'none'}")
    id_column = id_column or DEFAULT_ID_COLUMN[found]
    if id_column not in header:
        raise CourseError(f"{source} has no column {id_column!r} for the student ids: pass --id-column with one "
                          f"of {', '.join(repr(h) for h in header if h)}")
    reader = _canvas_rows if found == "canvas" else _moodle_rows
    members, skipped = [], []
    for line, row in rows:
        values = dict(zip(header, row + [""] * (len(header) - len(row))))
        member, note = reader(values, id_column)
        if note:
            skipped.append(f"row {line}: {note}")
        elif member is not None:
            members.append((line, member))
    _check_ids(members, id_column, source)
    skipped.extend(_check_match_keys(members, found, source))
    assignments = _canvas_assignments(header) if found == "canvas" else {}
    return Roster(found, id_column, [m for _, m in members], skipped, assignments)


def _canvas_rows(values, id_column):
    """(Member or None, why the row is left out or "") of one Canvas export row."""
    name = values.get("Student", "")
    if (name.startswith("Points Possible") or not name) and not values.get("ID"):
        return None, ""   # the points row under the header, or a row of posting policies
    if name.casefold() in CANVAS_TEST_STUDENT:
        return None, f"Canvas's test student ({name}) left out"
    last, _, first = name.partition(",")
    first, last = (first.strip(), last.strip()) if first.strip() else (name, "")
    safe = spreadsheet_safe   # names and sections are for people: stored so no spreadsheet runs them
    return Member(student_id=values[id_column], first_name=safe(first), last_name=safe(last),
                  lms_user_id=values.get("ID", ""), display_name=safe(name), sis_user_id=values.get("SIS User ID", ""),
                  sis_login_id=values.get("SIS Login ID", ""), section=safe(values.get("Section", ""))), ""


def _moodle_rows(values, id_column):
    """(Member or None, why the row is left out or "") of one Moodle export row."""
    roles = values.get("Roles")
    if roles is not None and "student" not in roles.casefold():
        who = f"{values.get('First name', '')} {values.get('Last name', '')}".strip()
        return None, f"{who} is not a student ({roles or 'no role'}) and is left out"
    first, last = values.get("First name", ""), values.get("Last name", "")
    return Member(student_id=values[id_column], first_name=spreadsheet_safe(first),
                  last_name=spreadsheet_safe(last), email=values.get("Email address", ""),
                  lms_user_id=values.get("ID number", ""), display_name=spreadsheet_safe(f"{first} {last}".strip())), ""


def _canvas_assignments(header):
    """{title: Canvas assignment id} of the export's assignment columns."""
    found = {}
    for name in header[len(CANVAS_COLUMNS):]:
        match = CANVAS_ASSIGNMENT.match(name)
        if match:
            found[match["title"]] = match["id"]
    return found


def id_problem(student):
    """Why `student` cannot be a student id of the kit (a folder name in several places), or ""."""
    from autograder.verbs.collect import VALID_ID
    if not student:
        return "is empty"
    if not VALID_ID.match(student) or student in (".", ".."):
        return "is not usable as a student id (letters, digits, '.', '_', '@', '-'; at most 64)"
    reason = reserved_id(student)
    if not reason and student.casefold() == ROSTER_FILE:
        reason = f"{student!r} is a name the grader uses"
    return f"is not usable as a student id: {reason}" if reason else ""


def _check_ids(numbered, id_column, source):
    """One line for the first unusable or repeated id (compared as macOS and Windows file systems do)."""
    seen = {}
    for line, member in numbered:
        student = member.student_id
        if problem := id_problem(student):
            raise CourseError(f"{source} row {line} ({member.display_name}): {id_column} {student!r} {problem}: "
                              "fix the LMS export or choose another column with --id-column")
        key = student.casefold()
        if key in seen:
            raise CourseError(f"{source}: {id_column} {student!r} is on rows {seen[key]} and {line}: "
                              "each student needs an id of their own (choose another column with --id-column)")
        seen[key] = line
    if not numbered:
        raise CourseError(f"{source} lists no students")


def _check_match_keys(numbered, fmt, source):
    """One line for two rows with the same value in a field the LMS's import matches rows on (an
    error where the LMS keeps it unique, else a note to map the import by another field)."""
    notes = []
    for attribute, column, unique in MATCH_KEYS[fmt]:
        seen = {}
        for line, member in numbered:
            value = getattr(member, attribute).casefold()
            if not value:
                continue
            if value in seen:
                where = f"{column} {getattr(member, attribute)!r} is on rows {seen[value]} and {line}"
                if unique:
                    raise CourseError(f"{source}: {where}: the LMS would give both rows' grades to one account; "
                                      "download the export from the LMS again instead of editing it")
                notes.append(f"{where}: map Moodle's grade import by another identifier than {column}")
                break
            seen[value] = line
    return notes


# ------------------------------------------------------------------------------------------------
# writing grades for an LMS


def score_text(value):
    """A grade as both importers read it: '.' decimals, no exponent, no trailing zeros; '' for none."""
    if value is None:
        return ""
    text = f"{round(float(value), 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def names(ids, limit=20):
    """Student ids for one line of a warning: the first `limit`, then how many more."""
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def is_pending(record):
    """Whether some answer of this record awaits a TA in formgrader: its total is not a grade yet."""
    return bool(record.get("pending")) or any(cell.get("needs_manual_grade")
                                              for cell in record.get("cells", {}).values())


def grade_rows(members, records):
    """[(member, score or None)] in roster order, and the warning lines a TA must read. A student
    with no score, or with answers still awaiting manual grading, gets None: an LMS shows whatever
    number it is given as the student's grade, so a partial total must not reach it."""
    by_id = {m.student_id: m for m in members}
    rows, ungraded, pending = [], [], []
    for member in members:
        record = records.get(member.student_id) or {}
        score = record.get("score")
        if score is not None and is_pending(record):
            pending.append(member.student_id)
            score = None
        elif score is None:
            ungraded.append(member.student_id)
        rows.append((member, score))
    warnings = []
    if ungraded:
        warnings.append(f"{len(ungraded)} students of the roster have no grade; their cells are left empty "
                        f"(not 0): {names(ungraded)}")
    if pending:
        warnings.append(f"{_students_have(len(pending))} answers awaiting manual grading; their cells are left "
                        f"empty until graded in formgrader: {names(pending)}")
    doubtful = [m.student_id for m, score in rows if score is not None
                and records[m.student_id].get("status") in ("tamper suspected", "not verified")]
    if doubtful:
        warnings.append(f"{len(doubtful)} students' grades are in the file but flagged (tamper suspected or not "
                        f"verified: see grades.json); check them before you publish: {names(doubtful)}")
    stray = sorted(s for s, r in records.items() if r.get("score") is not None and s not in by_id)
    if stray:
        warnings.append(f"{len(stray)} graded students are not in the roster and are NOT in the file: "
                        f"{names(stray)} (import the LMS's current export with `roster import`, or check "
                        "--id-column)")
    return rows, warnings


def canvas_csv(rows, title, assignment_id=None, points=None):
    """Canvas gradebook import text: the five student columns, then "<title> (<id>)". A points row
    is written only for a new assignment (no id): on an existing one Canvas would take it as a
    change of the assignment's points."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    column = f"{title} ({assignment_id})" if assignment_id else title
    writer.writerow(list(CANVAS_COLUMNS) + [column])
    if not assignment_id and points is not None:
        writer.writerow(["Points Possible", "", "", "", "", score_text(points)])
    for member, score in rows:
        name = canvas_name(member.display_name or f"{member.last_name}, {member.first_name}")
        writer.writerow([spreadsheet_safe(cell) for cell in (
            name, member.lms_user_id, member.sis_user_id, member.sis_login_id, member.section)] + [score_text(score)])
    return out.getvalue()


def canvas_name(name):
    """A student's name for the Student column, which Canvas reads only to show: its importer takes
    any row whose first cell contains "Points Possible" (case-sensitive) as the points row, so a
    student named that way would set the assignment's points to their own score."""
    return name.replace("Points Possible", "Points possible")


def moodle_csv(rows, title):
    """Moodle "Import grades from CSV" text: names, both identifiers Moodle can map from (ID number,
    Email address), then the grade column to map to a grade item."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(list(MOODLE_NAMES) + list(MOODLE_IDS) + [title])
    for member, score in rows:
        writer.writerow([spreadsheet_safe(cell) for cell in (
            member.first_name, member.last_name, member.lms_user_id, member.email)] + [score_text(score)])
    return out.getvalue()


def altered_ids(members, lms):
    """Students whose identifier cells the grade file had to write with a leading apostrophe (they
    started like a formula): the LMS will not match them, a TA must enter their grade by hand."""
    fields_ = ("lms_user_id", "sis_user_id", "sis_login_id") if lms == "canvas" else ("lms_user_id", "email")
    return [m.student_id for m in members if any(spreadsheet_safe(getattr(m, f)) != getattr(m, f) for f in fields_)]


def pick_canvas_assignment(roster, assignment, given=None):
    """The Canvas assignment id to grade: the one given, else the roster's assignment column titled
    like the kit's assignment (case-insensitive), else None (Canvas then creates an assignment)."""
    if given:
        if not str(given).isdigit():
            raise CourseError(f"--lms-assignment-id {given!r} is not a Canvas assignment id: the number at the end "
                              "of the assignment's address, .../assignments/<id>")
        return str(given)
    matches = [i for title, i in roster.assignments.items() if title.casefold() == assignment.casefold()]
    return matches[0] if len(matches) == 1 else None


# ------------------------------------------------------------------------------------------------
# the roster kept in the course, and the files `export --lms` writes


def save_roster(course, roster, source):
    """Write course/lms_roster.json atomically and readable by its owner only (mode 0600): it holds
    names, emails and SIS ids, and a course folder is often shared or readable by other users."""
    path = course.root / ROSTER_FILE
    data = {"format": roster.format, "id_column": roster.id_column, "source": str(source),
            "assignments": roster.assignments, "students": [asdict(m) for m in roster.members]}
    # mkstemp creates the file 0600 from the start (no moment at the umask's mode); os.replace
    # swaps it in whole, so a crash leaves the old roster, never half of one.
    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2, ensure_ascii=False))
        os.chmod(staged, 0o600)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return path


def load_roster(course):
    """The roster `roster import` stored, or None."""
    path = course.root / ROSTER_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    names = {f.name for f in fields(Member)}
    members = [Member(**{k: v for k, v in m.items() if k in names}) for m in data["students"]]
    return Roster(data["format"], data["id_column"], members, [], data.get("assignments", {}))


def write_exports(course, records, cells, lms, out_dir, assignment_id=None, echo=print):
    """Write out_dir/<lms>_grades.csv from the stored roster; echo where and every warning."""
    roster = load_roster(course)
    if roster is None:
        raise CourseError("no roster yet: run `python -m autograder roster import FILE` with the LMS's export "
                          "(Canvas: Grades > Export; Moodle: Participants > Download) first")
    if roster.format != lms:
        raise CourseError(f"the roster came from {roster.format.capitalize()}: a {lms.capitalize()} import needs "
                          f"its ids, so run `roster import` with a {lms.capitalize()} export first")
    rows, warnings = grade_rows(roster.members, records)
    title = course.assignment
    if lms == "canvas":
        chosen = pick_canvas_assignment(roster, title, assignment_id)
        # Canvas matches on the id; its own title keeps the file readable and a re-import unchanged.
        title = next((t for t, i in roster.assignments.items() if i == chosen), title)
        text = canvas_csv(rows, title, chosen, points=sum(points for _, points, _ in cells))
        target = f"Canvas assignment {chosen}" if chosen else f"a new Canvas assignment '{title}'"
    else:
        text = moodle_csv(rows, title)
        target = f"a Moodle grade item (map the '{title}' column)"
    path = out_dir / EXPORT_FILES[lms]
    path.write_text(text, encoding="utf-8", newline="")
    graded = sum(score is not None for _, score in rows)
    echo(f"{lms.capitalize()}: {path} ({graded} of {len(rows)} students graded, for {target})")
    if altered := altered_ids(roster.members, lms):
        warnings.append(f"{_students_have(len(altered))} an LMS identifier that starts like a spreadsheet formula; it "
                        f"is written with a leading ' so no spreadsheet runs it, and the LMS will not match their "
                        f"row: enter their grade by hand: {names(altered)}")
    for line in warnings:
        echo(f"warning: {line}")
    return path


def _students_have(count):
    return f"{count} student has" if count == 1 else f"{count} students have"
