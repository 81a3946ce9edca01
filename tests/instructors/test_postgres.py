"""A course whose gradebook is a PostgreSQL database (`release --db URL`): the same class graded on
SQLite and on PostgreSQL gets the same scores through grade, export, report and feedback; plain
nbgrader reads and writes the same database; a TA grading by hand while grading merges loses nothing.

A throwaway PostgreSQL server (tests/postgres_server.py) is started once for this file."""
import csv
import dataclasses
import importlib.util
import subprocess
import sys
import threading
import time

import nbformat
import pytest
from postgres_server import PostgresServer, postgres_bin_dir
from support import sandbox_ok

from autograder.course import Course, CourseError
from autograder.grading.merge import merge
from autograder.results import collect_grades
from autograder.testcells import read_notebook
from autograder.variants import VARIANTS, make_submission
from autograder.verbs.collect import collect
from autograder.verbs.export import export, export_dir
from autograder.verbs.feedback import feedback
from autograder.verbs.grade import grade
from autograder.verbs.release import release
from autograder.verbs.report import report, report_dir

# ada is correct; donald's softmax does not subtract the max (overflows): he loses test_softmax only.
CLASS = {"ada": "perfect", "donald": "softmax_no_max_shift"}
AUTO_POINTS = {"test_softmax": 2, "test_one_hot": 1, "test_sce_loss": 2, "test_sce_grad": 3, "test_relu": 1,
               "test_forward": 2, "test_loss_value": 2, "test_gradients": 4, "test_weight_decay": 2,
               "test_predict": 1, "test_train": 2}
LOST = {"ada": set(), "donald": {"test_softmax"}}
quiet = lambda *args, **kwargs: None  # noqa: E731


@pytest.fixture(scope="module")
def postgres():
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian package `postgresql`; `make test` installs it as root)")
    server = PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


def _run_class(course, db_url=None):
    """release (on `db_url`), collect CLASS, grade, feedback, export, report; returns {student: Outcome}."""
    release(course, db_url=db_url, echo=quiet)
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    folder = course.root.parent / f"{course.root.name}-download"
    for student, variant in CLASS.items():
        (folder / student).mkdir(parents=True)
        (folder / student / "backprop.ipynb").write_text(
            nbformat.writes(make_submission(release_nb, source_nb, VARIANTS[variant])))
    collect(folder, course, echo=quiet)
    outcomes = grade(course, workers=2, sandbox=sandbox_ok(), progress=False, echo=quiet)
    pages = feedback(course, echo=quiet)
    export(course, echo=quiet)
    report(course, echo=quiet)
    return {o.student: o for o in outcomes}, pages


@pytest.fixture(scope="module")
def classes(postgres, tmp_path_factory):
    """The same class graded on PostgreSQL and on SQLite: {"pg"|"sqlite": (course, outcomes, pages)}."""
    base = tmp_path_factory.mktemp("postgres")
    url = postgres.url("course")
    pg, sqlite = Course(base / "pg"), Course(base / "sqlite")
    return {"pg": (pg, *_run_class(pg, url)), "sqlite": (sqlite, *_run_class(sqlite)), "url": url}


def _csv(course):
    """grades.csv's rows, without the submission time (the two classes were collected at different times)."""
    with open(export_dir(course) / "grades.csv", newline="") as handle:
        return [{key: value for key, value in row.items() if key != "timestamp"} for row in csv.DictReader(handle)]


def test_release_writes_the_database_into_the_course_config(classes):
    course, _, _ = classes["pg"]
    assert course.db_url == classes["url"]
    assert f"c.CourseDirectory.db_url = {classes['url']!r}" in course.config_file.read_text()
    assert not course.gradebook.exists()  # nothing fell back to a SQLite file
    course.require_release()  # a released course without gradebook.db


def test_postgres_course_scores_exactly_as_the_sqlite_course(classes):
    pg, sqlite = _csv(classes["pg"][0]), _csv(classes["sqlite"][0])
    assert pg == sqlite
    assert sorted(row["student_id"] for row in pg) == sorted(CLASS)
    for row in pg:
        expected = {cell: 0.0 if cell in LOST[row["student_id"]] else float(p) for cell, p in AUTO_POINTS.items()}
        assert {cell: float(row[cell]) for cell in AUTO_POINTS} == expected, row["student_id"]
        assert float(row["score"]) == sum(expected.values())
    for student, outcome in classes["pg"][1].items():
        assert outcome.ok, outcome.message
        assert outcome.scores == classes["sqlite"][1][student].scores


def test_feedback_and_report_read_the_postgres_gradebook(classes):
    course, _, pages = classes["pg"]
    assert set(pages) == set(CLASS) and all(pages.values())
    assert "<h4>assignment (Score: 20.0 / 30.0)</h4>" in pages["donald"].read_text()
    table = (report_dir(course) / "grades.txt").read_text()
    assert table == (report_dir(classes["sqlite"][0]) / "grades.txt").read_text()
    assert any(line.split()[:2] == ["ada", "22/30"] for line in table.splitlines())


