"""`collect PATH`: bring submissions into submitted/<student>/backprop/ — from a folder of
per-student folders, a folder of files named by student, or an LMS zip of either.

One line per student says what was done or why not; nothing one student sent stops the others.
Not an nbgrader ZipCollect plugin: nbgrader's zip_collect extracts the whole archive to disk first
(following its links, trusting its sizes) and its plugins only map file names to students.

Everything in PATH is treated as hostile: links are never followed (a link to the instructor's
source notebook would otherwise be graded as a student's), special files are never opened (a FIFO
would block), nothing larger than MAX_NOTEBOOK_BYTES is read into memory whatever a zip header
claims, and a student id cannot name one of the grader's own files or folders.
"""
import datetime as dt
import errno
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import nbformat

from autograder.course import Course, CourseError, reserved_id
from autograder.term import deadlines

# LMS downloads name files "<student>_<anything>.ipynb" (nbgrader's zip_collect default is alike).
DEFAULT_PATTERN = r"^(?P<student_id>[^_/\\]+)"
VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}
MAX_NOTEBOOK_BYTES = 50 * 2**20

# Names the grader uses for itself. A student's id becomes a folder name in places that also hold
# these: the course root (and its nbgrader folders) and grade's scratch root, which keeps one folder
# per student beside a `gradebook.db` copy and `<id>-verify` folders. A student called
# "gradebook.db" or "ada-verify" would put their folder where the grader's own file or another
# student's verification goes. Compared case-insensitively: macOS and Windows file systems are.
# Why an item is not collected, shown as "not collected: a link (ada/assignment.ipynb)".
LINK = "a link"
SPECIAL = "not a regular file"


class Refused(Exception):
    """This item cannot be collected; the message says why, after "not collected: <item> "."""


@dataclass
class Candidate:
    student: str
    name: str          # where it came from, for messages
    modified: float    # POSIX time
    read: object       # (limit) -> bytes, at most limit + 1 of them; raises Refused
    refused: str = ""  # known before reading: why it cannot be collected
    # Whether `modified` comes from a source the student does not control (an LMS zip's entry
    # time, the exchange's); if not (a file's mtime in a folder), timestamp.txt gets the time of
    # collection instead. `modified` still picks the newest of a student's notebooks.
    trusted_time: bool = True
    # A time the TA gave (`collect --times DATE`): timestamp.txt gets it, whatever the above says.
    stamp: float | None = None


@dataclass
class Rejected:
    """A link, special file or unreadable folder: never read, but the student hears about it."""
    student: str
    name: str
    note: str          # the line after "not collected: "


def collect(path, course=None, *, pattern=DEFAULT_PATTERN, times=None, echo=print):
    """Collect every student's notebook found under `path` (folder or .zip). Returns {student: line}.

    `times` says what timestamp.txt gets (`collect --times`): "zip" (each entry's date in the zip;
    the default for a zip), "collected" (the time of collection; the default for a folder) or a date
    and time, in the assignment's deadline time zone, for everything collected now."""
    course = course or Course()
    course.require_release()
    path = Path(path)
    if not path.exists():
        raise CourseError(f"{path} does not exist")
    regex = re.compile(pattern)
    is_zip = path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path))
    if not is_zip and not path.is_dir():
        raise CourseError(f"{path} is neither a folder nor a zip file")
    mode, given = parse_times(times, course, is_zip)   # a bad --times is refused before anything is read
    if is_zip:
        try:
            archive = zipfile.ZipFile(path)
        except Exception as exc:  # noqa: BLE001 - a damaged archive raises many kinds; the TA needs one line
            raise CourseError(f"{path} is not a readable zip file ({_short(exc)}): download it again") from None
        with archive:
            items, skipped = _from_zip(archive, regex)
            _apply_times(items, mode, given)
            lines = _collect_candidates(course, items, skipped)
    else:
        items, skipped = _from_folder(path, regex)
        _apply_times(items, mode, given)
        lines = _collect_candidates(course, items, skipped)
    for student in sorted(lines):
        echo(f"{student}: {lines[student]}")
    if any(line.startswith("collected") for line in lines.values()):
        echo(_times_line(mode, given, is_zip, course))
        if mode == ZIP_TIMES and (warning := _implausible_dates(course, items, lines)):
            echo(warning)
    return lines


