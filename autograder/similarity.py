"""Which students' code is alike: the code each student wrote in the solution cells, compared pair by
pair with copydetect's fingerprints (pygments tokens, every identifier and string replaced by one
letter, whitespace and comments dropped, so renaming variables and reformatting change nothing).

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


@functools.lru_cache(maxsize=256)  # the release's cells are normalised once, not once per student
def normalised(source):
    """Python code as copydetect compares it: tokens only, every name and string one letter."""
    from copydetect.utils import filter_code

    return filter_code(source, "code.py", "python")[0]


def written_code(submitted, release):
    """The student's own code: their version of each of the release's solution cells that they
    changed (a new comment or spacing is no change), in release order, each under a `# --- grade_id`
    line (a comment: it makes no fingerprint). "" when they changed none."""
    parts = [f"# --- {gid}\n{submitted[gid].rstrip()}\n" for gid, given in release.items()
             if gid in submitted and normalised(submitted[gid]) != normalised(given)]
    return "\n".join(parts)


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
    (a student who kept several stubs must not share the k-grams across their boundaries)."""
    hashes = fingerprint("\n".join(release.values())).hashes
    for source in release.values():
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


def highlighted(code, slices, start=0, end=None):
    """code[start:end] as HTML-escaped text with the shared `slices` in <mark>: every character
    the student wrote goes through html.escape, so no markup of theirs survives."""
    end = len(code) if end is None else end
    out, at = [], start
    for s, e in spans(slices, len(code)):
        s, e = max(s, at), min(e, end)
        if e <= s:
            continue
        out.append(html.escape(code[at:s]))
        out.append(f"<mark>{html.escape(code[s:e])}</mark>")
        at = e
    out.append(html.escape(code[at:end]))
    return "".join(out)


def cell_ranges(code):
    """{grade_id: (start, end)} of each cell's text in written_code's output (by its headers)."""
    heads = [(m.start(), m.group(1)) for m in re.finditer(r"^# --- (\S+)\n", code, flags=re.M)]
    return {gid: (start, heads[i + 1][0] if i + 1 < len(heads) else len(code))
            for i, (start, gid) in enumerate(heads)}


def shared_cells(code, slices):
    """Grade ids of the cells of `code` that hold some of the shared `slices`, in order."""
    found = spans(slices, len(code))
    return [gid for gid, (start, end) in cell_ranges(code).items() if any(s < end and e > start for s, e in found)]


def text_table(pairs, top):
    """The top pairs as a plain text table."""
    rows = [("rank", "student", "student", "score", "a in b", "b in a")]
    rows += [(str(i), p.a, p.b, f"{p.score:.2f}", f"{p.share_a:.2f}", f"{p.share_b:.2f}")
             for i, p in enumerate(pairs[:top], 1)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