def test_plain_nbgrader_uses_the_postgres_gradebook(classes):
    """nbgrader's own commands, run in the course folder, find the database in its config."""
    course, _, _ = classes["pg"]
    listed = subprocess.run([sys.executable, "-m", "nbgrader", "db", "student", "list"], cwd=course.root,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "ada" in listed.stdout and "donald" in listed.stdout
    if not sandbox_ok():
        return
    # nbgrader autograde writes the database itself (formgrader's button does the same); ada again: same scores
    result = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", "backprop", "--student", "ada",
                             "--force"], cwd=course.root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    _, records = collect_grades(course)
    assert records["ada"]["status"] == "graded"
    assert {cell: records["ada"]["cells"][cell]["score"] for cell in AUTO_POINTS} == AUTO_POINTS


def test_a_second_release_keeps_the_course_on_its_database(postgres, tmp_path):
    course = Course(tmp_path / "course")
    url = postgres.url("rerelease")
    first = subprocess.run([sys.executable, "-m", "autograder", "release", "--course", str(course.root), "--db", url],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    release(course, echo=quiet)  # no --db: the course stays where it is
    assert course.db_url == url
    from nbgrader.api import Gradebook
    with Gradebook(url) as gb:
        assert [a.name for a in gb.assignments] == ["backprop"]


def test_a_database_that_cannot_be_reached_is_one_line_and_writes_nothing(postgres, tmp_path):
    course = Course(tmp_path / "course")
    with pytest.raises(CourseError, match=r"^cannot open the gradebook database postgresql\+psycopg2://x@/nodb"):
        release(course, db_url=f"postgresql://x@/nodb?host={postgres.folder}", echo=quiet)
    assert not course.config_file.exists()
    result = subprocess.run([sys.executable, "-m", "autograder", "release", "--course", str(tmp_path / "c2"),
                             "--db", "mysql://u:secret@host/db"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --db mysql://u:***@host/db: a mysql database is not supported; use postgresql://... or sqlite:///..."]


def test_a_hand_written_postgresql_url_without_its_driver_is_one_line(tmp_path):
    """`c.CourseDirectory.db_url = "postgresql://..."` typed into the config: SQLAlchemy's default
    driver for it (psycopg 3) is not the kit's, and every verb says how to write it."""
    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg 3 is installed here: postgresql:// works as written")
    course = Course(tmp_path / "course")
    course.source.mkdir(parents=True)
    course.config_file.write_text('c = get_config()\nc.CourseDirectory.db_url = "postgresql://ta@dbhost/grades"\n')
    with pytest.raises(CourseError, match=r"needs the Python module 'psycopg'.*postgresql\+psycopg2://"):
        course.require_release()


# --- several writers at once ------------------------------------------------------------------------

@pytest.fixture
def merged_course(postgres, tmp_path, request):
    """A fresh PostgreSQL course with a graded-looking outcome of each student of CLASS merged once:
    every test cell at full points, every written answer waiting for a TA (no grading: the
    gradebook's writers are what is tested here)."""
    from autograder.grading.job import Outcome
    from autograder.results import graded_cells

    course = Course(tmp_path / "course")
    release(course, db_url=postgres.url(f"writers_{request.node.name[-20:].lower()}"), echo=quiet)
    cells = graded_cells(read_notebook(course.notebook(course.source)))
    grades = {gid: (points, False) if kind == "auto" else (None, True) for gid, points, kind in cells}
    notebook = course.notebook(course.release).read_bytes()
    outcomes = {student: Outcome(student, True, "merged by the test", grades=grades, notebook=notebook)
                for student in CLASS}
    for outcome in outcomes.values():
        merge(course, outcome)
    return course, outcomes


def _waiting_on_a_lock(url):
    """How many sessions of this database wait for a row lock right now."""
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND datname = current_database()")).scalar()
    finally:
        engine.dispose()


def _merge_while_a_ta_grades(course, outcome, cell, score):
    """Merge `outcome` while a TA's manual `score` for `cell` is written but not yet committed (as
    formgrader's grade handler writes it); the TA commits once the merge waits for the row (or has
    finished without waiting). Returns the cell's (manual_score, auto_score, needs_manual_grade)."""
    from nbgrader.api import Gradebook
    errors = []

    def merge_it():
        try:
            merge(course, outcome)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    ta = Gradebook(course.db_url)
    try:
        grade = ta.find_grade(cell, course.notebook_name, course.assignment, outcome.student)
        grade.manual_score, grade.needs_manual_grade = score, False
        ta.db.flush()  # sent: the row is locked until the commit
        merging = threading.Thread(target=merge_it)
        merging.start()
        for _ in range(600):
            if not merging.is_alive() or _waiting_on_a_lock(course.db_url):
                break
            time.sleep(0.05)
        ta.db.commit()
    finally:
        ta.close()
    merging.join(120)
    assert not merging.is_alive() and not errors, errors
    with Gradebook(course.db_url) as gb:
        grade = gb.find_grade(cell, course.notebook_name, course.assignment, outcome.student)
        return grade.manual_score, grade.auto_score, grade.needs_manual_grade


def test_merge_sees_a_manual_grade_committed_while_it_runs(merged_course):
    """A TA overrides ada's test_softmax in formgrader while a re-grade that now fails that test is
    merged: the merge must wait for the TA, keep the TA's score and send the cell back to the TA's
    queue (the code behaves differently from what the TA saw). A merge deciding from rows read
    before the TA's commit sees no manual score and leaves the cell out of the queue."""
    course, outcomes = merged_course
    failing = dataclasses.replace(outcomes["ada"], grades=dict(outcomes["ada"].grades, test_softmax=(0.0, False)))
    assert _merge_while_a_ta_grades(course, failing, "test_softmax", 1.0) == (1.0, 0.0, True)


def test_a_written_answer_graded_during_the_merge_of_a_new_text_keeps_its_grade(merged_course):
    """ada resubmits a new derivation; while its re-grade is merged a TA grades her derivation. A
    mark of the old text is cleared by a re-grade of a new one, but this mark was made during the
    merge, for either text: it is kept, and the answer goes back to the queue for a look."""
    course, outcomes = merged_course
    nb = nbformat.reads(outcomes["ada"].notebook.decode(), as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "derivation":
            cell.source = "dL/dz = softmax(z) - onehot(y), derived again from the chain rule."
    resubmitted = dataclasses.replace(outcomes["ada"], notebook=nbformat.writes(nb).encode())
    assert _merge_while_a_ta_grades(course, resubmitted, "derivation", 3.0) == (3.0, None, True)


def test_concurrent_writers_lose_no_update(merged_course):
    """Four TAs write manual scores for every cell of both students (one commit per score, as
    formgrader does) while merge writes three rounds of new autograde scores for the same students:
    afterwards every TA's last score and the last round's auto scores are all there."""
    from nbgrader.api import Gradebook
    course, outcomes = merged_course
    rounds, tas = 3, 4
    with Gradebook(course.db_url) as gb:
        cells = sorted(g.name for g in gb.find_submission_notebook(
            course.notebook_name, course.assignment, "ada").grades)
    pairs = [(student, cell) for student in sorted(CLASS) for cell in cells]
    manual = lambda r, i: 10.0 * r + i / 100  # noqa: E731 - distinct per round and per (student, cell)
    auto = lambda r, points: points - r / 4 if points is not None else None  # noqa: E731
    errors = []

    def ta(k):
        try:
            with Gradebook(course.db_url) as gb:
                for r in range(rounds):
                    for i in range(k, len(pairs), tas):
                        student, cell = pairs[i]
                        grade = gb.find_grade(cell, course.notebook_name, course.assignment, student)
                        grade.manual_score, grade.needs_manual_grade = manual(r, i), False
                        gb.db.commit()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def regraded(outcome, r):
        grades = {name: (auto(r, score), needs) for name, (score, needs) in outcome.grades.items()}
        return dataclasses.replace(outcome, grades=grades)

    threads = [threading.Thread(target=ta, args=(k,)) for k in range(tas)]
    for thread in threads:
        thread.start()
    for r in range(1, rounds + 1):
        for outcome in outcomes.values():
            merge(course, regraded(outcome, r))
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    with Gradebook(course.db_url) as gb:
        for i, (student, cell) in enumerate(pairs):
            grade = gb.find_grade(cell, course.notebook_name, course.assignment, student)
            assert grade.manual_score == manual(rounds - 1, i), (student, cell)
            first = outcomes[student].grades[cell][0]
            assert grade.auto_score == auto(rounds, first), (student, cell)


def test_the_jobs_snapshot_holds_the_postgres_gradebook_as_it_is(merged_course, tmp_path):
    """What grading jobs grade against: a SQLite copy with the course's rows, a TA's grade included."""
    from nbgrader.api import Gradebook

    from autograder.gradebook_db import gradebook_snapshot, sqlite_url
    course, _ = merged_course
    with Gradebook(course.db_url) as gb:
        gb.find_grade("derivation", course.notebook_name, course.assignment, "donald").manual_score = 2.5
        gb.db.commit()
    snapshot = gradebook_snapshot(course, tmp_path / "snapshot.db")
    with Gradebook(sqlite_url(snapshot)) as gb:
        assert sorted(s.id for s in gb.students) == sorted(CLASS)
        assert [a.name for a in gb.assignments] == [course.assignment]
        donald = gb.find_submission_notebook(course.notebook_name, course.assignment, "donald")
        scores = {g.name: (g.auto_score, g.manual_score) for g in donald.grades}
    assert scores["derivation"] == (None, 2.5)
    assert scores["test_softmax"] == (2.0, None)
