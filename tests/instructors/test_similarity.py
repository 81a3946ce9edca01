"""The similarity report: a copy with renamed variables ranks first, independent solutions and
untouched notebooks do not pair, the release's own text counts for nothing, student text on the
page stays text, and the CLI writes the page and the heatmap."""
import copy
import re
from html.parser import HTMLParser

import nbformat
import numpy as np
import pytest

from autograder.term import similarity as sim
from autograder.testcells import reference_solutions

# The hand-made disguise of grace's per-row loop (independent of the demo's): other names, comments,
# spacing. Only name tokens that are local variables are renamed; dict keys stay.
MALLORY_RENAMES = {"grads": "g", "loss": "L", "n": "batch", "i": "k", "z1": "pre", "a1": "act", "z2": "out",
                   "shifted": "s", "log_p": "lp", "dz2": "delta2", "dz1": "delta1"}


def hand_disguise(code):
    for old, new in MALLORY_RENAMES.items():
        code = re.sub(rf"(?<![\"'\w]){re.escape(old)}(?![\"'\w])", new, code)
    code = code.replace(" = ", "=").replace("    for", "    # go through the batch\n    for")
    return code.replace("return", "# done\n    return")


def with_cells(release_nb, codes):
    """The release notebook with `codes` ({grade_id: source}) in those solution cells."""
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in codes and cell.cell_type == "code":
            cell.source = codes[gid]
    return nb


def loop_code():
    from autograder.variants import VARIANTS
    return VARIANTS["loss_and_grad_per_row_loop"].code["loss_and_grad"]


@pytest.fixture(scope="module")
def sim_course(released_course, release_nb, source_nb, tmp_path_factory):
    """Students who wrote loss_and_grad only (other cells as released): ada the reference, grace a
    per-row loop, mallory grace's loop disguised; linus and ken untouched; broken unreadable."""
    from autograder.course import Course

    course = Course(tmp_path_factory.mktemp("similarity") / "course")
    course.root.mkdir()
    for name in ("nbgrader_config.py", "gradebook.db"):
        (course.root / name).write_bytes((released_course.root / name).read_bytes())
    for step in ("source", "release"):
        (course.root / step).mkdir()
        (course.root / step / course.assignment).symlink_to(getattr(released_course, step))
    grace = loop_code()
    notebooks = {
        "ada": with_cells(release_nb, {"loss_and_grad": reference_solutions(source_nb)["loss_and_grad"]}),
        "grace": with_cells(release_nb, {"loss_and_grad": grace}),
        "mallory": with_cells(release_nb, {"loss_and_grad": hand_disguise(grace)}),
        "linus": release_nb,
        "ken": release_nb,
    }
    for student, nb in notebooks.items():
        course.submitted(student).mkdir(parents=True)
        nbformat.write(nb, str(course.notebook(course.submitted(student))))
    course.submitted("broken").mkdir(parents=True)
    course.notebook(course.submitted("broken")).write_text('{"cells": [')
    return course


@pytest.fixture(scope="module")
def cli_run(sim_course):
    """`python -m autograder similarity` on the class: (exit code, printed lines)."""
    import contextlib
    import io

    from autograder.__main__ import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--course", str(sim_course.root), "similarity", "--top", "3", "--threshold", "0"])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def pairs(sim_course):
    release, codes = sim.read_class(sim_course, echo=lambda *_: None)
    return sim.score_pairs(sim.distinctive_fingerprints(codes, release))


def pair_score(pairs, a, b):
    return next((p.score for p in pairs if {p.a, p.b} == {a, b}), 0.0)


def test_renamed_copy_ranks_first(pairs):
    assert pairs, "no pair found at all"
    assert {pairs[0].a, pairs[0].b} == {"grace", "mallory"}
    assert pairs[0].score > 0.9


def test_independent_correct_solutions_score_well_below(pairs):
    assert pair_score(pairs, "ada", "grace") < 0.3
    assert pair_score(pairs, "ada", "mallory") < 0.3
    assert pairs[0].score - pair_score(pairs, "ada", "grace") > 0.6


def test_untouched_submissions_do_not_pair(pairs, cli_run):
    assert not [p for p in pairs if {"linus", "ken"} & {p.a, p.b}]
    assert "2 with nothing written beyond the release" in cli_run[1]


