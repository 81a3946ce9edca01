"""Deadlines: the late policy's arithmetic, a due date and an extension through a graded class,
where submission times come from per intake, and bad input as one line."""
import csv
import datetime as dt
import json
import os
import struct
import time
import zipfile

import nbformat
import pytest
from support import sandbox_ok

from autograder.__main__ import main
from autograder.course import Course
from autograder.grading.late import LatePolicy, Policy, describe, penalty_points
from autograder.results import collect_grades
from autograder.term import deadlines
from autograder.testcells import read_notebook
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.collect import TIME_FROM_FOLDER, TIME_FROM_ZIP, collect
from autograder.verbs.export import export, export_dir
from autograder.verbs.grade import grade
from autograder.verbs.release import release
from autograder.verbs.report import table

HOUR = 3600.0
quiet = lambda *args, **kwargs: None  # noqa: E731


# --- the policy's arithmetic (pure) ---------------------------------------------------------------

@pytest.mark.parametrize("policy, seconds_late, score, max_score, expected", [
    # 25 h + 1 s late, 1% of 20 per started hour: 26 started hours -> 0.26 * 20
    (Policy(per_hour=0.01), 25 * HOUR + 1, 20, 20, 5.2),
    # exactly 25 h: 25 started hours, not 26
    (Policy(per_hour=0.01), 25 * HOUR, 20, 20, 5.0),
    # 90 minutes prorated at 2 points per hour
    (Policy(per_hour=2, unit="points", partial="prorated"), 1.5 * HOUR, 20, 30, 3.0),
    # 25 h = 2 started days at 10% of 30
    (Policy(per_day=0.1), 25 * HOUR, 25, 30, 6.0),
    # 36 h prorated at 4 points per day
    (Policy(per_day=4, unit="points", partial="prorated"), 36 * HOUR, 20, 30, 6.0),
    # both: 25 started hours * 0.5 + 2 started days * 1
    (Policy(per_hour=0.5, per_day=1, unit="points"), 25 * HOUR, 20, 30, 14.5),
    # 4 days at 20% of 10 = 8, capped at 50% of 10
    (Policy(per_day=0.2, cap=0.5), 4 * 24 * HOUR, 10, 10, 5.0),
    # a cap in points
    (Policy(per_day=3, unit="points", cap=4), 2 * 24 * HOUR, 10, 10, 4.0),
    # cut-off: exactly 168 h is still the rate (7 days * 1 point), one second more is the whole score
    (Policy(per_day=1, unit="points", cutoff_hours=168), 168 * HOUR, 17, 22, 7.0),
    (Policy(per_day=1, unit="points", cutoff_hours=168), 168 * HOUR + 1, 17, 22, 17.0),
    # never more than the score
    (Policy(per_day=10, unit="points"), HOUR, 3, 22, 3.0),
    # on time and within the grace cost nothing; past the grace the whole started hour counts
    (Policy(per_hour=1, unit="points"), 0, 20, 22, 0.0),
    (Policy(per_hour=1, unit="points", grace_minutes=5), 299, 20, 22, 0.0),
    (Policy(per_hour=1, unit="points", grace_minutes=5), 301, 20, 22, 1.0),
    # the kit's default: 10% per started day, cap 50%, cut-off 168 h; 3 days late on 22 points
    (Policy(per_day=0.1, cap=0.5, cutoff_hours=168), 72 * HOUR, 22, 22, 6.6),
])
def test_penalty_arithmetic(policy, seconds_late, score, max_score, expected):
    assert penalty_points(policy, seconds_late, score, max_score) == pytest.approx(expected)


def test_policy_from_traitlets_config_and_its_description():
    from traitlets.config import Config

    config = Config()
    config.LatePolicy.per_day = 0.1
    config.LatePolicy.cap = 0.5
    config.LatePolicy.cutoff_hours = 168
    policy = LatePolicy(config=config).policy()
    assert policy == Policy(per_day=0.1, cap=0.5, cutoff_hours=168)
    assert describe(policy) == ("10% of the maximum score per started day, at most 50% of the maximum score "
                                "in all; 0 points when more than 168 h late")


def test_extension_in_hours_and_until_a_date():
    due = dt.datetime(2026, 12, 14, 22, 59, tzinfo=dt.timezone.utc)
    assert deadlines.extension_seconds({"hours": 48}, due) == 48 * HOUR
    assert deadlines.extension_seconds({"until": "2026-12-15T04:59:00Z"}, due) == 6 * HOUR
    assert deadlines.extension_seconds({"until": "2026-12-01T00:00:00Z"}, due) == 0.0  # before the due date
    assert deadlines.extension_seconds(None, due) == 0.0
    assert deadlines.student_due(due, {"hours": 2}) == dt.datetime(2026, 12, 15, 0, 59, tzinfo=dt.timezone.utc)


