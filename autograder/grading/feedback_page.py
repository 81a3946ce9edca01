"""The feedback page, built only from trusted data.

A student's feedback HTML is made of exactly four things:
  (a) the notebook as the student submitted it (submitted/<student>/<assignment>/): their own cells
      and the outputs their own machine produced;
  (b) the source notebook's locked cells with hidden tests and solutions removed (what the release
      shows them anyway);
  (c) the grader's verdict per test cell: notebook-level metadata "autograder" that the grader process
      writes into the autograded notebook, or, for notebooks graded before it existed, the gradebook;
  (d) the gradebook's scores (nbgrader's GetGrades, which runs after TrustedFeedback).
Nothing the grading run produced -- kernel outputs, files the kernel wrote -- is ever rendered: the
autograded notebook nbgrader hands us is thrown away except for (c). So a student's code cannot print
hidden tests or hidden inputs into its own feedback; the leak scan in feedback.py only backs this up.

Everything the student wrote is untrusted: outputs keep only text, PNG and JPEG (no HTML, JavaScript,
SVG or widgets), each capped in size; Markdown is rendered and then sanitized (no script, event
handlers, iframes, forms, style or class attributes), through the `markdown2html` filter below.

Wired into nbgrader's GenerateFeedback by the course's nbgrader_config.py, so the kit's `feedback`
verb, `nbgrader generate_feedback` and the formgrader's feedback button all build the same page.
"""
import base64
import binascii
import copy
import json
import re
from pathlib import Path

import bleach
import nbformat
from jinja2 import pass_context
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions, NbGraderPreprocessor

from autograder.course import coursedir_of

# Size caps for what a page shows of the student's own outputs. A submission may carry hundreds of MB
# of outputs; the page must stay readable and small whatever it carries.
MAX_TEXT = 20_000            # characters of one text output, one traceback, one cell's source
MAX_IMAGE = 2_000_000        # base64 characters of one image (about 1.5 MB)
MAX_OUTPUTS_PER_CELL = 20
MAX_PAGE_OUTPUTS = 8_000_000  # characters of all outputs of one page together
MAX_MESSAGE = 600            # a verdict's message, as the grader's contract says
# Markdown a page renders: sanitizing is quadratic on some inputs ("*" * 20_000 takes 5 s), so a
# longer cell, or cells past the page's total, are shown as plain text instead (linear).
MAX_MARKDOWN_CELL = 10_000
MAX_MARKDOWN_PAGE = 50_000
KEEP_MIMETYPES = ("text/plain", "image/png", "image/jpeg")
BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MISSING_DETAILS = "details not recorded; re-grade to see them"


# ---------------------------------------------------------------------------------------------
# (b) the release version of the source's cells


def release_cells(source_nb, every_cell=False):
    """{grade_id: cell} of the source notebook as the release shows it: hidden tests and solutions
    removed by nbgrader's own preprocessors (the ones generate_assignment runs). With every_cell, the
    list of all its cells instead."""
    nb = copy.deepcopy(source_nb)
    nb, _ = ClearSolutions().preprocess(nb, {})
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    if every_cell:
        return list(nb.cells)
    cells = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid:
            cells.setdefault(gid, cell)
    return cells


def is_test(meta):
    return bool(meta.get("grade")) and not meta.get("solution")


def submitted_grade_id(cell):
    """The grade_id a submitted cell claims, or None; its metadata is the student's, of any shape."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    gid = meta.get("grade_id") if isinstance(meta, dict) else None
    return gid if isinstance(gid, str) else None


# ---------------------------------------------------------------------------------------------
# (c) verdicts and (d) scores


def grader_verdicts(autograded_nb):
    """{grade_id: verdict dict} from the grader's notebook-level metadata, or {} when it is absent or
    malformed (a notebook graded before the grader recorded verdicts)."""
    record = autograded_nb.metadata.get("autograder") if autograded_nb is not None else None
    if not isinstance(record, dict) or record.get("version") != 1 or not isinstance(record.get("cells"), dict):
        return {}
    verdicts = {}
    for gid, verdict in record["cells"].items():
        if isinstance(verdict, dict) and verdict.get("status") in STATUS_WORDS:
            verdicts[gid] = verdict
    return verdicts


def gradebook_grades(db_url, notebook_id, assignment_id, student_id):
    """{grade_id: (score, max_score, auto_score, manual_score)} of one submission, from nbgrader's
    gradebook. Raises ValueError with a one-line reason when the student has no grades."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission_notebook(notebook_id, assignment_id, student_id)
        except MissingEntry:
            raise ValueError(f"{student_id} has no grades for {assignment_id} in the gradebook: grade first") from None
        return {g.name: (float(g.score), float(g.max_score or 0),
                         None if g.auto_score is None else float(g.auto_score),
                         None if g.manual_score is None else float(g.manual_score))
                for g in submission.grades}