# Where the submission time (timestamp.txt, what lateness is measured from) comes from, per intake.
TIME_FROM_ZIP = ("submission times: each notebook's date in the zip (set by the LMS when it built the "
                 "download; for a zip a student made, collect again with --times collected)")
TIME_FROM_FOLDER = ("submission times: the time of this collection, or of the earlier one that took the same "
                    "notebook (a file's date in a folder is whatever its sender set; collect a folder when it "
                    "arrives, or give the time it arrived with --times DATE)")


# `collect --times`: where timestamp.txt's time comes from.
ZIP_TIMES, COLLECTED_TIMES, GIVEN_TIME = "zip", "collected", "date"
TIMES_HINT = 'zip, collected, or a date and time like "2026-12-14 23:00"'


def parse_times(text, course, is_zip):
    """(mode, POSIX time or None) from `--times` (None: the intake's default). One line if unusable."""
    if text is None:
        return (ZIP_TIMES if is_zip else COLLECTED_TIMES), None
    word = text.strip().lower()
    if word == COLLECTED_TIMES:
        return COLLECTED_TIMES, None
    if word == ZIP_TIMES:
        if not is_zip:
            raise CourseError("--times zip needs a zip: the dates of files in a folder are whatever their "
                              "sender set (use --times collected or a date)")
        return ZIP_TIMES, None
    tz = deadlines.timezone(deadlines.assignment_entry(course.root, course.assignment)["timezone"])
    try:
        when = deadlines.parse_when(text, tz, what="--times")
    except CourseError:
        raise CourseError(f"--times {text!r} is not {TIMES_HINT} (in the deadline's time zone, "
                          f"{getattr(tz, 'key', 'UTC')})") from None
    return GIVEN_TIME, when.timestamp()


def _apply_times(items, mode, given):
    """Set each candidate's time source for `mode` (ZIP_TIMES keeps what the intake decided)."""
    for item in items:
        if not isinstance(item, Candidate):
            continue
        if mode == COLLECTED_TIMES:
            item.trusted_time = False
        elif mode == GIVEN_TIME:
            item.stamp = given


def _times_line(mode, given, is_zip, course):
    """The line saying where this collection's submission times came from."""
    if mode == GIVEN_TIME:
        tz = deadlines.timezone(deadlines.assignment_entry(course.root, course.assignment)["timezone"])
        when = dt.datetime.fromtimestamp(given, deadlines.UTC)
        return f"submission times: {deadlines.show(when, tz)} for every notebook collected now (--times)"
    if mode == ZIP_TIMES:
        return TIME_FROM_ZIP
    return TIME_FROM_FOLDER if not is_zip else TIME_FROM_COLLECTION


TIME_FROM_COLLECTION = ("submission times: the time of this collection, or of the earlier one that took the same "
                        "notebook (--times collected: the zip's dates were not used)")


def _released_at(course):
    """When the assignment was (last) released: its release notebook's date, or None."""
    try:
        return course.notebook(course.release).stat().st_mtime
    except (OSError, CourseError):
        return None


def _implausible_dates(course, items, lines):
    """One warning line naming collected students whose zip dates lie after now or before the
    release (a zip a student made, or an LMS zone mix-up), or "". Only with a due date: without one
    the dates decide nothing."""
    from autograder.verbs.deadline import due_date
    try:
        if due_date(course) is None:
            return ""
    except Exception:  # noqa: BLE001 - no gradebook row for the assignment: nothing is late, nothing to say
        return ""
    now, released = time.time(), _released_at(course)
    odd = sorted({c.student for c in items if isinstance(c, Candidate) and c.student in lines
                  and lines[c.student].startswith("collected")
                  and (c.modified > now or (released is not None and c.modified < released))})
    if not odd:
        return ""
    since = "" if released is None else " or before the assignment was released (" + \
        dt.datetime.fromtimestamp(released, deadlines.UTC).strftime("%Y-%m-%d %H:%M UTC") + ")"
    return (f"warning: dates in the zip later than now{since} for {', '.join(odd)}: if they made this zip "
            "themselves, collect it again with --times collected (or --times DATE)")


def _short(exc):
    """One short line for a TA from any exception (some messages embed whole reprs)."""
    text = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).splitlines()[0]
    return text if len(text) <= 80 else text[:77] + "..."


def _size(limit):
    return f"{limit >> 20} MB" if limit >= 2**20 and limit % 2**20 == 0 else f"{limit} bytes"