def test_plugin_subtracts_the_students_extension(tmp_path, monkeypatch):
    due = dt.datetime(2026, 12, 14, 22, 59, tzinfo=dt.timezone.utc)
    deadlines.save(tmp_path, {"hw": {"extensions": {"ada": {"hours": 24}, "bob": {"until": "2026-12-15T22:59:00Z"}}}})
    plugin = LatePolicy(per_hour=1, unit="points")
    monkeypatch.setattr(plugin, "_context", lambda: (22.0, due, str(tmp_path), "hw"))
    # 30 h late before the extension: ada 24 h off -> 6 started hours; bob until +24 h likewise; carl none
    assert plugin.late_submission_penalty("ada", 20.0, 30 * HOUR) == 6.0
    assert plugin.late_submission_penalty("bob", 20.0, 30 * HOUR) == 6.0
    assert plugin.late_submission_penalty("carl", 20.0, 30 * HOUR) == 20.0  # 30 points, capped at the score
    assert plugin.late_submission_penalty("ada", 20.0, 23 * HOUR) == 0.0


# --- a graded class: ada 25 h late, bob 25 h late with a 26 h extension, carl past the cut-off -----

DUE_BERLIN = "2026-12-14 23:59"                         # 22:59 UTC
DUE_UTC = dt.datetime(2026, 12, 14, 22, 59, tzinfo=dt.timezone.utc)
HANDED_IN = {"ada": DUE_UTC + dt.timedelta(hours=25),   # per_day 2 points, started: 2 days -> 4 points
             "bob": DUE_UTC + dt.timedelta(hours=25),   # extension 26 h: on time
             "carl": DUE_UTC + dt.timedelta(hours=200)}  # past the 168 h cut-off: 0
POLICY = '''
c.LatePolicy.unit = "points"
c.LatePolicy.per_hour = 0.0
c.LatePolicy.per_day = 2
c.LatePolicy.cap = 5
c.LatePolicy.cutoff_hours = 168
'''
FULL = 22  # autograded points of the reference solution


