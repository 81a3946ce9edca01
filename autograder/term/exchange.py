"""nbgrader's own exchange, for a JupyterHub course: `release --exchange` publishes the student
version where `nbgrader fetch_assignment` finds it, `collect --exchange` brings in what students
sent with `nbgrader submit`.

Releasing is nbgrader's ExchangeReleaseAssignment as it is. Collecting is nbgrader's ExchangeCollect
choosing each student's latest submission (its init_src), with its copy step replaced: nbgrader's
copies each inbound folder with shutil.copytree, which follows links and opens FIFOs, and the
inbound folder is writable by every student. Here each chosen folder goes through the kit's intake
(autograder.verbs.collect): one notebook, the size limit, no links or special files, no reserved
ids, one line per student, a bad entry costs only its student.

Every path below the inbound folder is opened relative to its parent's descriptor with O_NOFOLLOW,
so a student who swaps their folder (or a folder in it) for a link while collect runs gets
"a link", never the file the link names.

The submission time is not the one the student's `nbgrader submit` wrote (the entry's name and its
timestamp.txt: both written by the student's process, so any value they like). It is the latest
status change (ctime) of the collected notebook and of every folder between it and the inbound
folder, never later than the collect itself. The kernel sets ctime to the current time on every
write, rename, link or chmod and offers no call to set it back, so a student can make their
submission look later, never earlier.

Which entry is a student's latest is decided the same way: by the entry folder's ctime, not by the
time in its name (anyone can plant "ada+backprop+2099-..." in the inbound folder, and nbgrader's
choice by name would then ignore everything ada submits). An entry owned by the student it names
wins over one owned by someone else, a real folder over a link; an entry that another hub user
owns is refused when the student is a Unix user of their own (on a hub where everyone is the same
Unix user, e.g. jovyan, ownership tells nothing: the folder's owner stays a warning on the line,
and only the ctime order protects).
"""
import datetime as dt
import errno
import functools
import logging
import os
import stat
import time
from pathlib import Path

from nbgrader.exchange import ExchangeError
from nbgrader.exchange.default.collect import ExchangeCollect
from traitlets import Dict
from traitlets.config import Config, JSONFileConfigLoader, PyFileConfigLoader

from autograder.course import Course, CourseError, failure_line, open_api
from autograder.verbs import collect as intake

# What nbgrader's submit adds to every folder it sends: not the student's work.
SUBMIT_FILES = frozenset({"timestamp.txt", "submission_secret.txt"})
# Deeper than any real assignment folder; bounds the walk over a folder a student built to be deep.
MAX_DEPTH = 8
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# An entry whose name nbgrader cannot read a time from sorts before every real submission.
UNREADABLE = dt.datetime.min


# --- where the exchange is -----------------------------------------------------------------------

def _jupyter_config():
    """What plain `nbgrader` reads besides the course's file: nbgrader_config.{json,py} in Jupyter's
    config path (e.g. /etc/jupyter, ~/.jupyter), where a hub's admin usually sets Exchange.root."""
    from jupyter_core.paths import jupyter_config_path

    merged = Config()
    for folder in reversed(jupyter_config_path()):  # the first folder wins, as in Jupyter apps
        for loader in (JSONFileConfigLoader("nbgrader_config.json", path=folder),
                       PyFileConfigLoader("nbgrader_config.py", path=folder)):
            try:
                merged.merge(loader.load_config())
            except Exception:  # noqa: BLE001 - a missing or broken system file: nbgrader would skip it too
                continue
    return merged


def exchange_root(course, given=None):
    """The exchange folder: `given`, else Exchange.root from the course's nbgrader_config.py, else
    from Jupyter's config path (what students' `nbgrader fetch_assignment` reads on the hub), else
    <course>/exchange (open_api's default)."""
    if given:
        return Path(given).resolve()
    for config in (course.load_config(), _jupyter_config()):
        if "root" in config.Exchange:
            return Path(config.Exchange.root)
    return course.root / "exchange"


