"""A JupyterHub course through nbgrader's own exchange: `release --exchange`, students' own
`nbgrader fetch_assignment` and `nbgrader submit`, `collect --exchange`, `grade` — and what a
student can put in the world-writable inbound folder costs only that student."""
import datetime as dt
import os
import subprocess
import sys
import time

import nbformat
import pytest
from support import sandbox_ok

from autograder.__main__ import main
from autograder.course import Course, CourseError
from autograder.term.exchange import collect_exchange, publish
from autograder.testcells import read_notebook
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.grade import grade
from autograder.verbs.release import release

quiet = lambda *args, **kwargs: None  # noqa: E731
# Points of the automatically graded cells (the course's mark scheme); manual answers are ungraded here.
AUTO_POINTS = 22
# softmax_no_max_shift loses test_softmax (2 points) and nothing else (tests/grading).
BUGGY = "softmax_no_max_shift"
STAMP = "2026-11-30 09:00:00.000000 UTC"


def _nbgrader(student, home, exchange, *args):
    """nbgrader's own student command, run as a student would: from their home, with no course config."""
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
           "JUPYTER_DATA_DIR": str(home / ".local")}
    # nbgrader takes the student id from the Unix user (these tests run as root): --student sets it.
    command = [sys.executable, "-m", "nbgrader", *args, "backprop", "--course", "backprop",
               f"--Exchange.root={exchange}", f"--student={student}"]
    done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _submit(student, variant, tmp, exchange, course):
    """fetch_assignment (once), answer as `variant`, submit."""
    home = tmp / "home" / student
    if not (home / "backprop").is_dir():
        home.mkdir(parents=True)
        _nbgrader(student, home, exchange, "fetch_assignment")
    answered = make_submission(read_notebook(course.notebook(course.release)),
                               read_notebook(course.notebook(course.source)), VARIANTS[variant])
    nbformat.write(answered, home / "backprop" / "assignment.ipynb")
    _nbgrader(student, home, exchange, "submit")


def _entry(inbound, student, files):
    """An inbound folder made by hand, as any hub user can (the inbound folder is writable by all)."""
    entry = inbound / f"{student}+backprop+{STAMP}+handmade"
    entry.mkdir()
    for name, make in files.items():
        make(entry / name)
    return entry


def _sparse(path):
    """A notebook over the 50 MB limit that takes no disk space."""
    with path.open("wb") as file:
        file.truncate(51 * 2**20)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    course = Course(tmp / "course")
    exchange = tmp / "exchange"
    release(course, echo=quiet)
    publish(course, exchange, echo=quiet)
    outbound = exchange / "backprop" / "outbound" / "backprop"
    (outbound / "stale.txt").write_text("from an earlier release")
    publish(course, exchange, echo=quiet)          # releasing again replaces the published version
    republished = sorted(p.relative_to(outbound).as_posix() for p in outbound.rglob("*"))

    started = time.time()
    _submit("ada", "perfect", tmp, exchange, course)
    _submit("bob", "perfect", tmp, exchange, course)
    _submit("bob", BUGGY, tmp, exchange, course)     # bob submits again: the latest counts
    inbound = exchange / "backprop" / "inbound"
    # ada's own submission claims a time long before the deadline in the file nbgrader's submit wrote.
    (ada_entry,) = inbound.glob("ada+backprop+*")
    (ada_entry / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC")

    good = (course.release / "assignment.ipynb").read_bytes()
    _entry(inbound, "eve", {"assignment.ipynb": lambda p: p.symlink_to(course.notebook(course.source))})
    _entry(inbound, "mal", {"assignment.ipynb": _sparse})
    _entry(inbound, "gradebook.db", {"assignment.ipynb": lambda p: p.write_bytes(good)})
    _entry(inbound, "zed", {"assignment.ipynb": os.mkfifo})
    (inbound / f"kim+backprop+{STAMP}+linked").symlink_to(course.source)  # a whole entry that is a link
    (inbound / "lou+backprop+yesterday").mkdir()                          # a name nbgrader cannot date

    lines = collect_exchange(course, exchange, echo=quiet)
    collected = time.time()
    outcomes = {o.student: o for o in grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=quiet)}
    return course, exchange, lines, outcomes, republished, (started, collected)


def test_release_publishes_the_student_version_and_a_second_release_replaces_it(hub):
    course, _, _, _, republished, _ = hub
    expected = sorted(p.relative_to(course.release).as_posix() for p in course.release.rglob("*"))
    assert republished == expected
    assert "stale.txt" not in republished


def test_collect_takes_each_students_latest_submission_and_grade_gives_exact_totals(hub):
    course, _, lines, outcomes, _, _ = hub
    assert lines["ada"] == "collected"
    assert lines["bob"] == "collected"
    assert course.submitted_students() == ["ada", "bob"]
    assert set(outcomes) == {"ada", "bob"} and all(o.ok for o in outcomes.values())
    assert sum(outcomes["ada"].scores.values()) == AUTO_POINTS
    assert sum(outcomes["bob"].scores.values()) == AUTO_POINTS - 2   # his second (buggy) submission
    assert outcomes["bob"].scores["test_softmax"] == 0