def _zip_with_times(path, notebooks):
    """An LMS-like zip whose entries carry an extended timestamp (UTC) and an unrelated DOS date."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (text, when) in notebooks.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.extra = struct.pack("<HHBi", 0x5455, 5, 1, int(when.timestamp()))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    return path


def _cli(course, *args):
    return main(["--course", str(course.root), "deadline", *args])


@pytest.fixture(scope="module")
def late_class(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("deadlines") / "course")
    release(course, echo=quiet)
    with open(course.config_file, "a") as handle:
        handle.write(POLICY)
    assert _cli(course, "--due", DUE_BERLIN, "--timezone", "Europe/Berlin") == 0
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    text = nbformat.writes(make_submission(release_nb, source_nb, VARIANTS["perfect"]))
    download = _zip_with_times(course.root.parent / "lms.zip",
                               {f"{s}_1_assignment.ipynb": (text, when) for s, when in HANDED_IN.items()})
    collect(download, course, echo=quiet)
    assert _cli(course, "--extend", "bob", "--hours", "26") == 0
    outcomes = grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=quiet)
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    export(course, echo=quiet)
    return course


def _csv_rows(course):
    with open(export_dir(course) / "grades.csv", newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def test_due_date_is_stored_in_utc_in_the_gradebook(late_class):
    from nbgrader.api import Gradebook
    with Gradebook(late_class.db_url) as gb:
        assert gb.find_assignment(late_class.assignment).duedate == dt.datetime(2026, 12, 14, 22, 59)
        assert gb.find_submission(late_class.assignment, "ada").timestamp == dt.datetime(2026, 12, 15, 23, 59)


def test_25_hours_late_loses_exactly_4_points_in_gradebook_and_csv(late_class):
    from nbgrader.api import Gradebook
    with Gradebook(late_class.db_url) as gb:
        notebook = gb.find_submission_notebook(late_class.notebook_name, late_class.assignment, "ada")
        assert notebook.late_submission_penalty == 4.0
        assert gb.find_submission(late_class.assignment, "ada").late_submission_penalty == 4.0
    ada = _csv_rows(late_class)["ada"]
    assert (ada["score"], ada["late_by_hours"], ada["late_penalty"]) == (str(FULL - 4), "25", "4")
    assert (ada["timestamp"], ada["due"]) == ("2026-12-15T23:59:00Z", "2026-12-14T22:59:00Z")


def test_csv_keeps_the_contract_columns_first(late_class):
    with open(export_dir(late_class) / "grades.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[:3] == ["student_id", "score", "max_score"]
    assert header[-4:] == ["timestamp", "due", "late_by_hours", "late_penalty"]


def test_a_student_with_an_extension_is_not_late(late_class):
    bob = _csv_rows(late_class)["bob"]
    assert (bob["score"], bob["late_by_hours"], bob["late_penalty"]) == (str(FULL), "0", "0")
    assert bob["due"] == "2026-12-16T00:59:00Z"


def test_past_the_cut_off_the_score_is_zero(late_class):
    carl = _csv_rows(late_class)["carl"]
    assert (carl["score"], carl["late_by_hours"], carl["late_penalty"]) == ("0", "200", str(FULL))


def test_report_table_has_a_late_column(late_class):
    cells, records = collect_grades(late_class)
    rows = {line.split()[0]: line for line in table(cells, records).splitlines()}
    assert " late " in rows["student"]
    assert "25 h -4" in rows["ada"]
    assert " h -" not in rows["bob"]


def test_listing_shows_due_date_local_and_utc_policy_and_extensions(late_class, capsys):
    assert _cli(late_class) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "backprop: due 2026-12-14 23:59 Europe/Berlin (2026-12-14 22:59 UTC)"
    assert out[1] == ("late policy: 2 points per started day, at most 5 points in all; "
                      "0 points when more than 168 h late")
    assert out[2] == "extensions (1):"
    assert out[3] == "  bob: extension of 26 h: due 2026-12-16 01:59 Europe/Berlin (2026-12-16 00:59 UTC)"
    saved = json.loads((late_class.root / "deadlines.json").read_text())
    assert saved["backprop"]["extensions"]["bob"]["hours"] == 26


def test_an_extension_after_grading_says_grade_again_and_regrading_applies_it(late_class, capsys):
    """Last in this module: it changes ada's extension and grade."""
    assert _cli(late_class, "--extend", "ada", "--hours", "30") == 0
    out = capsys.readouterr().out
    assert "run `python -m autograder grade --student ada` again" in out
    _, records = collect_grades(late_class)
    assert records["ada"]["late_by_hours"] == 0 and records["ada"]["late_penalty"] == 4.0
    assert records["ada"]["late_penalty_stale"] is True
    assert records["bob"]["late_penalty_stale"] is False
    grade(late_class, ["ada"], workers=1, sandbox=sandbox_ok(), progress=False, echo=quiet)
    _, records = collect_grades(late_class)
    assert (records["ada"]["score"], records["ada"]["late_penalty"]) == (FULL, 0.0)
    assert records["ada"]["late_penalty_stale"] is False


# --- where submission times come from ----------------------------------------------------------------

GOOD = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def _stamp(course, student):
    """timestamp.txt of a collected submission, as nbgrader reads it (naive UTC)."""
    from nbgrader.utils import parse_utc
    return parse_utc((course.submitted(student) / "timestamp.txt").read_text())


def test_folder_intake_uses_the_collection_time_not_the_files_mtime(collect_course, tmp_path):
    folder = tmp_path / "in" / "ada"
    folder.mkdir(parents=True)
    (folder / "assignment.ipynb").write_text(GOOD)
    forged = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    os.utime(folder / "assignment.ipynb", (forged, forged))
    said = []
    before = time.time()
    collect(folder.parent, collect_course, echo=said.append)
    after = time.time()
    stamp = _stamp(collect_course, "ada").replace(tzinfo=dt.timezone.utc).timestamp()
    assert before - 1 <= stamp <= after + 1
    assert said[-1] == TIME_FROM_FOLDER and "time of this collection" in said[-1]


def test_recollecting_the_same_folder_keeps_the_first_collection_time(collect_course, tmp_path):
    for student in ("ada", "bob"):
        (tmp_path / "in" / student).mkdir(parents=True)
        (tmp_path / "in" / student / "assignment.ipynb").write_text(GOOD)
    collect(tmp_path / "in", collect_course, echo=quiet)
    first = "2026-12-14 20:00:00.000000 UTC"  # as if collected on the due day
    for student in ("ada", "bob"):
        (collect_course.submitted(student) / "timestamp.txt").write_text(first)
    (tmp_path / "in" / "bob" / "assignment.ipynb").write_text(GOOD + " ")  # bob hands in a new version
    before = time.time()
    collect(tmp_path / "in", collect_course, echo=quiet)
    assert _stamp(collect_course, "ada") == dt.datetime(2026, 12, 14, 20, 0)
    assert _stamp(collect_course, "bob").replace(tzinfo=dt.timezone.utc).timestamp() >= before - 1


