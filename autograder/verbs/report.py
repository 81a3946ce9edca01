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


def table(cells, records):
    """The text table: one row per student, one column per autograded test (points earned)."""
    auto = [(gid, points) for gid, points, kind in cells if kind == "auto"]
    header = ["student", "score"] + [gid.removeprefix("test_") for gid, _ in auto] + ["late", "status"]
    rows = [header]
    for record in records.values():
        score = "-" if record["score"] is None else f"{record['score']:g}/{record['max_score']:g}"
        marks = [f"{record['cells'][gid]['score']:g}" if record["cells"] else "-" for gid, _ in auto]
        rows.append([record["student_id"], score] + marks + [late_text(record), record["status"]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
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
    (out / "grades.txt").write_text(text + "\n")
    echo(text)
    echo(f"plots: {out / 'grade_histogram.png'}, {out / 'test_pass_rates.png'}")
    return out


HELP = "grade histogram, per-test pass rates, text table"


def add_arguments(parser):
    pass


def run(course, args):
    report(course)
