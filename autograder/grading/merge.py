"""The one writer of a course's results: a job's outcome into the gradebook and autograded/, and
grading_status.json."""
import json
import shutil
import time
from dataclasses import asdict

from autograder.grading import manual
from autograder.results import STATUS_FILE


def merge(course, outcome):
    """Write one outcome into the course: the autograded notebook and the gradebook (or, for a
    failure, remove every older result so that nothing stale looks current)."""
    from nbgrader.api import Comment, Grade, Gradebook, MissingEntry

    dest = course.autograded(outcome.student)
    if not outcome.ok:
        with Gradebook(course.db_url) as gb:
            try:
                gb.remove_submission(course.assignment, outcome.student)
            except MissingEntry:
                pass
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(course.feedback(outcome.student), ignore_errors=True)
        return
    with Gradebook(course.db_url) as gb:
        # what TAs had graded before formgrader can show them the new notebook (see below)
        before = _manual_scores(gb, course, outcome.student, MissingEntry)
        gb.db.commit()
        staged = dest.with_name(f".{dest.name}.incoming")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        course.notebook(staged).write_bytes(outcome.notebook)
        shutil.rmtree(dest, ignore_errors=True)
        staged.rename(dest)
        _readable_name(gb.update_or_create_student(outcome.student))
        kwargs = {"timestamp": outcome.timestamp} if outcome.timestamp else {}
        gb.update_or_create_submission(course.assignment, outcome.student, **kwargs)
        notebook = gb.find_submission_notebook(course.notebook_name, course.assignment, outcome.student)
        notebook.late_submission_penalty = outcome.late_penalty
        old, new = manual.load_fingerprints(course.root, course.assignment, outcome.student), _answers(outcome)
        for grade in _locked(gb, Grade, notebook.id):
            if grade.name in outcome.grades:
                auto_score, needs_manual = outcome.grades[grade.name]
                written = grade.name in new or auto_score is None  # an answer cell, even one deleted
                changed = manual.answer_changed(grade.name, old, new) if written else None
                if written and grade.manual_score != before.get(grade.name):
                    # a TA graded this answer while the merge ran, the old text or the new one: keep
                    # the score, back in the queue for a look (never clear a grade made meanwhile)
                    changed = None
                # a TA's grade survives the re-grade unless the answer it marked changed (manual.py)
                manual.apply_regrade(grade, auto_score, needs_manual, written, changed)
        for comment in _locked(gb, Comment, notebook.id):
            comment.auto_comment = outcome.comments.get(comment.name, comment.auto_comment)
        gb.db.commit()
    manual.save_fingerprints(course.root, course.assignment, outcome.student, new)


def _answers(outcome):
    """Fingerprints of the written answers in the outcome's autograded notebook (what a TA grades)."""
    import nbformat
    return manual.answer_fingerprints(nbformat.reads(outcome.notebook.decode(), as_version=4))


def _manual_scores(gb, course, student, missing):
    """{grade_id: manual score} of the student's submission as it is now ({} if none yet)."""
    try:
        notebook = gb.find_submission_notebook(course.notebook_name, course.assignment, student)
    except missing:
        return {}
    return {grade.name: grade.manual_score for grade in notebook.grades}


def _readable_name(student):
    """Without a roster, formgrader lists a student created here as "None, None": give them their id
    as last name and an empty first name (formgrader shows "ada, "); a roster import sets real names,
    and they are never overwritten here."""
    if student.first_name is None and student.last_name is None:
        student.last_name, student.first_name = student.id, ""


def _locked(gb, model, notebook_id):
    """The notebook's rows of `model` (Grade, Comment) as the database holds them now, locked until
    the commit (SELECT ... FOR UPDATE; SQLite locks the whole file instead).

    A TA may be grading this student in formgrader while the merge runs: the rows loaded earlier by
    find_submission_notebook could predate the TA's manual score, and the review flag above would be
    computed from that stale score. Re-read under a row lock (populate_existing: refresh the objects
    already in the session), so a TA's write either commits first and is seen here, or waits until
    the merge commits. Only changed columns are written: an automatic score never overwrites a
    manual one, and a manual score is cleared only if no TA changed it since the merge began;
    rows in id order, as every merge takes them, so two merges cannot deadlock.
    """
    return (gb.db.query(model).filter(model.notebook_id == notebook_id).order_by(model.id)
            .with_for_update().populate_existing().all())


def write_status(course, outcomes):
    """grading_status.json: the latest outcome of every student ever graded (merged, not replaced),
    in the section of the course's assignment (results.load_status)."""
    path = course.root / STATUS_FILE
    everything = json.loads(path.read_text()) if path.is_file() else {}
    status = everything.setdefault(course.assignment, {})
    for outcome in outcomes:
        record = asdict(outcome)
        for key in ("notebook", "grades", "comments"):
            record.pop(key)
        record["status"] = ("failed" if not outcome.ok else
                            "tamper suspected" if outcome.tamper_cells else "graded")
        record["graded_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        status[outcome.student] = record
    path.write_text(json.dumps(everything, indent=2, sort_keys=True))