def test_zip_intake_uses_the_entry_date(collect_course, tmp_path):
    when = dt.datetime(2026, 12, 15, 23, 59, tzinfo=dt.timezone.utc)
    with_extended = _zip_with_times(tmp_path / "a.zip", {"ada_1_assignment.ipynb": (GOOD, when)})
    said = []
    collect(with_extended, collect_course, echo=said.append)
    assert _stamp(collect_course, "ada") == dt.datetime(2026, 12, 15, 23, 59)
    assert said[-1] == TIME_FROM_ZIP
    # without the extended field: the DOS date, a wall-clock time read as this machine's local time
    plain = tmp_path / "b.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr(zipfile.ZipInfo("bob_1_assignment.ipynb", date_time=(2026, 12, 16, 8, 30, 0)), GOOD)
    collect(plain, collect_course, echo=quiet)
    expected = dt.datetime(2026, 12, 16, 8, 30).astimezone(dt.timezone.utc).replace(tzinfo=None)
    assert _stamp(collect_course, "bob") == expected


def _student_zip(path, dates):
    """A zip as a student makes one (e.g. sent by email): entries with the DOS dates they chose."""
    with zipfile.ZipFile(path, "w") as archive:
        for student, date_time in dates.items():
            archive.writestr(zipfile.ZipInfo(f"{student}/assignment.ipynb", date_time=date_time), GOOD)
    return path


def _collect_cli(course, *args):
    return main(["--course", str(course.root), "collect", *map(str, args)])


def test_a_student_made_zip_with_times_collected_gets_the_collection_time(collect_course, tmp_path, capsys):
    made = _student_zip(tmp_path / "eve.zip", {"eve": (2001, 1, 1, 0, 0, 0)})
    assert _collect_cli(collect_course, made) == 0   # as a TA would first: the dates eve chose
    assert _stamp(collect_course, "eve") == dt.datetime(2001, 1, 1).astimezone(dt.timezone.utc).replace(tzinfo=None)
    before = time.time()
    assert _collect_cli(collect_course, made, "--times", "collected") == 0   # the same notebook, again
    after = time.time()
    stamp = _stamp(collect_course, "eve").replace(tzinfo=dt.timezone.utc).timestamp()
    assert before - 1 <= stamp <= after + 1   # not the 2001 date the earlier collection stored
    assert "time of this collection" in capsys.readouterr().out.splitlines()[-1]
    assert _collect_cli(collect_course, made, "--times", "collected") == 0   # and again: that time is kept
    assert _stamp(collect_course, "eve").replace(tzinfo=dt.timezone.utc).timestamp() == stamp


def test_times_date_stamps_everything_collected_now_in_utc(collect_course, tmp_path, capsys):
    assert _cli(collect_course, "--due", DUE_BERLIN, "--timezone", "Europe/Berlin") == 0
    for student in ("ada", "bob"):   # a TA collects the folder days late but knows when it came in
        (tmp_path / "in" / student).mkdir(parents=True)
        (tmp_path / "in" / student / "assignment.ipynb").write_text(GOOD)
    capsys.readouterr()
    assert _collect_cli(collect_course, tmp_path / "in", "--times", "2026-12-14 23:00") == 0
    for student in ("ada", "bob"):   # 23:00 in Berlin (the deadline's zone) is 22:00 UTC
        text = (collect_course.submitted(student) / "timestamp.txt").read_text()
        assert text == "2026-12-14 22:00:00.000000 UTC"
    assert capsys.readouterr().out.splitlines()[-1] == (
        "submission times: 2026-12-14 23:00 Europe/Berlin (2026-12-14 22:00 UTC) for every notebook collected now "
        "(--times)")
    # collected again later without --times: unchanged notebooks keep the time the TA gave
    (tmp_path / "in" / "bob" / "assignment.ipynb").write_text(GOOD + " ")
    before = time.time()
    assert _collect_cli(collect_course, tmp_path / "in") == 0
    assert _stamp(collect_course, "ada") == dt.datetime(2026, 12, 14, 22, 0)
    # bob's new version: the time of this collection
    assert _stamp(collect_course, "bob").replace(tzinfo=dt.timezone.utc).timestamp() >= before - 1
    # the same for a zip: its own dates are not used
    _student_zip(tmp_path / "c.zip", {"carl": (2001, 1, 1, 0, 0, 0)})
    assert _collect_cli(collect_course, tmp_path / "c.zip", "--times", "2026-12-15T08:00:00+00:00") == 0
    assert _stamp(collect_course, "carl") == dt.datetime(2026, 12, 15, 8, 0)


