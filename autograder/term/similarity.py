"""Which students' code is alike: the code each student wrote in the solution cells, compared pair by
pair with copydetect's fingerprints (pygments tokens, every identifier and string replaced by one
letter, whitespace and comments dropped, so renaming variables and reformatting change nothing).
Each cell is first read as Python reads it (`canonical`: `pass`, docstrings and other bare constants
dropped, printed again by ast.unparse, so redundant parentheses go too): padding a copy with no-ops
cannot lower its score. The page still shows what the student wrote (`Cell.lines` maps back).

What is compared, and what is left out so it cannot make everyone alike:
- only the solution code cells (matched by nbgrader grade_id, as the grader matches them), and of
  those only the ones the student changed from the release; a submission with none is "nothing
  written" and never paired;
- the release's own text of each solution cell (the `def f(x):` stubs, docstrings, `raise
  NotImplementedError()`) is boilerplate: its fingerprints are removed from everyone's;
- fingerprints found in many submissions (more than COMMON_FRACTION of those with code, and at least
  COMMON_MIN of them) are removed too, as MOSS does: what most of the class wrote alike is the
  obvious way to write it, not evidence that two students shared code.

A pair's score is the larger of the two shares: how much of one student's remaining (distinctive)
code is also in the other's. The score is evidence for a conversation, never proof.

Cost: reading and fingerprinting are linear in the class's code; pairs are O(n^2) in the worst
case, but only pairs sharing at least one distinctive fingerprint are compared (an index from
fingerprint to students), and common fingerprints are gone by then. Memory: one fingerprint set per
student plus an n x n score matrix (n = 1,000 is 8 MB).
"""
import ast
import bisect
import functools
import html
import io
import json
import re
from itertools import combinations
from typing import NamedTuple

import numpy as np

K = 25  # copydetect's noise threshold: a fingerprint is 25 characters of normalised code (about 10 tokens)
WINDOW = 1  # winnowing window: 1 keeps every k-gram (finest highlighting; a class's code is small)
COMMON_FRACTION = 0.5  # a fingerprint in more than this share of the written submissions is common...
COMMON_MIN = 4  # ...if it is also in at least this many (a group of three who share code stays visible)
# Normalised code is generic (every name is one letter), so short stretches match by chance: a pair
# must share at least this many normalised characters (about 40 tokens, three or four lines) to count,
# and a student with less distinctive code than that is "too little of their own to compare".
MIN_OVERLAP = 4 * K
# A whole solution is about 10,000 characters; a pasted blob past this is cut, so one submission
# cannot make the report slow for the class (tokenizing costs about 1 s per 100,000 characters).
MAX_CODE = 200_000


class Pair(NamedTuple):
    a: str
    b: str
    score: float        # max(share_a, share_b)
    share_a: float      # share of a's distinctive code also in b's
    share_b: float
    slices_a: np.ndarray  # 2 x m: starts and ends of the shared code in a's text
    slices_b: np.ndarray