def _api(course, root, **settings):
    """nbgrader's API on the course with the exchange at `root` and the given Class.trait settings."""
    config = Config()
    config.Exchange.root = str(root)
    for key, value in settings.items():
        section, trait = key.split(".")
        config[section][trait] = value
    return open_api(course, config)


# --- release ---------------------------------------------------------------------------------------

def publish(course, root=None, echo=print):
    """Copy release/<assignment>/ into the exchange's outbound folder with nbgrader's
    ExchangeReleaseAssignment, replacing what was published before. Returns the exchange root."""
    root = exchange_root(course, root)
    # force: a second release replaces the published version (students who fetched keep theirs).
    api = _api(course, root, **{"ExchangeReleaseAssignment.force": True})
    result = api.release_assignment(course.assignment)
    if not result["success"]:
        raise CourseError(f"publishing to the exchange {root} failed: {failure_line(result)}")
    course_id = api.coursedir.course_id
    echo(f"Published '{course.assignment}' to the exchange {root}. Students run: nbgrader fetch_assignment "
         f"{course.assignment} --course {course_id}"
         + ("" if str(root) == _nbgrader_default_root() else f" (with Exchange.root = {root} in their config)"))
    return root


def _nbgrader_default_root():
    from nbgrader.exchange.default.exchange import Exchange
    return Exchange.class_traits()["root"].default_value


# --- collect -----------------------------------------------------------------------------------------

class KitExchangeCollect(ExchangeCollect):
    """nbgrader's ExchangeCollect: the same choice of one inbound folder per student (the latest by
    the time in its name, or the latest before the due date with before_duedate), brought into
    submitted/ by the kit's intake instead of copytree. Usable as nbgrader's plugin too
    (c.ExchangeFactory.collect = "autograder.term.exchange.KitExchangeCollect"): then plain
    `nbgrader collect` and formgrader's Collect button get the same checks and log the same lines."""

    lines = Dict(help="student (or '? name') -> the line a TA reads; filled by copy_files")

    def _path_to_record(self, path):
        """nbgrader's record of an inbound entry, its time the entry's ctime (the name's is kept as
        "claimed"), with its owner and whether it is a real folder; a name nbgrader cannot read a
        time from is recorded (and refused later) instead of stopping the whole collect."""
        try:
            record = super()._path_to_record(path)
        except Exception as exc:  # noqa: BLE001 - any parser error: the name is the student's doing
            name = os.path.basename(path)
            record = {"username": name.split("+", 1)[0], "filename": name, "timestamp": UNREADABLE,
                      "unreadable": intake._short(exc)}
        record.update(_entry_facts(path))
        if record.get("unreadable"):
            record["timestamp"] = UNREADABLE
        return record

    def _sort_by_timestamp(self, records):
        """A student's entries, the one to collect first (nbgrader takes the first): the student's
        own before anyone else's, a folder before a link or file, then the latest ctime."""
        return sorted(records, key=_preference, reverse=True)

    def copy_files(self):
        course = Course(self.coursedir.root, self.coursedir.assignment_id)
        now = time.time()
        # The whole folder a student submits (helpers, data) is expected here: other files are not
        # listed, unlike in an LMS download where they hint at a misnamed notebook.
        items, owners = [], {}
        inbound = os.open(self.inbound_path, OPEN_DIR)
        try:
            for record in sorted(self.src_records, key=lambda r: r["filename"]):
                found, owner = _entry_items(inbound, record, now)
                if self.check_owner and (other := _other_user(record["username"], owner)):
                    # planted by another hub user: never graded as this student's work
                    found = [intake.Rejected(record["username"], record["filename"],
                                             f"its exchange folder belongs to {other}, another hub user")]
                    owner = None
                items.extend(found)
                owners[record["username"]] = owner
            lines = intake._collect_candidates(course, items, [])
        finally:
            os.close(inbound)
        if self.check_owner:
            for student, line in lines.items():
                if warning := _owner_warning(student, owners.get(student)):
                    lines[student] = f"{line}; {warning}"
        self.lines = lines
        for student in sorted(lines):  # under plain `nbgrader collect` and formgrader, these are the lines
            level = logging.INFO if lines[student].startswith("collected") and "warning" not in lines[student] \
                else logging.WARNING
            self.log.log(level, "%s: %s", student, lines[student])