@pytest.mark.parametrize("value, message", [
    ("yesterday", "error: --times 'yesterday' is not zip, collected, or a date and time like"),
    ("2026-12-14", "error: --times '2026-12-14' is not zip, collected, or a date and time like"),
    ("zip", "error: --times zip needs a zip"),
])
def test_a_bad_times_value_is_one_line_and_collects_nothing(collect_course, tmp_path, capsys, value, message):
    (tmp_path / "in" / "ada").mkdir(parents=True)
    (tmp_path / "in" / "ada" / "assignment.ipynb").write_text(GOOD)
    assert _collect_cli(collect_course, tmp_path / "in", "--times", value) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not collect_course.submitted("ada").exists()


def test_zip_dates_in_the_future_or_before_the_release_get_one_warning_line(collect_course, tmp_path):
    collect_course.release.mkdir(parents=True)   # released an hour ago: its notebook's date is the release time
    released = collect_course.notebook(collect_course.release)
    released.write_text(GOOD)
    os.utime(released, (time.time() - HOUR, time.time() - HOUR))
    handed_in = dt.datetime.now() - dt.timedelta(minutes=5)   # DOS dates are local wall-clock times
    made = _student_zip(tmp_path / "class.zip", {"ada": handed_in.timetuple()[:6],
                                                 "eve": (2001, 1, 1, 0, 0, 0),
                                                 "mal": (2099, 1, 1, 0, 0, 0)})
    said = []
    collect(made, collect_course, echo=said.append)   # no due date yet: the dates decide nothing
    assert not [line for line in said if line.startswith("warning")]
    assert _cli(collect_course, "--due", DUE_BERLIN, "--timezone", "Europe/Berlin") == 0
    said = []
    collect(made, collect_course, echo=said.append)
    warnings = [line for line in said if line.startswith("warning")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: dates in the zip later than now or before the "
                                                         "assignment was released ("), warnings
    assert " for eve, mal: " in warnings[0] and "--times collected" in warnings[0]
    assert said[-1] == warnings[0] and said[-2] == TIME_FROM_ZIP


# --- bad input: one line, nothing written ------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--due", "next tuesday"], "error: --due 'next tuesday' is not a date and time like \"2026-12-14 23:59\""),
    (["--due", "2026-12-14"], "error: --due '2026-12-14' has no time of day"),
    (["--due", "2026-12-14 23:59", "--timezone", "Mars/Olympus"], "error: unknown time zone 'Mars/Olympus'"),
    (["--extend", "zed", "--hours", "3"], "error: unknown student 'zed'"),
    (["--extend", "zed"], "error: --extend zed needs --hours N or --until DATE"),
    (["--hours", "3"], "error: --hours and --until say how long an extension is"),
])
def test_bad_input_is_one_line_and_writes_nothing(collect_course, capsys, args, message):
    before = collect_course.gradebook.read_bytes()
    assert _cli(collect_course, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert collect_course.gradebook.read_bytes() == before
    assert not (collect_course.root / "deadlines.json").exists()


def test_extension_until_a_local_date_is_stored_in_utc(collect_course, tmp_path, capsys):
    (tmp_path / "in" / "ada").mkdir(parents=True)
    (tmp_path / "in" / "ada" / "assignment.ipynb").write_text(GOOD)
    collect(tmp_path / "in", collect_course, echo=quiet)
    assert _cli(collect_course, "--extend", "ada", "--until", "2026-12-20 12:00", "--timezone", "Europe/Berlin") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ada: extension until 2026-12-20 12:00 Europe/Berlin (2026-12-20 11:00 UTC)"
    assert out[1].startswith("note: backprop has no due date yet")
    saved = json.loads((collect_course.root / "deadlines.json").read_text())
    assert saved["backprop"]["extensions"]["ada"]["until"] == "2026-12-20T11:00:00Z"
    assert sorted(p.name for p in collect_course.root.iterdir() if "deadlines" in p.name) == ["deadlines.json"]
    assert _cli(collect_course, "--extend", "ada", "--hours", "0") == 0  # 0 hours: the extension is gone
    assert json.loads((collect_course.root / "deadlines.json").read_text())["backprop"]["extensions"] == {}