def test_unreadable_notebook_costs_one_line(cli_run):
    code, out = cli_run
    assert code == 0
    assert [line for line in out.splitlines() if "broken" in line] == [
        "skipped broken: the notebook cannot be read (JSONDecodeError)"]


def test_cli_writes_page_and_heatmap(sim_course, cli_run):
    code, out = cli_run
    folder = sim_course.root / "reports" / sim_course.assignment
    page = (folder / "similarity.html").read_text()
    assert code == 0
    assert (folder / "similarity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "grace and mallory: score 1.00" in page and "<mark>" in page
    assert "data:image/png;base64," in page
    first = [line.split() for line in out.splitlines() if line.startswith("1 ")]
    assert first and first[0][1:3] == ["grace", "mallory"]


def test_class_wide_common_code_is_no_evidence(release_nb, source_nb):
    """Whole notebooks from the catalogue: most cells are the same (reference) code in every
    submission, which must not pair everyone; the demo's disguised copy of grace still comes first."""
    from autograder.samples.demo import disguise
    from autograder.variants import VARIANTS, make_submission

    release = sim.solution_cells(release_nb)
    cls = {"ada": "perfect", "grace": "loss_and_grad_per_row_loop", "margaret": "loss_and_grad_per_row_loop",
           "alan": "dz_missing_1_over_n", "barbara": "relu_mask_missing", "donald": "softmax_no_max_shift",
           "linus": "untouched"}
    codes = {}
    for student, variant in cls.items():
        nb = make_submission(release_nb, source_nb, VARIANTS[variant])
        if student == "margaret":
            disguise(nb)
        codes[student] = sim.written_code(sim.solution_cells(nb), release)
    pairs = sim.score_pairs(sim.distinctive_fingerprints(codes, release))
    assert {pairs[0].a, pairs[0].b} == {"grace", "margaret"} and pairs[0].score > 0.9
    assert all(p.score < 0.5 for p in pairs[1:]), [(p.a, p.b, p.score) for p in pairs[1:]]
    # the page shows the cells holding shared code, and names the others
    from autograder.verbs.similarity import render_page
    page = render_page("backprop", pairs[:1], codes, 0.3, b"", [], [])
    assert "def loss_and_grad" in page and "def softmax(" not in page
    assert "Cells without shared code, not shown: softmax, one_hot" in page
    # without the class-wide filter the reference cells would pair everyone (the filter matters)
    unfiltered = sim.score_pairs(sim.distinctive_fingerprints(codes, release, fraction=1.0))
    assert pair_score(unfiltered, "ada", "alan") > 0.9


# Two students' own code for four functions, written above the stub's `raise NotImplementedError()`.
OWN_CODE = {
    "x": {"softmax": "E = np.exp(Z - Z.max(axis=-1, keepdims=True))\n    return E / E.sum(axis=-1, keepdims=True)",
          "one_hot": "return np.eye(k)[y]",
          "relu": "return np.maximum(X, 0)",
          "predict": "return np.argmax(forward(X, params)[0], axis=1)"},
    "y": {"softmax": "out = []\n    for row in np.atleast_2d(Z):\n        e = [math.exp(v - max(row)) for v in row]\n"
                     "        out.append([v / sum(e) for v in e])\n    return np.array(out).reshape(Z.shape)",
          "one_hot": "Y = np.zeros((len(y), k))\n    Y[np.arange(len(y)), y] = 1.0\n    return Y",
          "relu": "out = X.copy()\n    out[out < 0] = 0\n    return out",
          "predict": "Z2, _ = forward(X, params)\n    labels = Z2.argmax(1)\n    return labels"},
}


def test_release_text_alone_gives_nothing(release_nb):
    """Two students who wrote different code in the same four cells, each above the stub's `raise`,
    and added a comment to every other stub: what they share is the release's text only."""
    release = sim.solution_cells(release_nb)
    cells = {}
    for student, own in OWN_CODE.items():
        cells[student] = {gid: src.replace("# YOUR CODE HERE", "# TODO (later)") for gid, src in release.items()}
        for gid, code in own.items():
            cells[student][gid] = release[gid].replace("# YOUR CODE HERE", code)
    written = {s: sim.written_code(c, release) for s, c in cells.items()}
    assert all(written.values())
    assert sim.score_pairs(sim.distinctive_fingerprints(written, release)) == []
    # the same two with the release's text not subtracted do pair: the subtraction is what matters
    from copydetect import compare_files
    plain = {s: sim.fingerprint(code) for s, code in written.items()}
    overlap, _, _ = compare_files(plain["x"], plain["y"])
    assert overlap >= sim.MIN_OVERLAP


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.starts = []

    def handle_starttag(self, tag, attrs):
        self.starts.append(tag)


def test_student_markup_stays_text(release_nb):
    """A student's `</pre><script>` (in code, a string or a comment, and in an id) is shown as text."""
    release = sim.solution_cells(release_nb)
    hostile = ('def relu(X):\n    # </pre><script>alert(1)</script>\n    tag = "</pre><script>alert(2)</script>"\n'
               '    out = np.maximum(X, 0.0) + 0 * len(tag)\n    out = out * 1.0 + 0.0 * out.sum()\n'
               '    for row in range(out.shape[0]):\n        out[row] = np.where(out[row] > 0, out[row], 0.0)\n'
               '    return out\n')
    written = {s: sim.written_code({"relu": hostile}, release) for s in ("eve", "<b>mallet</b><script>x()</script>")}
    pairs = sim.score_pairs(sim.distinctive_fingerprints(written, release))
    assert pairs, "the two identical submissions should pair"
    from autograder.verbs.similarity import render_page
    page = render_page("backprop", pairs, written, 0.0, b"\x89PNG", [], [])
    tags = Tags()
    tags.feed(page)
    assert "script" not in tags.starts
    assert tags.starts.count("pre") == 2
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)" in page and "&lt;/pre&gt;&lt;script&gt;alert(2)" in page
    assert "&lt;b&gt;mallet" in page
    assert "<script" not in page.lower()


