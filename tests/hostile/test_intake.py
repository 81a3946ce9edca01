"""collect, tried as a hostile student: links, FIFOs, oversized and lying zips, damaged entries,
unreadable files and ids that name the grader's own files. Each test asserts who was collected,
the exact line each student gets, and that nothing else in the course changed."""
import contextlib
import errno
import hashlib
import io
import json
import os
import signal
import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from autograder.course import CourseError
from autograder.verbs import collect as intake
from autograder.verbs.collect import collect, reserved_id

GOOD = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
# What a student must never get graded as theirs: stands in for the instructor's source notebook.
MODEL_ANSWERS = json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": "MODEL ANSWER 42"}],
                            "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def course(collect_course):
    return collect_course


@pytest.fixture
def instructor_notebook(tmp_path):
    path = tmp_path / "instructor" / "source" / "assignment.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(MODEL_ANSWERS)
    return path


@contextlib.contextmanager
def deadline(seconds=20):
    """Fail instead of hanging: a blocked open() of a FIFO is interrupted by SIGALRM."""
    def expired(*_):
        raise TimeoutError(f"collect still running after {seconds} s: it blocked on something")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def tree(root):
    """Everything under root, links not followed: {relative path: what it is}."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[path.relative_to(root).as_posix()] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                found[path.relative_to(root).as_posix()] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                found[path.relative_to(root).as_posix()] = (stat.S_IFMT(info.st_mode),)
    return found


def changed(before, after):
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def stored(*students):
    """The paths collect adds for these (first-time) students (and its record of where each
    student's submission time came from)."""
    paths = ["submitted", "submitted/.backprop.time-sources.json"] if students else []
    for s in students:
        paths += [f"submitted/{s}", f"submitted/{s}/backprop", f"submitted/{s}/backprop/assignment.ipynb",
                  f"submitted/{s}/backprop/timestamp.txt"]
    return sorted(paths)


def run(path, course, **kwargs):
    """collect, guarded by a deadline, checking that the source tree it read is left as it was."""
    source_before = tree(path) if Path(path).is_dir() else Path(path).read_bytes()
    with deadline():
        lines = collect(path, course, echo=lambda *_: None, **kwargs)
    assert (tree(path) if Path(path).is_dir() else Path(path).read_bytes()) == source_before
    return lines


def notebook_of(course, student):
    return course.notebook(course.submitted(student)).read_text()


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# --- links -------------------------------------------------------------------------------------

def test_linked_notebooks_and_folders_are_never_followed(course, tmp_path, instructor_notebook):
    root = _write(tmp_path / "class", {"cy/assignment.ipynb": GOOD, "dee/assignment.ipynb": GOOD})
    (root / "ada").mkdir()
    (root / "ada" / "assignment.ipynb").symlink_to(instructor_notebook)      # a linked notebook
    (root / "bob").symlink_to(instructor_notebook.parent, target_is_directory=True)  # a linked folder
    (root / "dee" / "extra.ipynb").symlink_to(instructor_notebook)         # a link beside a real one
    (root / "eve_attempt1.ipynb").symlink_to(instructor_notebook)          # a flat LMS file name
    before = tree(course.root)

    lines = run(root, course)

    assert lines == {
        "ada": "not collected: a link (ada/assignment.ipynb)",
        "bob": "not collected: a link (bob)",
        "cy": "collected",
        "dee": "collected; not collected: a link (dee/extra.ipynb)",
        "eve": "not collected: a link (eve_attempt1.ipynb)",
    }
    assert course.submitted_students() == ["cy", "dee"]
    assert notebook_of(course, "dee") == GOOD
    assert changed(before, tree(course.root)) == stored("cy", "dee")
    assert not any("MODEL ANSWER" in p.read_text() for p in course.root.joinpath("submitted").rglob("*.ipynb"))


def test_a_link_does_not_replace_the_notebook_collected_earlier_and_the_line_says_so(course, tmp_path,
                                                                                     instructor_notebook):
    run(_write(tmp_path / "first", {"ada/assignment.ipynb": GOOD}), course)
    before = tree(course.root)
    late = tmp_path / "late" / "ada"
    late.mkdir(parents=True)
    (late / "assignment.ipynb").symlink_to(instructor_notebook)

    lines = run(late.parent, course)

    assert lines == {"ada": "not collected: a link (ada/assignment.ipynb); the notebook collected earlier stays"}
    assert notebook_of(course, "ada") == GOOD
    assert changed(before, tree(course.root)) == []


def test_symlink_entries_in_a_zip_are_not_collected(course, tmp_path):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("ada/assignment.ipynb", "bob", "dee/extra.ipynb"):
            link = zipfile.ZipInfo(name)
            link.create_system = 3                                  # made on Unix: the mode is honoured
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(link, "../../course/source/backprop/assignment.ipynb")  # a link's data is its target
        folder = zipfile.ZipInfo("cy/notes")                      # a folder's mode, but no "/" at the end
        folder.create_system, folder.external_attr = 3, (stat.S_IFDIR | 0o755) << 16
        z.writestr(folder, "")
        z.writestr("cy/assignment.ipynb", GOOD)
        z.writestr("dee/assignment.ipynb", GOOD)
    before = tree(course.root)

    lines = run(archive, course)

    assert lines == {
        "ada": "not collected: a link (ada/assignment.ipynb)",
        "bob": "not collected: a link (bob)",
        "cy": "collected",
        "dee": "collected; not collected: a link (dee/extra.ipynb)",
        "(other files)": "1 other files ignored (not notebooks, checkpoints or macOS metadata), e.g. cy/notes",
    }
    assert changed(before, tree(course.root)) == stored("cy", "dee")
    assert notebook_of(course, "cy") == notebook_of(course, "dee") == GOOD


# --- special files -----------------------------------------------------------------------------

def test_fifos_named_like_notebooks_are_skipped_without_blocking(course, tmp_path):
    root = _write(tmp_path / "class", {"bob/assignment.ipynb": GOOD})
    (root / "ada").mkdir()
    os.mkfifo(root / "ada" / "assignment.ipynb")     # nobody ever writes: opening it to read would block
    os.mkfifo(root / "cy_attempt.ipynb")
    before = tree(course.root)

    lines = run(root, course)

    assert lines == {
        "ada": "not collected: not a regular file (ada/assignment.ipynb)",
        "bob": "collected",
        "cy": "not collected: not a regular file (cy_attempt.ipynb)",
    }
    assert changed(before, tree(course.root)) == stored("bob")


def test_a_file_swapped_for_a_fifo_or_a_link_after_the_check_is_refused_not_opened(tmp_path):
    """Between listing and reading a file can change; the read itself refuses links and FIFOs."""
    fifo, target, link = tmp_path / "fifo.ipynb", tmp_path / "real.ipynb", tmp_path / "link.ipynb"
    os.mkfifo(fifo)
    target.write_text(GOOD)
    link.symlink_to(target)
    with deadline(), pytest.raises(intake.Refused, match=r"^is not a regular file$"):
        intake._read_file(fifo)(1000)
    with pytest.raises(intake.Refused, match=r"^is a link$"):
        intake._read_file(link)(1000)
    assert intake._read_file(target)(1000) == GOOD.encode()


# --- size --------------------------------------------------------------------------------------

def test_the_size_limit_holds_for_folders_before_anything_is_read(course, tmp_path, monkeypatch):
    root = _write(tmp_path / "class", {"bob/assignment.ipynb": GOOD, "ada/scratch.ipynb": GOOD})
    with open(root / "ada" / "assignment.ipynb", "wb") as big:   # sparse: 50 MB + 1 byte, costs no disk
        big.truncate(intake.MAX_NOTEBOOK_BYTES + 1)
    reads = []
    real = intake._read_file
    monkeypatch.setattr(intake, "_read_file",
                        lambda path: lambda limit: reads.append(path.parent.name) or real(path)(limit))
    before = tree(course.root)

    lines = run(root, course)

    # ada's scratch notebook is not taken instead: grading the wrong notebook would be worse.
    assert lines == {"ada": "not collected: ada/assignment.ipynb is larger than 50 MB (also found ada/scratch.ipynb)",
                     "bob": "collected"}
    assert reads == ["bob"]                               # bob's only: ada's was refused from its size
    assert changed(before, tree(course.root)) == stored("bob")


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_the_same_limit_for_folders_and_zips_exactly_at_the_boundary(course, tmp_path, monkeypatch, as_zip):
    monkeypatch.setattr(intake, "MAX_NOTEBOOK_BYTES", 1000)
    files = {"ada/assignment.ipynb": GOOD + " " * (1001 - len(GOOD)),   # one byte too many
             "bob/assignment.ipynb": GOOD + " " * (1000 - len(GOOD))}   # exactly the limit
    if as_zip:
        source = tmp_path / "class.zip"
        with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in files.items():
                z.writestr(name, text)
    else:
        source = _write(tmp_path / "class", files)
    before = tree(course.root)

    lines = run(source, course)

    assert lines == {"ada": "not collected: ada/assignment.ipynb is larger than 1000 bytes", "bob": "collected"}
    assert changed(before, tree(course.root)) == stored("bob")
    assert notebook_of(course, "bob") == files["bob/assignment.ipynb"]


def test_a_file_that_grows_after_it_was_listed_is_read_only_up_to_the_limit(course, tmp_path, monkeypatch):
    """The size from listing is not trusted either: the read stops at limit + 1 bytes."""
    monkeypatch.setattr(intake, "MAX_NOTEBOOK_BYTES", 1000)
    root = _write(tmp_path / "class", {"ada/assignment.ipynb": GOOD, "bob/assignment.ipynb": GOOD})
    real_from_folder, real_read_file = intake._from_folder, intake._read_file
    returned = []

    def listed_then_grown(folder, regex):
        found = real_from_folder(folder, regex)
        with open(folder / "ada" / "assignment.ipynb", "a") as grow:
            grow.write(" " * 10_000)
        return found

    def measured(path):
        return lambda limit: returned.append(len(data := real_read_file(path)(limit))) or data

    monkeypatch.setattr(intake, "_from_folder", listed_then_grown)
    monkeypatch.setattr(intake, "_read_file", measured)
    before = tree(course.root)

    with deadline():
        lines = collect(root, course, echo=lambda *_: None)

    assert lines == {"ada": "not collected: ada/assignment.ipynb is larger than 1000 bytes", "bob": "collected"}
    assert returned == [1001, len(GOOD)]
    assert changed(before, tree(course.root)) == stored("bob")


# --- zips that lie or are damaged --------------------------------------------------------------

def _patch(data, name, **fields):
    """Rewrite header fields of one zip entry, in its local and its central directory header, as a
    hostile zip tool would: flag, method, usize (the uncompressed size), offset (central only)."""
    data = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name)
    local = {"flag": 6, "method": 8, "usize": 22}
    central = {"flag": 8, "method": 10, "usize": 24, "offset": 42}
    start = data.index(b"PK\x01\x02")
    while data[start + 46:start + 46 + len(name)] != name.encode():
        start = data.index(b"PK\x01\x02", start + 4)
    for field, value in fields.items():
        width = "<H" if field in ("flag", "method") else "<I"
        struct.pack_into(width, data, start + central[field], value)
        if field in local:
            struct.pack_into(width, data, info.header_offset + local[field], value)
    return bytes(data)