def _one_line(text, limit=MAX_MESSAGE):
    text = " ".join(ANSI.sub("", str(text or "")).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


TAMPER = ("it passed inside your notebook but failed when the grader ran it on its own, so the notebook's "
          "result was not counted (does your notebook change numpy, the test helpers or the tests?)")
STATUS_WORDS = {"passed", "failed", "timed out", "tamper suspected"}


def verdict_line(gid, verdict, grade):
    """The one line a student reads under a test cell. `verdict` is the grader's record for the cell
    (or None), `grade` the gradebook's (score, max_score, auto_score, manual_score) (or None).

    The grader's record is used only when its score is the one the gradebook holds from grading; the
    gradebook is what counts, so a record that disagrees with it (or none at all) gives the generic line.
    """
    score, max_score, auto, manual = grade if grade else (0.0, 0.0, None, None)
    recorded = verdict.get("score") if verdict is not None else None
    if isinstance(recorded, (int, float)) and auto is not None and abs(recorded - auto) < 1e-9:
        status, message = verdict["status"], _one_line(verdict.get("message"))
        if status == "passed":
            line = f"{gid} passed"
        elif status == "failed":
            line = f"{gid} failed: {message}" if message else f"{gid} failed"
        elif status == "timed out":
            line = f"{gid} timed out: " + (message or "your code took longer than the time limit")
        else:  # the grader's message here is written for the TA; the student gets the plain version
            line = f"{gid} failed: {TAMPER}"
    else:
        passed = grade is not None and max_score > 0 and (auto if auto is not None else 0.0) >= max_score
        line = f"{gid} passed" if passed else f"{gid} failed: {MISSING_DETAILS}"
    if manual is not None and (auto is None or abs(manual - auto) > 1e-9):
        line += f" (your grader set this cell's score by hand: {score:g} / {max_score:g})"
    return line, line.startswith(f"{gid} passed")


# ---------------------------------------------------------------------------------------------
# the student's own outputs, made safe


class Budget:
    """Characters of output a page may still show."""

    def __init__(self, chars=MAX_PAGE_OUTPUTS):
        self.left = chars

    def take(self, n):
        if n > self.left:
            return False
        self.left -= n
        return True


def _cap(text, limit=MAX_TEXT):
    text = text if isinstance(text, str) else "".join(text) if isinstance(text, list) else str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters not shown)\n"


def safe_outputs(outputs, budget):
    """The student's outputs reduced to what the page may render: streams, errors (capped text),
    and display/execute results with only text/plain, PNG and JPEG, no metadata (width/height and
    filenames are student-controlled attribute values)."""
    kept = []
    for output in list(outputs or [])[:MAX_OUTPUTS_PER_CELL]:
        kind = output.get("output_type")
        new = None
        if kind == "stream":
            name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
            new = new_output("stream", name=name, text=_cap(output.get("text", "")))
        elif kind == "error":
            traceback = _cap("\n".join(str(t) for t in (output.get("traceback") or [])))
            new = new_output("error", ename=_cap(output.get("ename", ""), 200),
                             evalue=_cap(output.get("evalue", ""), MAX_MESSAGE), traceback=[traceback])
        elif kind in ("execute_result", "display_data"):
            data = {}
            for mime in KEEP_MIMETYPES:
                value = (output.get("data") or {}).get(mime)
                if isinstance(value, list):
                    value = "".join(value)
                if not isinstance(value, str):
                    continue
                if mime == "text/plain":
                    data[mime] = _cap(value)
                elif len(value) <= MAX_IMAGE and BASE64.match(value) and _decodes(value):
                    data[mime] = value
            if data:
                new = new_output(kind, data=data)
                if kind == "execute_result":
                    new.execution_count = None
        if new is None:
            continue
        if not budget.take(len(json.dumps(new))):
            kept.append(new_output("stream", name="stdout", text=(
                "(output not shown: this page already shows as much output as it can)\n")))
            break
        kept.append(new)
    if len(outputs or []) > MAX_OUTPUTS_PER_CELL:
        kept.append(new_output("stream", name="stdout",
                               text=f"({len(outputs) - MAX_OUTPUTS_PER_CELL} more outputs not shown)\n"))
    return kept