def _student_of(relative, regex):
    """The student a submission belongs to: its top folder, or else the file name's pattern match."""
    parts = PurePosixPath(relative).parts
    if len(parts) > 1:
        return parts[0]
    match = regex.search(parts[0])
    return match.group("student_id") if match else None


def _is_junk(relative):
    """Checkpoints and macOS metadata: ignored whatever kind of file they are."""
    parts = PurePosixPath(relative).parts
    return bool(IGNORED_PARTS.intersection(parts)) or parts[-1].startswith("._")


def _is_notebook(relative):
    return relative.endswith(".ipynb") and not _is_junk(relative)


def _walk(root, relative=""):
    """(relative path, lstat result or the OSError) of everything under root, sorted; never
    enters a linked folder, never opens a file."""
    folder = root / relative if relative else root
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        if not relative:
            raise CourseError(f"cannot read the folder {root} ({_short(exc)})") from None
        yield relative, exc
        return
    for entry in entries:
        child = f"{relative}/{entry.name}" if relative else entry.name
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:   # vanished or unreadable since it was listed
            yield child, exc
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk(root, child)
        else:
            yield child, info


def _read_file(path):
    def read(limit):
        # O_NOFOLLOW and O_NONBLOCK: if the file was swapped for a link or a FIFO after it was
        # checked, opening fails or returns at once instead of following the link or blocking.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise Refused(f"is {LINK}" if exc.errno == errno.ELOOP else f"could not be read ({_short(exc)})") from None
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise Refused(f"is {SPECIAL}")
            try:
                return file.read(limit + 1)
            except OSError as exc:
                raise Refused(f"could not be read ({_short(exc)})") from None
    return read


def _from_folder(root, regex):
    items, skipped = [], []
    for relative, info in _walk(root):
        if _is_junk(relative):
            skipped.append(relative)
        elif isinstance(info, OSError):
            reason = f"could not be read ({_short(info)})"
            if _is_notebook(relative):
                items.append(Candidate(_student_of(relative, regex), relative, 0.0, None, reason, False))
            else:
                items.append(Rejected(_student_of(relative, regex), relative, f"{relative} {reason}"))
        elif stat.S_ISLNK(info.st_mode):
            items.append(Rejected(_student_of(relative, regex), relative, f"{LINK} ({relative})"))
        elif not stat.S_ISREG(info.st_mode):
            items.append(Rejected(_student_of(relative, regex), relative, f"{SPECIAL} ({relative})"))
        elif not _is_notebook(relative):
            skipped.append(relative)
        else:
            refused = f"is larger than {_size(MAX_NOTEBOOK_BYTES)}" if info.st_size > MAX_NOTEBOOK_BYTES else ""
            items.append(Candidate(_student_of(relative, regex), relative, info.st_mtime,
                                   _read_file(root / relative), refused, trusted_time=False))
    return items, skipped


def _read_entry(archive, entry):
    def read(limit):
        try:
            # Reading at most limit + 1 bytes bounds memory even if the header lies about the size.
            with archive.open(entry) as file:
                return file.read(limit + 1)
        except Exception as exc:  # noqa: BLE001 - the entry's bytes are the student's: any decoder error is theirs
            raise Refused(f"is damaged in the zip ({_short(exc)})") from None
    return read


def _from_zip(archive, regex):
    items, skipped = [], []
    entries = [e for e in archive.infolist() if not e.is_dir()]
    # An LMS zip often wraps the class in one folder; look inside it. A zip of one folder whose
    # notebooks all belong to one student below it is that folder's student: a student's own zip
    # must not name a classmate (eve.zip holding eve/honest/assignment.ipynb is eve's).
    parts = [PurePosixPath(e.filename).parts for e in entries]
    notebooks = [p[1:] for p in parts if p[-1].endswith(".ipynb")]
    inside = {_student_of("/".join(p), regex) for p in notebooks if p}
    strip = (len({p[0] for p in parts}) == 1 and all(len(p) > 1 for p in parts) and len(inside) > 1)
    for entry in entries:
        relative = "/".join(PurePosixPath(entry.filename).parts[1 if strip else 0:])
        # Unix zips keep the file's mode in the high 16 bits; unzip would recreate a link from it.
        kind = stat.S_IFMT(entry.external_attr >> 16)
        if _is_junk(relative) or kind == stat.S_IFDIR:   # a folder entry whose name lacks the "/"
            skipped.append(relative)
        elif kind == stat.S_IFLNK:
            items.append(Rejected(_student_of(relative, regex), relative, f"{LINK} ({relative})"))
        elif kind not in (0, stat.S_IFREG):
            items.append(Rejected(_student_of(relative, regex), relative, f"{SPECIAL} ({relative})"))
        elif not _is_notebook(relative):
            skipped.append(relative)
        else:
            refused = ""
            if entry.file_size > MAX_NOTEBOOK_BYTES:
                refused = f"is larger than {_size(MAX_NOTEBOOK_BYTES)}"
            elif entry.flag_bits & 0x1:
                refused = "is encrypted (a password-protected zip)"
            modified = _entry_time(entry)
            items.append(Candidate(_student_of(relative, regex), relative, modified,
                                   _read_entry(archive, entry), refused))
    return items, skipped


