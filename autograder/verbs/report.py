"""`report`: what a TA would rather look at than read — a grade histogram, the pass rate of each
test (which concepts the class struggled with), and a short text table."""
from autograder.course import Course
from autograder.results import collect_grades


def pass_rates(cells, records):
    """{grade_id: fraction of graded students with full points} for autograded cells."""
    graded = [r for r in records.values() if r["cells"]]
    rates = {}
    for gid, points, kind in cells:
        if kind == "auto" and graded:
            rates[gid] = sum(r["cells"][gid]["score"] >= points for r in graded) / len(graded)
    return rates


def _mark(cell):
    """A cell's points as the table shows them: the number, "pending" while it awaits a TA."""
    return "pending" if cell.get("pending") else f"{cell['score']:g}"


def table(cells, records):
    """The text table: one row per student, one column per autograded test and per written answer
    (points earned, or "pending"); `marking` says whether the score is final or still provisional."""
    shown = [gid for gid, _, kind in cells if kind == "auto"] + [gid for gid, _, kind in cells if kind == "manual"]
    header = ["student", "score", "marking"] + [gid.removeprefix("test_") for gid in shown] + ["late", "status"]
    rows = [header]
    for record in records.values():
        score = "-" if record["score"] is None else f"{record['score']:g}/{record['max_score']:g}"
        marking = "-" if not record["cells"] else "provisional" if record.get("pending") else "final"
        marks = [_mark(record["cells"][gid]) if record["cells"] else "-" for gid in shown]
        rows.append([record["student_id"], score, marking] + marks + [late_text(record), record["status"]])
    return _columns(rows)


def written_answers(cells, records):
    """{grade_id: {"points", "graded", "pending", "mean"}} for each written answer: how far manual
    grading has come and how the graded answers scored (mean None until one is graded)."""
    summary = {}
    for gid, points, kind in cells:
        if kind != "manual":
            continue
        graded = [r["cells"][gid]["score"] for r in records.values()
                  if r["cells"] and not r["cells"][gid].get("pending")]
        pending = sum(1 for r in records.values() if r["cells"] and r["cells"][gid].get("pending"))
        summary[gid] = {"points": points, "graded": len(graded), "pending": pending,
                        "mean": sum(graded) / len(graded) if graded else None}
    return summary


def written_table(summary):
    """The written answers' table: per question, graded and pending counts and the mean mark."""
    rows = [["written answer", "points", "graded", "pending", "mean"]]
    for gid, item in summary.items():
        mean = "-" if item["mean"] is None else f"{item['mean']:.2f}"
        rows.append([gid, f"{item['points']:g}", str(item["graded"]), str(item["pending"]), mean])
    return _columns(rows)


def _columns(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def late_text(record):
    """The table's late column: "" when on time, else hours late and points off ("25.5 h -3");
    "grade again" when the stored penalty no longer matches the deadline, extension or policy."""
    hours, penalty = record.get("late_by_hours"), record.get("late_penalty") or 0.0
    text = f"{hours:g} h -{penalty:g}" if hours else ("-" + f"{penalty:g}" if penalty else "")
    return text + (" (grade again)" if record.get("late_penalty_stale") else "")


def report_dir(course):
    """Where `report` writes an assignment's plots and table: course/reports/<assignment>/."""
    return course.root / "reports" / course.assignment


def report(course=None, echo=print):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    course = course or Course()
    course.require_release()
    cells, records = collect_grades(course)
    out = report_dir(course)
    out.mkdir(parents=True, exist_ok=True)
    scores = [r["score"] for r in records.values() if r["score"] is not None]
    max_score = sum(points for _, points, _ in cells)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores, bins=range(0, int(max_score) + 2), color="#4c72b0", edgecolor="white", align="left")
    ax.set(xlabel=f"score (of {max_score:g}; manual answers count once graded)", ylabel="students",
           title=f"Grades: {len(scores)} graded submissions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(out / "grade_histogram.png", dpi=120)
    plt.close(fig)

    rates = pass_rates(cells, records)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rates) + 1.2))
    names = list(rates)[::-1]
    ax.barh(names, [100 * rates[n] for n in names], color=["#c44e52" if rates[n] < 0.5 else "#55a868" for n in names])
    ax.set(xlim=(0, 100), xlabel="% of graded students with full points",
           title=f"Which tests the class passed ({len(scores)} students; red: under half)")
    fig.tight_layout()
    fig.savefig(out / "test_pass_rates.png", dpi=120)
    plt.close(fig)

    text = table(cells, records)
    summary = written_answers(cells, records)
    if summary:
        text += "\n\n" + written_table(summary)
    (out / "grades.txt").write_text(text + "\n")
    echo(text)
    echo(f"plots: {out / 'grade_histogram.png'}, {out / 'test_pass_rates.png'}")
    return out


HELP = "grade histogram, per-test pass rates, text table"


def add_arguments(parser):
    pass


def run(course, args):
    report(course)
