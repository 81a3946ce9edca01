"""`collect PATH`: bring submissions into submitted/<student>/backprop/ — from a folder of
per-student folders, a folder of files named by student, or an LMS zip of either.

One line per student says what was done or why not; nothing one student sent stops the others.
"""
import datetime as dt
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import nbformat

from .course import NOTEBOOK, Course, CourseError

# LMS downloads name files "<student>_<anything>.ipynb" (nbgrader's zip_collect default is alike).
DEFAULT_PATTERN = r"^(?P<student_id>[^_/\\]+)"
VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}
MAX_NOTEBOOK_BYTES = 50 * 2**20


@dataclass
class Candidate:
    student: str
    name: str          # where it came from, for messages
    modified: float    # POSIX time
    read: object       # () -> bytes


def collect(path, course=None, *, pattern=DEFAULT_PATTERN, echo=print):
    """Collect every student's notebook found under `path` (folder or .zip). Returns {student: line}."""
    course = course or Course()
    course.require_release()
    path = Path(path)
    if not path.exists():
        raise CourseError(f"{path} does not exist")
    regex = re.compile(pattern)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            candidates, skipped = _from_zip(archive, regex)
            lines = _collect_candidates(course, candidates, skipped)
    elif path.is_dir():
        candidates, skipped = _from_folder(path, regex)
        lines = _collect_candidates(course, candidates, skipped)
    else:
        raise CourseError(f"{path} is neither a folder nor a zip file")
    for student in sorted(lines):
        echo(f"{student}: {lines[student]}")
    return lines


def _student_of(relative, regex):
    """The student a submission belongs to: its top folder, or else the file name's pattern match."""
    parts = PurePosixPath(relative).parts
    if len(parts) > 1:
        return parts[0]
    match = regex.search(parts[0])
    return match.group("student_id") if match else None


def _is_notebook(relative):
    parts = PurePosixPath(relative).parts
    return relative.endswith(".ipynb") and not IGNORED_PARTS.intersection(parts) \
        and not parts[-1].startswith("._")


def _from_folder(root, regex):
    candidates, skipped = [], []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        if not _is_notebook(relative):
            skipped.append(relative)
            continue
        candidates.append(Candidate(_student_of(relative, regex), relative, file.stat().st_mtime,
                                    lambda file=file: file.read_bytes()))
    return candidates, skipped


def _from_zip(archive, regex):
    candidates, skipped = [], []
    entries = [e for e in archive.infolist() if not e.is_dir()]
    # An LMS zip often wraps the class in one folder; look inside it (but a zip of one student's
    # folder holding one notebook is that student's).
    parts = [PurePosixPath(e.filename).parts for e in entries]
    notebooks = sum(1 for e in entries if e.filename.endswith(".ipynb"))
    strip = (len({p[0] for p in parts}) == 1 and all(len(p) > 1 for p in parts)
             and (notebooks > 1 or any(len(p) > 2 for p in parts)))
    for entry in entries:
        relative = "/".join(PurePosixPath(entry.filename).parts[1 if strip else 0:])
        if not _is_notebook(relative):
            skipped.append(relative)
            continue
        if entry.file_size > MAX_NOTEBOOK_BYTES:
            skipped.append(f"{relative} (larger than {MAX_NOTEBOOK_BYTES >> 20} MB)")
            continue
        modified = dt.datetime(*entry.date_time).timestamp()
        candidates.append(Candidate(_student_of(relative, regex), relative, modified,
                                    lambda entry=entry: archive.read(entry)))
    return candidates, skipped


def _pick(notebooks):
    """One notebook per student: the one named like the assignment, else the newest."""
    named = [c for c in notebooks if PurePosixPath(c.name).name == f"{NOTEBOOK}.ipynb"]
    return max(named or notebooks, key=lambda c: c.modified)


def _collect_candidates(course, candidates, skipped):
    by_student, lines = {}, {}
    for candidate in candidates:
        if candidate.student is None:
            lines[f"? {candidate.name}"] = "no student id in the file name: not collected"
        elif not VALID_ID.match(candidate.student) or candidate.student in (".", ".."):
            lines[f"? {candidate.student!r}"] = f"not a usable student id ({candidate.name}): not collected"
        else:
            by_student.setdefault(candidate.student, []).append(candidate)
    for student, notebooks in by_student.items():
        chosen = _pick(notebooks)
        lines[student] = _store(course, student, chosen)
        if len(notebooks) > 1:
            others = ", ".join(c.name for c in notebooks if c is not chosen)
            lines[student] += f" (also found {others}: took {chosen.name})"
    if skipped:
        lines["(other files)"] = (f"{len(skipped)} other files ignored (not notebooks, checkpoints or macOS "
                                  f"metadata), e.g. {skipped[0]}")
    return lines


def _store(course, student, candidate):
    data = candidate.read()
    dest = course.submitted(student)
    staged = dest.with_name(f".{dest.name}.incoming")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    (staged / f"{NOTEBOOK}.ipynb").write_bytes(data)
    stamp = dt.datetime.fromtimestamp(candidate.modified, dt.timezone.utc)
    (staged / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
    shutil.rmtree(dest, ignore_errors=True)
    staged.rename(dest)
    renamed = "" if PurePosixPath(candidate.name).name == f"{NOTEBOOK}.ipynb" else f" from {candidate.name}"
    try:
        nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, the TA needs the same line
        return (f"collected{renamed}, but it is not a readable notebook ({type(exc).__name__}); "
                "grading will record 0 until a readable one is collected")
    return f"collected{renamed}"