def read_cells(path):
    """A notebook file's JSON, read as data without nbformat's schema validation (slow, and a
    notebook that fails it still has the student's code); raises ValueError if it is not a notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a notebook: no list of cells")
    return nb


def solution_cells(nb):
    """{grade_id: source} of the notebook's solution code cells, first cell per grade_id (nbgrader's
    DeduplicateIds keeps the first too); cells whose source is not text are skipped."""
    found = {}
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict):
            continue
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if not isinstance(meta, dict):
            continue
        gid, source = meta.get("grade_id"), cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)  # the file format's other way of storing a cell's text
        if cell.get("cell_type") == "code" and meta.get("solution") and isinstance(gid, str) \
                and isinstance(source, str) and gid not in found:
            found[gid] = source
    return found


class Written(str):
    """A student's written code as compared (each changed cell normalised, under a `# --- grade_id`
    line), a str; `.cells` records where each cell is, so nothing the student typed (a line that looks
    like a header, say) can move a boundary: [Cell]."""
    cells = ()


class Cell(NamedTuple):
    gid: str
    start: int      # where the cell's normalised text starts in the Written text (after its header)
    end: int
    original: str   # the cell as the student wrote it (shown on the page)
    lines: dict     # {line of the normalised text: (first, last) lines of the original}, 1-based


MAGIC = re.compile(r"^[ \t]*[%!].*$", flags=re.M)


class _DropNoOps(ast.NodeTransformer):
    """Drops `pass` and bare constants (docstrings, a lone `0` or `...`): statements that do nothing
    but add tokens, so padding a copy with them cannot lower its score."""

    def visit_Pass(self, node):
        return None

    def visit_Expr(self, node):
        return None if isinstance(node.value, ast.Constant) else self.generic_visit(node)

    def generic_visit(self, node):
        super().generic_visit(node)
        if getattr(node, "body", None) == [] and not isinstance(node, ast.Module):
            # a block cannot be empty (an empty `else:` can go); the `pass` stands on the header's line
            at = getattr(node, "pattern", node)  # a `case` has no position of its own; its pattern has
            node.body = [ast.Pass(lineno=at.lineno, col_offset=at.col_offset, end_lineno=at.lineno,
                                  end_col_offset=at.col_offset)]
        return node


def statements(tree):
    """Every statement of an AST, in source order (depth first)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.stmt):
            yield child
        yield from statements(child)


def original_lines(node):
    """(first, last) line of a statement in its source; for a compound one, its header only."""
    inner = [n.lineno for n in statements(node)]
    if not inner:
        return node.lineno, node.end_lineno
    return node.lineno, max(node.lineno, min(inner) - 1)


@functools.lru_cache(maxsize=256)  # the release's cells are normalised once, not once per student
def canonical(source):
    """(code, {normalised line: (first, last) original line}) of one cell, the same program with no
    no-ops: parsed (with IPython magic lines, `%`/`!`, blanked if it does not parse as it is), `pass`
    and bare constants dropped, and printed again by ast.unparse (which also drops redundant
    parentheses and comments and fixes layout and quotes). Source that does not parse even so is
    compared as written (lines map to themselves)."""
    for text in (source, MAGIC.sub("", source)):  # magics blanked only if needed: `% b` may continue a line
        try:
            tree = _DropNoOps().visit(ast.parse(text))
            code = ast.unparse(tree)
            again = ast.parse(code)  # the printed code's own line numbers, statement by statement
            break
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # not Python, or too deep to walk
            continue
    else:
        return source, {i: (i, i) for i in range(1, source.count("\n") + 2)}
    printed, written = list(statements(again)), list(statements(tree))
    if [type(n) for n in printed] != [type(n) for n in written]:  # printed in another shape: no line map
        return code, {}
    lines = {}
    for new, old in zip(printed, written):
        lines.setdefault(new.lineno, original_lines(old))
    return code, lines


@functools.lru_cache(maxsize=256)
def normalised(source):
    """Python code as copydetect compares it: tokens only, every name and string one letter."""
    from copydetect.utils import filter_code

    return filter_code(source, "code.py", "python")[0]


def written_code(submitted, release):
    """The student's own code (a Written): their version of each of the release's solution cells
    that they changed (a new comment, spacing or a `pass` is no change), normalised by `canonical`, in
    release order, each under a `# --- grade_id` line (a comment: it makes no fingerprint). "" when
    they changed none."""
    text, cells = "", []
    for gid, given in release.items():
        if gid not in submitted:
            continue
        code, lines = canonical(submitted[gid])
        if normalised(code) == normalised(canonical(given)[0]):
            continue
        text += ("\n" if text else "") + f"# --- {gid}\n"
        code = code.rstrip()
        cells.append(Cell(gid, len(text), len(text) + len(code), submitted[gid], lines))
        text += code + "\n"
    written = Written(text)
    written.cells = tuple(cells)
    return written