def test_demo_copy_scores_what_the_original_scores(source_nb, release_nb):
    """The demo's disguised copy computes exactly what grace's code computes, so both get the same points."""
    from autograder.samples.demo import disguise
    from autograder.variants import VARIANTS, make_submission

    nb = make_submission(release_nb, source_nb, VARIANTS["loss_and_grad_per_row_loop"])
    original = sim.solution_cells(nb)["loss_and_grad"]
    disguise(nb)
    disguised = sim.solution_cells(nb)["loss_and_grad"]
    assert disguised != original and "grads" not in disguised
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(7, 5)), rng.integers(0, 3, size=7)
    params = {"W1": rng.normal(size=(5, 4)), "b1": rng.normal(size=4), "W2": rng.normal(size=(4, 3)),
              "b2": rng.normal(size=3)}
    results = []
    for code in (original, disguised):
        namespace = {"np": np, "relu": lambda z: np.maximum(z, 0)}
        exec(code, namespace)
        results.append(namespace["loss_and_grad"](X, y, params, weight_decay=0.1))
    assert results[0][0] == results[1][0]
    for key in params:
        np.testing.assert_array_equal(results[0][1][key], results[1][1][key])


def test_bad_threshold_is_refused(sim_course, capsys):
    from autograder.__main__ import main
    with pytest.raises(SystemExit) as stop:
        main(["--course", str(sim_course.root), "similarity", "--threshold", "2"])
    assert stop.value.code == 2
    assert "not between 0 and 1" in capsys.readouterr().err


def test_cells_stored_as_lists_of_lines_are_read():
    """The notebook format may store a cell's text as a list of lines; it is the same code."""
    nb = {"cells": [{"cell_type": "code", "source": ["def f(x):\n", "    return x\n"],
                     "metadata": {"nbgrader": {"grade_id": "f", "solution": True}}},
                    {"cell_type": "code", "source": "x = 1",
                     "metadata": {"nbgrader": {"grade_id": "t", "grade": True}}},
                    "not a cell"]}
    assert sim.solution_cells(nb) == {"f": "def f(x):\n    return x\n"}


def test_a_huge_submission_is_cut_with_one_line():
    cells, cut = sim.capped({"a": "x" * 10, "b": "y" * 10, "c": "z"}, limit=15)
    assert cut and cells == {"a": "x" * 10, "b": "y" * 5, "c": ""}
    assert sim.capped({"a": "x"}, limit=15) == ({"a": "x"}, False)


def test_no_submissions_is_one_clear_line(released_course, capsys):
    from autograder.__main__ import main
    assert main(["--course", str(released_course.root), "similarity"]) == 2
    assert "error: no readable submissions" in capsys.readouterr().err
    assert not (released_course.root / "reports" / released_course.assignment / "similarity.html").exists()