def _entry_facts(path):
    """What the kernel, not the student, says about an inbound entry: its ctime (as nbgrader's
    naive UTC), owner and whether it is a folder (not a link). lstat: a link is not followed."""
    try:
        info = os.lstat(path)
    except OSError:
        return {"timestamp": UNREADABLE, "uid": None, "folder": False}
    ctime = dt.datetime.fromtimestamp(info.st_ctime, dt.timezone.utc).replace(tzinfo=None)
    return {"timestamp": ctime, "uid": info.st_uid, "folder": stat.S_ISDIR(info.st_mode)}


@functools.lru_cache(maxsize=4096)  # asked once per inbound entry: thousands of times in a large class
def _user_name(uid):
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, TypeError):
        return None


def _preference(record):
    """Sort key of a student's inbound entries: higher is collected first."""
    own = record.get("uid") is not None and _user_name(record["uid"]) == record["username"]
    usable = bool(record.get("folder")) and not record.get("unreadable")
    return own, usable, record["timestamp"]


def _other_user(student, uid):
    """The name of the hub user who owns `student`'s entry when that is provably someone else: the
    owner is not root or whoever runs collect, and `student` is a Unix user of their own here (on a
    hub where everyone is one user, e.g. jovyan, ownership proves nothing and this says "")."""
    import pwd

    if uid is None or uid in (0, os.getuid()):
        return ""
    owner = _user_name(uid)
    try:
        own_uid = pwd.getpwnam(student).pw_uid
    except KeyError:
        return ""
    return owner if owner and own_uid != uid else ""


def _owner_warning(student, uid):
    """nbgrader's check_owner as part of the student's line: a folder submitted under one student's
    name by another hub user. Folders of root or of whoever runs collect are not a student's doing
    (and on hubs where every user is the same Unix user, e.g. jovyan, the check says nothing)."""
    import pwd

    if uid is None or uid in (0, os.getuid()):
        return ""
    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = f"uid {uid}"
    return "" if owner == student else f"warning: its exchange folder belongs to user {owner}, not {student}"


def collect_exchange(course, root=None, echo=print):
    """Collect the assignment's latest submission of every student from the exchange's inbound
    folder into submitted/<student>/<assignment>/. Returns {student: line}."""
    course.require_release()
    root = exchange_root(course, root)
    api = _api(course, root)
    inbound = root / api.coursedir.course_id / "inbound"
    if not inbound.is_dir():  # nbgrader's own message here is written for students
        raise CourseError(f"{root} has no inbound folder for course '{api.coursedir.course_id}': publish with "
                          f"`release --exchange` first, or give the hub's exchange with --exchange-root DIR")
    api.coursedir.assignment_id = course.assignment
    app = KitExchangeCollect(coursedir=api.coursedir, authenticator=api.authenticator, parent=api)
    try:
        app.start()
    except ExchangeError as exc:
        raise CourseError(f"cannot collect from the exchange {root}: {str(exc).splitlines()[0]}") from None
    lines = dict(app.lines)
    if not lines:
        echo(f"No submissions of '{course.assignment}' in {Path(app.inbound_path)} yet.")
    for student in sorted(lines):
        echo(f"{student}: {lines[student]}")
    return lines


def _entry_items(inbound, record, now):
    """The intake's candidates and rejections for one inbound entry (a folder nbgrader's submit
    made), with the student id from the entry's name; and the entry's owner (uid, or None)."""
    student, entry = record["username"], record["filename"]
    if record.get("unreadable"):
        return [intake.Rejected(student, entry, f"an exchange entry without a time nbgrader can read ({entry})")], None
    try:
        fd = os.open(entry, OPEN_DIR, dir_fd=inbound)
    except OSError as exc:
        return [intake.Rejected(student, entry, _open_problem(exc, inbound, entry, entry))], None
    try:
        found, info = [], os.fstat(fd)
        _scan(inbound, (entry,), fd, info.st_ctime, student, now, found)
        return found, info.st_uid
    finally:
        os.close(fd)