def as_plain_text(source):
    """Markdown source shown verbatim: a fenced block, whose text the sanitizer passes in linear time."""
    return "```\n" + _cap(source).replace("`", "'") + "\n```"


def limit_markdown(cells):
    """Markdown cells longer than MAX_MARKDOWN_CELL, or past MAX_MARKDOWN_PAGE in all, become plain text."""
    total = 0
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        total += len(source)
        if len(source) > MAX_MARKDOWN_CELL or total > MAX_MARKDOWN_PAGE:
            cell.source = as_plain_text(source)


def inert_outputs(cells):
    """Every output reduced to what a page may render (safe_outputs), for any notebook a TA or a
    student opens in a browser: the autograded one is rendered by formgrader on the server's origin."""
    budget = Budget()
    for cell in cells:
        if cell.get("cell_type") == "code":
            cell.outputs = safe_outputs(cell.get("outputs", []), budget)


def _decodes(value):
    try:
        base64.b64decode("".join(value.split()), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# (a) + (b) + (c): the trusted notebook


def trusted_notebook(submitted_nb, source_nb, verdicts, grades):
    """The notebook the page is rendered from.

    The submission's cells in the student's order; a cell whose grade_id is in the source is matched
    to it (first occurrence only; a copy or a cell whose type changed is the student's own cell):
      - locked cells become their release version; a test cell's outputs become its verdict line;
        other locked code cells keep the student's own outputs (e.g. their training curves);
      - solution cells keep the student's source and outputs, with the source's nbgrader metadata;
      - every other cell is the student's, with no nbgrader metadata (a student cannot make a cell
        look graded), raw cells shown as Markdown (sanitized like any other).
    Graded cells the student deleted are put back (release version) where the source has them, so
    every score in the gradebook has its cell on the page. Notebook metadata: the source's kernel and
    language only (the grader's record, seed included, never reaches the page).
    """
    released = release_cells(source_nb)
    order = {gid: i for i, gid in enumerate(released)}
    budget = Budget()
    placed, rows = set(), []  # rows: (source position or None, cell)
    for cell in submitted_nb.cells:
        gid = submitted_grade_id(cell)
        release = released.get(gid)
        if release is not None and gid not in placed and release.cell_type == cell.get("cell_type"):
            placed.add(gid)
            rows.append((order[gid], _graded_cell(release, cell, verdicts, grades, budget)))
        else:
            rows.append((None, _student_cell(cell, budget)))
    for gid, release in released.items():
        meta = release.metadata["nbgrader"]
        if gid in placed or not (meta.get("grade") or meta.get("task")):
            continue
        position = 0
        for i, (pos, _) in enumerate(rows):
            if pos is not None and pos < order[gid]:
                position = i + 1
        rows.insert(position, (order[gid], _graded_cell(release, None, verdicts, grades, budget)))
    nb = new_notebook(cells=[cell for _, cell in rows])
    limit_markdown(nb.cells)
    for key in ("kernelspec", "language_info"):
        if key in source_nb.metadata:
            nb.metadata[key] = copy.deepcopy(source_nb.metadata[key])
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    return nb


def _graded_cell(release, submitted, verdicts, grades, budget):
    meta = copy.deepcopy(release.metadata["nbgrader"])
    gid = meta["grade_id"]
    attachments = {}
    if meta.get("solution") and submitted is not None:
        source = _student_source(submitted, budget)
        outputs = submitted.get("outputs", []) if release.cell_type == "code" else []
        attachments = safe_attachments(submitted, budget)
    else:
        source = release.source
        outputs = submitted.get("outputs", []) if submitted is not None and release.cell_type == "code" else []
    if release.cell_type == "markdown":
        cell = new_markdown_cell(source=source, metadata={"nbgrader": meta})
        if attachments:
            cell.attachments = attachments
        return cell
    if is_test(meta):
        line, passed = verdict_line(gid, verdicts.get(gid), grades.get(gid))
        if submitted is None:
            line += " (this cell was missing from your notebook)"
        shown = [new_output("stream", name="stdout" if passed else "stderr", text=line + "\n")]
    else:
        shown = safe_outputs(outputs, budget)
    return new_code_cell(source=source, outputs=shown, metadata={"nbgrader": meta})


def _student_cell(cell, budget):
    source = _student_source(cell, budget)
    if cell.get("cell_type") == "code":
        return new_code_cell(source=source, outputs=safe_outputs(cell.get("outputs", []), budget))
    new = new_markdown_cell(source=source)
    attachments = safe_attachments(cell, budget) if cell.get("cell_type") == "markdown" else {}
    if attachments:
        new.attachments = attachments
    return new


def _student_source(cell, budget):
    """The student's cell source, capped; sources count against the page's budget like outputs
    (ten thousand long cells must not make a 200 MB page)."""
    source = _cap(cell.get("source", ""))
    return source if budget.take(len(source)) else "(cell not shown: this page already shows as much as it can)"


def safe_attachments(cell, budget):
    """A Markdown cell's pasted images (a photo of a derivation), PNG/JPEG with plain base64 only."""
    kept = {}
    attachments = cell.get("attachments")
    for name, bundle in (attachments.items() if isinstance(attachments, dict) else []):
        for mime in ("image/png", "image/jpeg"):
            value = bundle.get(mime) if isinstance(bundle, dict) else None
            if isinstance(value, str) and len(value) <= MAX_IMAGE and BASE64.match(value) and _decodes(value) \
                    and budget.take(len(value)):
                kept[str(name)] = {mime: value}
                break
    return kept


# ---------------------------------------------------------------------------------------------
# nbgrader wiring


class TrustedFeedback(NbGraderPreprocessor):
    """GenerateFeedback's first preprocessor: replaces the autograded notebook nbgrader loaded with
    the trusted notebook (see the module's docstring), then GetGrades adds the gradebook's scores.

    It also empties the student's feedback folder: GenerateFeedback has just copied every other file
    of the autograded folder there (files the kernel may have written), and only the HTML may stay.
    """

    def preprocess(self, nb, resources):
        coursedir = self._coursedir()
        info = resources["nbgrader"]
        student, assignment, notebook = info["student"], info["assignment"], info["notebook"]
        root = Path(coursedir.root)
        name = f"{notebook}.ipynb"
        submitted = Path(coursedir.format_path(coursedir.submitted_directory, student, assignment)) / name
        source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / name
        if not submitted.is_absolute():
            submitted, source = root / submitted, root / source
        if not submitted.is_file():
            raise ValueError(f"no submitted notebook at {submitted}: feedback is built from it")
        grades = gradebook_grades(info["db_url"], notebook, assignment, student)
        submitted_nb = nbformat.read(str(submitted), as_version=4)
        source_nb = nbformat.read(str(source), as_version=4)
        changed = changed_answers(submitted_nb, nb, source_nb)
        if changed:
            raise ValueError(f"{student}'s submission changed since it was graded (cell {changed[0]}): "
                             "grade it again first")
        trusted = trusted_notebook(submitted_nb, source_nb, grader_verdicts(nb), grades)
        folder = Path(coursedir.format_path(coursedir.feedback_directory, student, assignment))
        clear_folder(folder if folder.is_absolute() else root / folder)
        return trusted, resources

    def _coursedir(self):
        coursedir = coursedir_of(self)
        if coursedir is None:
            raise ValueError("TrustedFeedback runs only inside nbgrader's GenerateFeedback")
        return coursedir


AWAITING = ("**Awaiting grading.** Your grader has not marked this answer yet: the 0 shown for it is not a mark, "
            "and your total is provisional until it is marked.")


def pending_grades(db_url, notebook_id, assignment_id, student_id):
    """grade_ids of a submission's cells awaiting a TA (formgrader's queue), in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.results import is_pending
    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission_notebook(notebook_id, assignment_id, student_id)
        except MissingEntry:
            return set()
        return {g.name for g in submission.grades if is_pending(g)}


def mark_pending(nb, resources, pending):
    """After GetGrades: each pending cell's comment says it awaits grading (nbgrader's page shows its
    score as 0 and would show a stale comment), and the heading says the total is provisional."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") in pending:
            meta["comment"] = AWAITING
    if pending:
        count = len(pending)
        info = resources["nbgrader"]
        info["notebook"] = (f"{info['notebook']}: provisional, {count} answer{'s' if count > 1 else ''} "
                            f"awaiting grading")
    return nb, resources


