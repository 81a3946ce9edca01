"""`similarity`: which students' solution code is alike (autograder.term.similarity says how it is
measured and what is left out). Writes reports/<assignment>/similarity.html (the top pairs side by
side, shared code highlighted) and similarity.png (a heatmap of every pair), and prints the top pairs.
"""
import argparse
import base64
import html

from autograder.course import CourseError
from autograder.term import similarity as sim

# The page shows student text only as escaped text; the policy is a second lock: even a tag that got
# through could load and run nothing (no script, no remote resource, inline styles and the inline image only).
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
.pair { display: flex; gap: 1em; }
.pair > div { flex: 1; min-width: 0; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 12px; }
mark { background: #ffd54f; }
h2 { border-top: 1px solid #ccc; padding-top: .6em; }
"""


def similarity(course, top=10, threshold=0.3, common=sim.COMMON_FRACTION, echo=print):
    """Compare the class, write the page and the heatmap, print the top pairs; returns the pairs."""
    course.require_release()
    release, codes = sim.read_class(course, echo=echo)
    if not codes:
        raise CourseError(f"no readable submissions in {course.root / 'submitted'} for '{course.assignment}': "
                          "run `python -m autograder collect` first")
    fingerprints = sim.distinctive_fingerprints(codes, release, fraction=common)
    pairs = sim.score_pairs(fingerprints)
    shown = [p for p in pairs if p.score >= threshold][:top]
    students = sorted(codes)
    out = course.root / "reports" / course.assignment
    out.mkdir(parents=True, exist_ok=True)
    png = heatmap(students, sim.score_matrix(students, pairs, fingerprints), out / "similarity.png")
    nothing = [s for s in students if not codes[s].strip()]
    only_common = [s for s in students if codes[s].strip() and s not in fingerprints]
    page = render_page(course.assignment, shown, codes, threshold, png.read_bytes(), nothing, only_common)
    (out / "similarity.html").write_text(page, encoding="utf-8")

    echo(f"{len(students)} submissions: {len(fingerprints)} with code of their own, {len(nothing)} with nothing "
         f"written beyond the release, {len(only_common)} with too little of their own to compare")
    if shown:
        echo(sim.text_table(shown, top))
    else:
        echo(f"no pair scores {threshold:g} or more")
    echo(f"page: {out / 'similarity.html'}  heatmap: {png}")
    return pairs


def heatmap(students, matrix, path):
    """Every pair's score as a heatmap, students in sorted order; writes and returns `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(students)
    size = min(4 + 0.25 * n, 20)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap=cmap)
    if n <= 60:  # beyond that the names are unreadable: the page and the table name the pairs
        ax.set_xticks(range(n), students, rotation=90, fontsize=8)
        ax.set_yticks(range(n), students, fontsize=8)
    ax.set_title("Shared distinctive code (score per pair; grey: not compared)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_page(assignment, pairs, codes, threshold, png_bytes, nothing, only_common):
    """The HTML page. Everything that came from a student (ids, code) goes through html.escape."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>Similarity: {esc(assignment)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Code similarity: {esc(assignment)}</h1>",
        "<p>Each student's solution cells, without the release's own text and without code most of the class "
        "wrote alike; identifiers, strings, spacing, comments, parentheses, docstrings and <code>pass</code> do "
        "not count (the code is compared as Python parses it; shown as the student wrote it). <b>score</b> = the "
        "larger share of one student's distinctive code that is also in the other's. Highlighted: the lines "
        "holding shared code. A high score "
        "is a reason to talk to the students, not proof of copying.</p>",
    ]
    if nothing:
        parts.append(f"<p>Nothing written beyond the release (never paired): {esc(', '.join(nothing))}</p>")
    if only_common:
        parts.append("<p>Too little of their own to compare (only code most of the class wrote alike, or a few "
                     f"lines; never paired): {esc(', '.join(only_common))}</p>")
    if not pairs:
        parts.append(f"<p>No pair scores {threshold:g} or more.</p>")
    for rank, p in enumerate(pairs, 1):
        parts.append(f"<h2>{rank}. {esc(p.a)} and {esc(p.b)}: score {p.score:.2f}</h2><div class='pair'>")
        sides = ((p.a, p.share_a, p.slices_a), (p.b, p.share_b, p.slices_b))
        shown = {gid for student, _, slices in sides for gid in sim.shared_cells(codes[student], slices)}
        for student, share, slices in sides:
            cells = codes[student].cells
            text = "".join(sim.highlighted(codes[student], cell, slices) for cell in cells if cell.gid in shown)
            others = [cell.gid for cell in cells if cell.gid not in shown]
            rest = f"<p>Cells without shared code, not shown: {esc(', '.join(others))}</p>" if others else ""
            parts.append(f"<div><h3>{esc(student)}: {share:.0%} of their distinctive code is shared</h3>"
                         f"<pre>{text}</pre>{rest}</div>")
        parts.append("</div>")
    encoded = base64.b64encode(png_bytes).decode("ascii")
    parts.append(f"<h2>Every pair</h2><img alt='heatmap of pair scores' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


HELP = "which students' solution code is alike: an HTML page of the top pairs and a heatmap"


def _fraction(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not 1 or more")
    return value


def add_arguments(parser):
    parser.add_argument("--top", type=_positive, default=10, metavar="N", help="pairs to show (default 10)")
    parser.add_argument("--threshold", type=_fraction, default=0.3, metavar="SCORE",
                        help="show only pairs scoring at least this, 0 to 1 (default 0.3)")
    parser.add_argument("--common", type=_fraction, default=sim.COMMON_FRACTION, metavar="SHARE",
                        help="ignore code found in more than this share of the submissions "
                             f"(default {sim.COMMON_FRACTION:g}; 1 ignores nothing)")


def run(course, args):
    similarity(course, top=args.top, threshold=args.threshold, common=args.common)