def read_class(course, echo=print):
    """(release cells, {student: written code}) of the course's assignment; a notebook that cannot
    be read costs its student one line and nothing else."""
    release = solution_cells(read_cells(course.notebook(course.release)))
    codes = {}
    for student in course.submitted_students():
        try:
            submitted = solution_cells(read_cells(course.notebook(course.submitted(student))))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one student's problem
            echo(f"skipped {student}: the notebook cannot be read ({type(exc).__name__})")
            continue
        submitted, cut = capped(submitted)
        if cut:
            echo(f"{student}: over {MAX_CODE:,} characters in the solution cells; only the first {MAX_CODE:,} "
                 "are compared")
        codes[student] = written_code(submitted, release)
    return release, codes


def capped(cells, limit=MAX_CODE):
    """(cells cut to at most `limit` characters in all, in order; whether anything was cut)."""
    out, left = {}, limit
    for gid, source in cells.items():
        out[gid] = source[:left]
        left -= len(out[gid])
    return out, sum(map(len, cells.values())) > limit


def fingerprint(code):
    """copydetect's fingerprint of Python code given as text."""
    from copydetect import CodeFingerprint

    return CodeFingerprint("code.py", K, WINDOW, language="python", fp=io.StringIO(code))


def boilerplate_hashes(release):
    """Fingerprints of the release's text of every solution cell, each on its own and all in order
    (a student who kept several stubs must not share the k-grams across their boundaries), normalised
    as the students' code is (`canonical`), or the two would not match."""
    given = [canonical(source)[0] for source in release.values()]
    hashes = fingerprint("\n".join(given)).hashes
    for source in given:
        hashes |= fingerprint(source).hashes
    return hashes


def common_hashes(fingerprints, fraction=COMMON_FRACTION, minimum=COMMON_MIN):
    """Hashes in more than `fraction` of the fingerprints and in at least `minimum` of them."""
    counts = {}
    for fp in fingerprints:
        for h in fp.hashes:
            counts[h] = counts.get(h, 0) + 1
    needed = max(minimum, int(fraction * len(fingerprints)) + 1)
    return {h for h, count in counts.items() if count >= needed}


def distinctive_fingerprints(codes, release, fraction=COMMON_FRACTION, minimum=COMMON_MIN):
    """{student: fingerprint} of each student with code of their own, without the release's
    boilerplate and the class's common fingerprints; students with under MIN_OVERLAP characters
    of code left are left out."""
    given = boilerplate_hashes(release)
    fingerprints = {s: without(fingerprint(code), given) for s, code in codes.items() if code.strip()}
    fingerprints = {s: fp for s, fp in fingerprints.items() if fp.hashes}
    common = common_hashes(fingerprints.values(), fraction, minimum)
    for fp in fingerprints.values():
        without(fp, common)
    return {s: fp for s, fp in fingerprints.items() if fp.token_coverage >= MIN_OVERLAP}


def without(fp, hashes):
    """Drop `hashes` (boilerplate) from a CodeFingerprint in place, every occurrence. Not copydetect's
    own `boilerplate=` argument: 0.5.0 finds the positions to drop with np.intersect1d(assume_unique=True)
    on hashes that repeat (a stub's k-grams do) and can drop the wrong ones; and this way each
    student's code is tokenized once, not again after the class-wide count."""
    from copydetect.utils import get_token_coverage

    dropped = fp.hashes & hashes
    if dropped:
        fp.hashes -= dropped
        for h in dropped:
            del fp.hash_idx[h]
        fp.token_coverage = get_token_coverage(fp.hash_idx, fp.k, len(fp.filtered_code))
    return fp


def candidate_pairs(fingerprints):
    """Pairs of students sharing at least one fingerprint, sorted (the only ones worth comparing)."""
    owners = {}
    for student, fp in fingerprints.items():
        for h in fp.hashes:
            owners.setdefault(h, []).append(student)
    pairs = set()
    for students in owners.values():
        pairs.update(combinations(sorted(students), 2))
    return sorted(pairs)