class PendingFeedback(NbGraderPreprocessor):
    """GenerateFeedback's step after GetGrades: answers awaiting a TA read as pending (mark_pending)."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        pending = pending_grades(info["db_url"], info["notebook"], info["assignment"], info["student"])
        return mark_pending(nb, resources, pending)


def changed_answers(submitted_nb, autograded_nb, source_nb):
    """grade_ids of the solution cells whose code differs between the submission and the notebook
    that was graded (the student was collected again but not re-graded): verdicts of one notebook
    must not be shown next to another's code."""
    def answers(nb):
        found = {}
        for cell in nb.cells:
            gid = submitted_grade_id(cell)
            if gid:
                found.setdefault(gid, cell.get("source", ""))
        return found
    graded = answers(autograded_nb)
    solutions = {gid for gid, cell in release_cells(source_nb).items() if cell.metadata["nbgrader"].get("solution")}
    return [gid for gid, source in answers(submitted_nb).items()
            if gid in solutions and gid in graded and graded[gid] != source]


def clear_folder(folder, keep=None):
    """Remove everything inside `folder` but the regular file named `keep`, never following links;
    the folder itself stays (a link in its place is removed)."""
    import shutil
    if folder.is_symlink():
        folder.unlink()
        return
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name == keep and entry.is_file() and not entry.is_symlink():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# Markdown: rendered as nbconvert renders it, then sanitized. Registered as the feedback exporter's
# `markdown2html` filter (nbgrader's feedback template renders Markdown cells and comments with it and
# does not sanitize). No id/class/style anywhere: student HTML must not borrow the page's own classes
# (its score banner) or position itself over them.
ALLOWED_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "b", "i", "u", "s", "del",
                "sub", "sup", "code", "pre", "blockquote", "ul", "ol", "li", "dl", "dt", "dd", "table", "thead",
                "tbody", "tr", "th", "td", "a", "img", "span", "div"}