def _data_offset(data, name):
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


def test_a_zip_whose_header_lies_about_the_size_cannot_exhaust_memory(course, tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_NOTEBOOK_BYTES", 1000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ada/assignment.ipynb", GOOD + " " * 200 * 2**20)   # 200 MB that deflate to ~200 KB
        z.writestr("bob/assignment.ipynb", GOOD)
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(_patch(buffer.getvalue(), "ada/assignment.ipynb", usize=500))  # "only 500 bytes"
    before = tree(course.root)

    tracemalloc.start()
    try:
        lines = run(archive, course)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert lines == {"ada": "not collected: ada/assignment.ipynb is damaged in the zip "
                            "(Bad CRC-32 for file 'ada/assignment.ipynb')",
                     "bob": "collected"}
    assert peak < 16 * 2**20, f"collect held {peak >> 20} MB for a zip that claims 500 bytes"
    assert changed(before, tree(course.root)) == stored("bob")


def test_one_damaged_entry_costs_only_its_student(course, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for student in ("ada", "bob", "cy", "dan", "eve", "fay"):
            z.writestr(f"{student}/assignment.ipynb", GOOD,
                       compress_type=zipfile.ZIP_DEFLATED if student == "dan" else zipfile.ZIP_STORED)
    data = bytearray(buffer.getvalue())
    data[_data_offset(bytes(data), "ada/assignment.ipynb") + 3] ^= 0xFF        # bad CRC
    dan = _data_offset(bytes(data), "dan/assignment.ipynb")
    data[dan:dan + 4] = b"\xff\xff\xff\xff"                                    # not a deflate stream
    data = _patch(bytes(data), "cy/assignment.ipynb", method=99)              # unknown compression
    data = _patch(data, "eve/assignment.ipynb", flag=0x1)                     # "encrypted"
    data = _patch(data, "fay/assignment.ipynb", offset=len(data) - 20)        # truncated: 20 bytes left
    archive = tmp_path / "download.zip"
    archive.write_bytes(data)
    before = tree(course.root)

    lines = run(archive, course)

    assert lines == {
        "ada": "not collected: ada/assignment.ipynb is damaged in the zip (Bad CRC-32 for file 'ada/assignment.ipynb')",
        "bob": "collected",
        "cy": "not collected: cy/assignment.ipynb is damaged in the zip (That compression method is not supported)",
        "dan": "not collected: dan/assignment.ipynb is damaged in the zip "
               "(Error -3 while decompressing data: invalid block type)",
        "eve": "not collected: eve/assignment.ipynb is encrypted (a password-protected zip)",
        "fay": "not collected: fay/assignment.ipynb is damaged in the zip (Truncated file header)",
    }
    assert changed(before, tree(course.root)) == stored("bob")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_wholly_damaged_zip_is_one_clear_error(course, tmp_path, damage):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("ada/assignment.ipynb", GOOD)
    archive = tmp_path / "download.zip"
    archive.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2] if damage == "truncated"
                        else os.urandom(4096))
    before = tree(course.root)

    with pytest.raises(CourseError) as error:
        collect(archive, course, echo=lambda *_: None)

    assert str(error.value) == f"{archive} is not a readable zip file (File is not a zip file): download it again"
    assert changed(before, tree(course.root)) == []