def _entry_time(entry):
    """An entry's modification time (POSIX): the extended timestamp field (0x5455, UTC) when the
    zip has one, else the DOS date, a wall-clock time without zone, read as this machine's local
    time. 0.0 for a nonsense date (not worth a student)."""
    extra, offset = entry.extra, 0
    while offset + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, offset)
        data = extra[offset + 4:offset + 4 + size]
        if kind == 0x5455 and len(data) >= 5 and data[0] & 1:  # flag bit 0: the modification time follows
            return float(struct.unpack_from("<i", data, 1)[0])
        offset += 4 + size
    try:
        return dt.datetime(*entry.date_time).timestamp()
    except (ValueError, OverflowError):
        return 0.0


def _pick(notebooks, filename):
    """One notebook per student: the one named like the assignment's, else the newest."""
    named = [c for c in notebooks if PurePosixPath(c.name).name == filename]
    return max(named or notebooks, key=lambda c: c.modified)


def _id_problem(student, name):
    """The line for an unusable student id, or ""."""
    if not VALID_ID.match(student) or student in (".", ".."):
        return f"not a usable student id ({name}): not collected"
    reason = reserved_id(student)
    return f"not a usable student id: {reason} ({name}): not collected" if reason else ""


def _collect_candidates(course, items, skipped):
    by_student, lines = {}, {}
    sources = _load_sources(course)
    known = dict(sources)
    for item in items:
        if item.student is None:
            lines[f"? {item.name}"] = "no student id in the file name: not collected"
        elif problem := _id_problem(item.student, item.name):
            lines[f"? {item.student!r}"] = problem
        else:
            by_student.setdefault(item.student, []).append(item)
    for student, found in by_student.items():
        notebooks = [c for c in found if isinstance(c, Candidate)]
        notes = "; ".join(f"not collected: {item.note}" for item in found if isinstance(item, Rejected))
        if not notebooks:
            lines[student] = notes + _kept(course, student)
            continue
        chosen = _pick(notebooks, course.notebook(Path()).name)
        lines[student] = _take(course, student, chosen, sources)
        if len(notebooks) > 1:
            others = ", ".join(c.name for c in notebooks if c is not chosen)
            took = f": took {chosen.name}" if lines[student].startswith("collected") else ""
            lines[student] += f" (also found {others}{took})"
        if notes:
            lines[student] += f"; {notes}"
        if not lines[student].startswith("collected"):
            lines[student] += _kept(course, student)
    if sources != known:
        _save_sources(course, sources)
    if skipped:
        lines["(other files)"] = (f"{len(skipped)} other files ignored (not notebooks, checkpoints or macOS "
                                  f"metadata), e.g. {skipped[0]}")
    return lines


def _kept(course, student):
    """A student who is not collected now keeps what was collected before; the TA must know."""
    if course.notebook(course.submitted(student)).is_file():
        return "; the notebook collected earlier stays"
    return ""


def _take(course, student, candidate, sources):
    """Read and store one notebook; the student's line."""
    limit = MAX_NOTEBOOK_BYTES
    try:
        if candidate.refused:
            raise Refused(candidate.refused)
        data = candidate.read(limit)
        if len(data) > limit:
            raise Refused(f"is larger than {_size(limit)}")
    except Refused as why:
        return f"not collected: {candidate.name} {why}"
    return _store(course, student, candidate, data, sources)


STAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"  # timestamp.txt, as nbgrader's parse_utc reads it