IMAGE_DATA = re.compile(r"^data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*$")


def _allowed_attribute(tag, name, value):
    if tag == "a" and name == "href":
        return value.startswith(("http://", "https://", "mailto:", "#"))
    if tag == "img" and name == "src":
        return bool(IMAGE_DATA.match(value)) or value.startswith(("http://", "https://"))
    if tag == "img" and name == "alt" or tag == "a" and name == "title":
        return True
    if tag in ("td", "th") and name in ("colspan", "rowspan"):
        return value.isdigit()
    return False


def sanitize_html(html):
    """Student HTML made inert: tags outside the list are shown as text, attributes outside it dropped."""
    return bleach.clean(html, tags=ALLOWED_TAGS, attributes=_allowed_attribute,
                        protocols={"http", "https", "mailto", "data"}, strip=False, strip_comments=True)


@pass_context
def markdown2html(context, source):
    from nbconvert.filters.markdown_mistune import InvalidNotebook, IPythonRenderer, MarkdownWithMath

    cell = context.get("cell", {}) or {}
    if len(str(source)) > MAX_MARKDOWN_CELL:  # formgrader renders cells one by one: cap each here too
        source = as_plain_text(str(source))
    # Attachments are the student's; only images whose data is plain base64 are kept.
    attachments = {}
    for name, bundle in (cell.get("attachments") or {}).items():
        for mime in ("image/png", "image/jpeg"):
            value = (bundle or {}).get(mime)
            if isinstance(value, str) and len(value) <= MAX_IMAGE and BASE64.match(value):
                attachments[name] = {mime: value}
                break
    def render(text):
        renderer = IPythonRenderer(escape=False, attachments=attachments, embed_images=False,
                                   exclude_anchor_links=True)
        return MarkdownWithMath(renderer=renderer).render(text)

    # An image naming an attachment dropped above (or never there) would stop nbconvert: no image instead.
    source = re.sub(r"attachment:([^\s)\"'>]*)",
                    lambda m: m[0] if m[1] in attachments else f"dropped-{m[0]}", str(source))
    try:
        rendered = render(source)
    except InvalidNotebook:  # whatever else nbconvert refuses: the text without attachments
        rendered = render(source.replace("attachment:", "dropped-attachment:"))
    return sanitize_html(rendered)