# --- unreadable files --------------------------------------------------------------------------

def test_an_unreadable_or_vanished_file_costs_only_its_student(course, tmp_path, monkeypatch):
    root = _write(tmp_path / "class", {f"{s}/assignment.ipynb": GOOD for s in ("ada", "bob", "cy", "dan")})
    real_open, real_scandir, real_from_folder = os.open, os.scandir, intake._from_folder

    def denied_open(path, *args, **kwargs):   # root can read anything, so chmod 000 proves nothing here
        if str(path).endswith("ada/assignment.ipynb"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    def denied_scandir(path=".", *args):
        if str(path).endswith("class/dan"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_scandir(path, *args)

    def listed_then_vanished(folder, regex):
        found = real_from_folder(folder, regex)
        (folder / "cy" / "assignment.ipynb").unlink()     # gone between listing and reading
        return found

    monkeypatch.setattr(os, "open", denied_open)
    monkeypatch.setattr(os, "scandir", denied_scandir)
    monkeypatch.setattr(intake, "_from_folder", listed_then_vanished)
    before = tree(course.root)

    with deadline():
        lines = collect(root, course, echo=lambda *_: None)

    assert lines == {
        "ada": "not collected: ada/assignment.ipynb could not be read (Permission denied)",
        "bob": "collected",
        "cy": "not collected: cy/assignment.ipynb could not be read (No such file or directory)",
        "dan": "not collected: dan could not be read (Permission denied)",
    }
    assert changed(before, tree(course.root)) == stored("bob")


# --- ids that are the grader's own names -------------------------------------------------------

def test_ids_that_collide_with_the_graders_names_are_refused(course, tmp_path):
    names = ["gradebook.db", "GradeBook.DB", "gradebook.db-journal", "ada-verify", "Bob-VERIFY",
             "nbgrader_config.py", "grading_status.json", "grades.csv", "grades.json", "source", "Release",
             "submitted", "autograded", "feedback", "exchange", "solution", "inbound", "outbound"]
    root = _write(tmp_path / "class", {f"{name}/assignment.ipynb": GOOD for name in names}
                  | {"ada/assignment.ipynb": GOOD, "reports_attempt1.ipynb": GOOD})
    before = tree(course.root)

    lines = run(root, course)

    expected = {"ada": "collected"}
    for name in names:
        reason = (f"{name!r} ends in '-verify', as the grader's own folders do" if name.lower().endswith("-verify")
                  else f"{name!r} is a name the grader uses")
        expected[f"? {name!r}"] = f"not a usable student id: {reason} ({name}/assignment.ipynb): not collected"
    expected["? 'reports'"] = ("not a usable student id: 'reports' is a name the grader uses "
                               "(reports_attempt1.ipynb): not collected")     # a flat LMS file name
    assert lines == expected
    assert course.submitted_students() == ["ada"]
    assert changed(before, tree(course.root)) == stored("ada")


@pytest.mark.parametrize("student, reason", [
    ("gradebook.db", "'gradebook.db' is a name the grader uses"),
    ("GRADEBOOK.DB-wal", "'GRADEBOOK.DB-wal' is a name the grader uses"),
    ("feedback", "'feedback' is a name the grader uses"),
    ("source_with_tests", "'source_with_tests' is a name the grader uses"),
    ("ada-verify", "'ada-verify' ends in '-verify', as the grader's own folders do"),
    (".ada.incoming", "'.ada.incoming' starts with a dot, as the grader's hidden and staging folders do"),
    ("ada", ""), ("verify", ""), ("ada-verified", ""), ("sources", ""), ("gradebook", ""), ("backprop", ""),
])
def test_reserved_id_is_one_check_grade_can_call_too(student, reason):
    assert reserved_id(student) == reason


def test_a_students_own_zip_cannot_name_a_classmate(course, tmp_path):
    """eve hands in her folder zipped, with a classmate's name inside: the zip is eve's. Only a
    wrapping folder that holds several students is looked into (an LMS class download)."""
    archive = tmp_path / "eve.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("eve/honest/assignment.ipynb", GOOD)
    before = tree(course.root)

    lines = run(archive, course)

    assert lines == {"eve": "collected"}
    assert changed(before, tree(course.root)) == stored("eve")

    class_zip = tmp_path / "class.zip"
    with zipfile.ZipFile(class_zip, "w") as z:
        z.writestr("backprop_download/ada/assignment.ipynb", GOOD)
        z.writestr("backprop_download/bob/assignment.ipynb", GOOD)
    assert run(class_zip, course) == {"ada": "collected", "bob": "collected"}