def _open_problem(exc, dir_fd, name, shown):
    """The intake's note for `name` (in the folder dir_fd, `shown` in messages) that could not be
    opened as a folder or file. Opening a link with O_NOFOLLOW fails with ELOOP, or ENOTDIR when
    a folder was asked for; which of the two it was, lstat says."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            kind = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except OSError:
            kind = 0
        if stat.S_ISLNK(kind) or exc.errno == errno.ELOOP:
            return f"{intake.LINK} ({shown})"
        return f"{intake.SPECIAL} ({shown}: the exchange holds folders)"
    return f"{shown} could not be read ({intake._short(exc)})"


def _scan(inbound, parts, fd, ctime, student, now, found):
    """Classify everything in the open folder `fd` (inbound/<parts>) as the folder intake does;
    `ctime` is the latest ctime of the folders above it. Opens nothing through a link."""
    relative = "/".join(parts)
    try:
        with os.scandir(fd) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        found.append(intake.Rejected(student, relative, f"{relative} could not be read ({intake._short(exc)})"))
        return
    for entry in entries:
        child = f"{relative}/{entry.name}"
        if len(parts) == 1 and entry.name in SUBMIT_FILES:
            continue
        try:
            info = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            found.append(intake.Rejected(student, child, f"{child} could not be read ({intake._short(exc)})"))
            continue
        if stat.S_ISDIR(info.st_mode) and not intake._is_junk(child):
            if len(parts) >= MAX_DEPTH:
                continue
            try:
                sub = os.open(entry.name, OPEN_DIR, dir_fd=fd)
            except OSError as exc:
                found.append(intake.Rejected(student, child, _open_problem(exc, fd, entry.name, child)))
                continue
            try:
                _scan(inbound, (*parts, entry.name), sub, max(ctime, os.fstat(sub).st_ctime), student, now, found)
            finally:
                os.close(sub)
        elif intake._is_junk(child) or stat.S_ISDIR(info.st_mode):
            continue
        elif stat.S_ISLNK(info.st_mode):
            found.append(intake.Rejected(student, child, f"{intake.LINK} ({child})"))
        elif not stat.S_ISREG(info.st_mode):
            found.append(intake.Rejected(student, child, f"{intake.SPECIAL} ({child})"))
        elif not intake._is_notebook(child):
            continue
        else:
            limit = intake.MAX_NOTEBOOK_BYTES
            refused = f"is larger than {intake._size(limit)}" if info.st_size > limit else ""
            candidate = intake.Candidate(student, child, min(max(ctime, info.st_ctime), now), None, refused)
            candidate.read = _reader(inbound, (*parts, entry.name), candidate)
            found.append(candidate)


def _reader(inbound, parts, candidate):
    """Read the notebook at inbound/<parts> afresh, every component without following links; the
    candidate's time becomes the latest ctime seen on the way (a change since the scan counts)."""
    def read(limit):
        fds, latest = [], candidate.modified
        try:
            base, name = inbound, parts[0]
            try:
                for name in parts[:-1]:
                    base = os.open(name, OPEN_DIR, dir_fd=base)
                    fds.append(base)
                    latest = max(latest, os.fstat(base).st_ctime)
                name = parts[-1]
                fd = os.open(name, OPEN_FILE, dir_fd=base)
            except OSError as exc:   # swapped for a link (or removed) since the scan
                why = _open_problem(exc, base, name, name)
                raise intake.Refused(f"is {intake.LINK}" if why.startswith(intake.LINK)
                                     else f"could not be read ({intake._short(exc)})") from None
            with os.fdopen(fd, "rb") as file:
                info = os.fstat(file.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise intake.Refused(f"is {intake.SPECIAL}")
                try:
                    data = file.read(limit + 1)
                except OSError as exc:
                    raise intake.Refused(f"could not be read ({intake._short(exc)})") from None
                # after the read: a write during it moved ctime on, and the later time is the safe one
                candidate.modified = min(max(latest, info.st_ctime, os.fstat(file.fileno()).st_ctime), time.time())
                return data
        finally:
            for fd in fds:
                os.close(fd)
    return read