def score_pairs(fingerprints):
    """[Pair] of every pair sharing at least MIN_OVERLAP normalised characters, best first."""
    from copydetect import compare_files

    pairs = []
    for a, b in candidate_pairs(fingerprints):
        overlap, (share_a, share_b), (slices_a, slices_b) = compare_files(fingerprints[a], fingerprints[b])
        if overlap >= MIN_OVERLAP:
            pairs.append(Pair(a, b, float(max(share_a, share_b)), float(share_a), float(share_b),
                              np.asarray(slices_a), np.asarray(slices_b)))
    return sorted(pairs, key=lambda p: (-p.score, p.a, p.b))


def score_matrix(students, pairs, compared):
    """Symmetric len(students)^2 matrix of pair scores: 0 for pairs below MIN_OVERLAP, NaN on the
    diagonal and for students not `compared` (nothing, or too little, of their own)."""
    index = {s: i for i, s in enumerate(students)}
    matrix = np.zeros((len(students), len(students)))
    np.fill_diagonal(matrix, np.nan)
    for s in students:
        if s not in compared:
            matrix[index[s], :] = matrix[:, index[s]] = np.nan
    for p in pairs:
        matrix[index[p.a], index[p.b]] = matrix[index[p.b], index[p.a]] = p.score
    return matrix


def spans(slices, length):
    """[(start, end)] of copydetect's 2 x m slices, sorted, clipped to the text."""
    if len(slices) == 0 or len(slices[0]) == 0:
        return []
    return sorted((max(0, int(s)), min(length, int(e))) for s, e in zip(*slices))


def cell_ranges(code):
    """{grade_id: (start, end)} of each cell's normalised text in a Written (as recorded when it was
    built: a student's own `# --- x` line is only text)."""
    return {cell.gid: (cell.start, cell.end) for cell in getattr(code, "cells", ())}


def shared_cells(code, slices):
    """Grade ids of the cells of `code` that hold some of the shared `slices`, in order."""
    found = spans(slices, len(code))
    return [gid for gid, (start, end) in cell_ranges(code).items() if any(s < end and e > start for s, e in found)]


def shared_lines(code, cell, slices):
    """Lines (1-based) of the cell as the student wrote it that hold shared code: the shared
    characters of the normalised text, by line, taken back to the lines they came from."""
    text = code[cell.start:cell.end]
    starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]
    printed = set()
    for s, e in spans(slices, len(code)):
        s, e = max(s, cell.start) - cell.start, min(e, cell.end) - cell.start
        for line in range(bisect.bisect_right(starts, s), bisect.bisect_right(starts, max(s, e - 1)) + 1):
            if e > s and text[max(s, starts[line - 1]):e].split("\n")[0].strip():  # a non-blank part of it
                printed.add(line)
    if printed and not cell.lines:  # no line map (the printed program had another shape): the whole cell
        return set(range(1, cell.original.count("\n") + 2))
    return {n for line in printed if line in cell.lines for n in range(cell.lines[line][0], cell.lines[line][1] + 1)}


def highlighted(code, cell, slices):
    """The cell as the student wrote it, under its `# --- grade_id` line, as HTML-escaped text with the
    lines holding shared code in <mark>: every character the student wrote goes through html.escape,
    so no markup of theirs survives."""
    marked = shared_lines(code, cell, slices)
    out = [html.escape(f"# --- {cell.gid}")]
    for number, line in enumerate(cell.original.rstrip().split("\n"), 1):
        body = line.lstrip()
        if number in marked and body:
            out.append(f"{html.escape(line[:len(line) - len(body)])}<mark>{html.escape(body)}</mark>")
        else:
            out.append(html.escape(line))
    return "\n".join(out) + "\n\n"


def text_table(pairs, top):
    """The top pairs as a plain text table."""
    rows = [("rank", "student", "student", "score", "a in b", "b in a")]
    rows += [(str(i), p.a, p.b, f"{p.score:.2f}", f"{p.share_a:.2f}", f"{p.share_b:.2f}")
             for i, p in enumerate(pairs[:top], 1)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