def with_pass(code):
    """`pass` after every simple statement, at its indentation (a no-op the tokens still see)."""
    out = []
    for line in code.split("\n"):
        out.append(line)
        body = line.strip()
        if body and not body.endswith(":") and not body.startswith(("#", "return", "def")):
            out.append(line[:len(line) - len(line.lstrip())] + "pass")
    return "\n".join(out)


def with_parens(code):
    """The right side of every assignment (plain or augmented) wrapped in two more parentheses."""
    return re.sub(r"^(\s*[^=#\n(]+?\s*[-+*/]?=)\s*(.+)$", r"\1 ((\2))", code, flags=re.M)


def class_with_copy(release_nb, source_nb, copy):
    """{student: written code}: ada the reference, grace the per-row loop, mallory `copy`, and four
    more who wrote the reference (so the class-wide filter applies as in a real class)."""
    release = sim.solution_cells(release_nb)
    reference = reference_solutions(source_nb)["loss_and_grad"]
    cells = {"ada": reference, "grace": loop_code(), "mallory": copy, **{f"f{k}": reference for k in range(4)}}
    return {s: sim.written_code({"loss_and_grad": code}, release) for s, code in cells.items()}, release


@pytest.mark.parametrize("hide", [with_pass, with_parens, lambda code: with_pass(with_parens(code))],
                         ids=["pass", "parentheses", "both"])
def test_no_op_padding_does_not_hide_a_copy(release_nb, source_nb, hide):
    """`pass` after every line and extra parentheses change the tokens, not the program."""
    copy = hide(hand_disguise(loop_code()))
    compile(copy, "copy", "exec")  # still a valid program
    assert copy.count("pass") > 10 or copy.count("((") > 10
    codes, release = class_with_copy(release_nb, source_nb, copy)
    pairs = sim.score_pairs(sim.distinctive_fingerprints(codes, release))
    assert pairs and {pairs[0].a, pairs[0].b} == {"grace", "mallory"}, [(p.a, p.b, p.score) for p in pairs]
    assert pairs[0].score > 0.9


def test_a_fake_cell_header_hides_no_code(release_nb):
    """A student's own `# --- <grade_id>` line is their text, not a cell boundary: what is above it is shown."""
    release = sim.solution_cells(release_nb)
    code = loop_code().replace("    loss = 0.0\n", "    loss = 0.0\n# --- loss_and_grad\n")
    written = {s: sim.written_code({"loss_and_grad": code}, release) for s in ("eve", "mallet")}
    pairs = sim.score_pairs(sim.distinctive_fingerprints(written, release))
    assert pairs, "the two identical submissions should pair"
    from autograder.verbs.similarity import render_page
    page = render_page("backprop", pairs, written, 0.0, b"", [], [])
    assert page.count("def loss_and_grad(") == 2
    assert page.count("grads = {name: np.zeros_like") == 2


def test_page_shows_the_students_original_code(release_nb, source_nb):
    """Compared after normalisation, shown as written: the copy's `pass` lines and comments are on the page."""
    copy = with_pass(hand_disguise(loop_code()))
    codes, release = class_with_copy(release_nb, source_nb, copy)
    pairs = sim.score_pairs(sim.distinctive_fingerprints(codes, release))
    from autograder.verbs.similarity import render_page
    page = render_page("backprop", pairs[:1], codes, 0.0, b"", [], [])
    assert "# go through the batch" in page and page.count("pass") >= copy.count("pass")
    assert "<mark>" in page


def test_cells_that_are_not_plain_python_are_still_compared():
    """IPython magic lines are blanked so the rest parses; a cell that still does not parse (or is too
    deeply nested to walk) is compared as written, and costs nothing else."""
    assert sim.canonical("%matplotlib inline\n!ls\ny = ((2))\npass\n")[0] == "y = 2"
    assert sim.canonical("x = (a\n     % b)\n")[0] == "x = a % b"  # a `%` that continues a line is Python
    for odd in ("def f(:\n    pass\n", "x = " + "(" * 5000 + "1" + ")" * 5000, "x = 1\0\n"):
        assert sim.canonical(odd)[0] == odd
    code, lines = sim.canonical('def f(x):\n    """doc"""\n    pass\nmatch x:\n    case 1:\n        pass\n')
    assert code == "def f(x):\n    pass\nmatch x:\n    case 1:\n        pass"
    assert lines[1] == (1, 1) and lines[3] == (4, 4)