def test_submission_time_is_not_what_the_student_wrote(hub):
    course, _, _, _, _, (started, collected) = hub
    for student in ("ada", "bob"):
        text = (course.submitted(student) / "timestamp.txt").read_text()
        when = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=dt.timezone.utc).timestamp()
        assert started - 1 <= when <= collected + 1, (student, text)


def test_hostile_inbound_entries_cost_only_their_student_with_one_line_each(hub):
    course, _, lines, _, _, _ = hub
    entry = f"+backprop+{STAMP}+handmade"
    assert lines["eve"] == f"not collected: a link (eve{entry}/assignment.ipynb)"
    assert lines["mal"] == f"not collected: mal{entry}/assignment.ipynb is larger than 50 MB"
    assert lines["zed"] == f"not collected: not a regular file (zed{entry}/assignment.ipynb)"
    assert lines["kim"] == f"not collected: a link (kim+backprop+{STAMP}+linked)"
    assert lines["lou"] == "not collected: an exchange entry without a time nbgrader can read (lou+backprop+yesterday)"
    reserved = [line for student, line in lines.items() if "gradebook.db" in student]
    assert len(reserved) == 1 and reserved[0].startswith("not a usable student id: 'gradebook.db' is a name the grader")
    assert not (course.root / "submitted" / "gradebook.db").exists()
    assert all("\n" not in line for line in lines.values())
    assert sorted(lines) == sorted(["ada", "bob", "eve", "mal", "zed", "kim", "lou", "? 'gradebook.db'"])


def test_cli_needs_a_path_or_the_exchange_and_names_a_missing_exchange(hub, tmp_path, capsys):
    course, _, _, _, _, _ = hub
    assert main(["collect", "--course", str(course.root)]) == 2
    assert "say what to collect" in capsys.readouterr().err
    with pytest.raises(CourseError, match="has no inbound folder for course .backprop.: publish with"):
        collect_exchange(course, tmp_path / "nowhere", echo=quiet)


def test_a_notebook_swapped_for_a_link_after_the_scan_is_not_read_through_it(tmp_path):
    from autograder.term.exchange import _entry_items
    from autograder.verbs.collect import Refused

    secret = tmp_path / "source.ipynb"
    secret.write_text("the instructor's solutions")
    inbound = tmp_path / "inbound"
    entry = inbound / f"eve+backprop+{STAMP}+x"
    (entry / "sub").mkdir(parents=True)
    (entry / "sub" / "assignment.ipynb").write_text("{}")
    fd = os.open(inbound, os.O_RDONLY | os.O_DIRECTORY)
    try:
        (candidate,), _ = _entry_items(fd, {"username": "eve", "filename": entry.name, "timestamp": None},
                                       time.time())
        assert candidate.read(100) == b"{}"
        (entry / "sub").rename(entry / "old")
        (entry / "sub").symlink_to(entry / "old")       # a folder on the way becomes a link
        with pytest.raises(Refused, match="is a link"):
            candidate.read(100)
        (entry / "sub").unlink()
        (entry / "old").rename(entry / "sub")
        (entry / "sub" / "assignment.ipynb").unlink()
        (entry / "sub" / "assignment.ipynb").symlink_to(secret)   # the notebook itself becomes a link
        with pytest.raises(Refused, match="is a link"):
            candidate.read(100)
    finally:
        os.close(fd)


def test_as_nbgraders_collect_plugin_plain_nbgrader_collect_gets_the_same_checks(hub):
    from traitlets.config import Config

    from autograder.course import open_api

    course, exchange, _, _, _, _ = hub
    config = Config()
    config.Exchange.root = str(exchange)
    config.ExchangeFactory.collect = "autograder.term.exchange.KitExchangeCollect"
    result = open_api(course, config).collect(course.assignment)
    assert result["success"], result
    assert "[WARNING] eve: not collected: a link (eve+backprop+" in result["log"]
    assert course.submitted_students() == ["ada", "bob"]


def test_a_folder_another_hub_user_owns_is_named_on_the_students_line():
    import pwd

    from autograder.term.exchange import _owner_warning

    nobody = pwd.getpwnam("nobody")
    assert _owner_warning("ada", nobody.pw_uid) == "warning: its exchange folder belongs to user nobody, not ada"
    assert _owner_warning("nobody", nobody.pw_uid) == ""
    assert _owner_warning("ada", 0) == ""              # root's folders are not a student's doing
    assert _owner_warning("ada", os.getuid()) == ""   # nor those of whoever runs collect


def test_exchange_root_is_the_option_then_the_course_config_then_course_exchange(tmp_path, monkeypatch):
    from traitlets.config import Config

    import autograder.term.exchange as exchange

    monkeypatch.setattr(exchange, "_jupyter_config", Config)   # this machine's /etc/jupyter is not the test's
    course = Course(tmp_path / "course")
    course.root.mkdir()
    assert exchange.exchange_root(course) == course.root / "exchange"
    course.config_file.write_text('c = get_config()\nc.Exchange.root = "/srv/hub/exchange"\n')
    assert str(exchange.exchange_root(course)) == "/srv/hub/exchange"
    assert exchange.exchange_root(course, tmp_path / "x") == (tmp_path / "x").resolve()