# Where each student's timestamp.txt came from: "collection" (the time of a collection), "source"
# (a zip entry's date, the exchange's time) or "given" (`--times DATE`). Kept beside the students'
# folders (a dot name: never a student id, and nbgrader's globs skip it), not inside them: grading
# copies a student's folder whole.
COLLECTION, SOURCE, GIVEN = "collection", "source", "given"


def _sources_path(course):
    return course.root / "submitted" / f".{course.assignment}.time-sources.json"


def _load_sources(course):
    """{student: where their stamp came from}; {} if none was recorded (a course collected before
    this record existed: its stamps count as collection times, as they were treated then)."""
    try:
        data = json.loads(_sources_path(course).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_sources(course, sources):
    """Write the record atomically (a crash leaves the old one)."""
    path = _sources_path(course)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(prefix=f"{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(sources, handle, indent=1, sort_keys=True)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def _collection_time(course, student, data, source):
    """Now; but if exactly this notebook was collected before, when it was collected then:
    collecting the same folder again must not make every student later. Only a stamp that said when
    the kit received the notebook is kept (a collection time, or a date the TA gave with --times): a
    zip's date, perhaps one the student chose, is exactly what `--times collected` is asked to replace."""
    earlier = course.submitted(student)
    try:
        if source != SOURCE and course.notebook(earlier).read_bytes() == data:
            text = (earlier / "timestamp.txt").read_text().strip()
            return dt.datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=dt.timezone.utc).timestamp()
    except (OSError, ValueError):  # nothing before, or a stamp we did not write: now it is
        pass
    return time.time()


def _store(course, student, candidate, data, sources):
    dest = course.submitted(student)
    if candidate.stamp is not None:
        received, source = candidate.stamp, GIVEN
    elif candidate.trusted_time:
        received, source = candidate.modified, SOURCE
    else:
        received, source = _collection_time(course, student, data, sources.get(student, COLLECTION)), COLLECTION
    staged = dest.with_name(f".{dest.name}.incoming")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    course.notebook(staged).write_bytes(data)
    stamp = dt.datetime.fromtimestamp(received, dt.timezone.utc)
    (staged / "timestamp.txt").write_text(stamp.strftime(STAMP_FORMAT))
    shutil.rmtree(dest, ignore_errors=True)
    staged.rename(dest)
    sources[student] = source
    renamed = "" if PurePosixPath(candidate.name).name == course.notebook(staged).name else f" from {candidate.name}"
    try:
        nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, the TA needs the same line
        return (f"collected{renamed}, but it is not a readable notebook ({type(exc).__name__}); "
                "grading will record 0 until a readable one is collected")
    return f"collected{renamed}"


HELP = "ingest submissions: a folder, an LMS zip, or nbgrader's exchange (--exchange)"


def add_arguments(parser):
    parser.add_argument("path", nargs="?", default=None,
                        help="folder of per-student folders or files, or a .zip of either (not with --exchange)")
    parser.add_argument("--pattern", default=None, metavar="REGEX",
                        help="regex with a (?P<student_id>...) group, matched on file names of flat downloads")
    parser.add_argument("--times", default=None, metavar="zip|collected|DATE",
                        help="submission times: 'zip' = each notebook's date in the zip (default for a zip, "
                             "an LMS download), 'collected' = now (default for a folder; use it for a zip a "
                             "student made), or a date like \"2026-12-14 23:00\" (deadline time zone) for "
                             "everything collected now")
    # --- nbgrader's exchange (a JupyterHub course): autograder/term/exchange.py ---
    parser.add_argument("--exchange", action="store_true",
                        help="collect each student's latest `nbgrader submit` from nbgrader's exchange instead of PATH")
    parser.add_argument("--exchange-root", metavar="DIR", default=None,
                        help="the exchange folder (implies --exchange; default: the one `release --exchange` uses)")


def run(course, args):
    if args.exchange or args.exchange_root:
        if args.path:
            raise CourseError("give either PATH or --exchange, not both")
        if getattr(args, "times", None) is not None:
            raise CourseError("--times is for PATH: the exchange records its own submission times")
        from autograder.term.exchange import collect_exchange  # it builds on this module's intake
        collect_exchange(course, args.exchange_root)
        return
    if not args.path:
        raise CourseError("say what to collect: a folder or .zip (PATH), or --exchange")
    collect(args.path, course, pattern=args.pattern or DEFAULT_PATTERN, times=getattr(args, "times", None))
