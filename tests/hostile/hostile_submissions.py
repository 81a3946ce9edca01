"""Helpers of test_hostile_class.py: turn the corpus's edits into notebooks, listen for connections,
fingerprint files, and list what a student can read back after grading.

An edit changes the reference submission (variant "perfect") in one place:
  code(gid, before, after, replace)  the solution cell `gid`: reference code with lines around it / text replaced
  added(gid, text)                   a new code cell (no nbgrader role) right after cell `gid`
  locked(gid, text, after)           the source of locked cell `gid` replaced by `text` / `after` appended
  deleted(gid)                       cell `gid` removed
  variant(name)                      a submission of autograder/variants.py instead of the reference
Texts may name $COURSE, $KIT, $SITE, $PORT, $SOCK and $TOKEN: filled in when the class is written.
"""
import hashlib
import socket
import string
import threading
from pathlib import Path
from typing import NamedTuple

import nbformat

from autograder.testcells import grade_id, reference_solutions
from autograder.variants import VARIANTS, make_submission

SQLITE_MAGIC = b"SQLite format 3\x00"


class Edit(NamedTuple):
    kind: str
    target: str
    text: str = ""
    before: str = ""
    after: str = ""
    replace: tuple = ()


def code(gid, before="", after="", replace=()):
    return Edit("code", gid, before=before, after=after, replace=tuple(replace))


def added(gid, text):
    return Edit("added", gid, text=text)


def locked(gid, text=None, after=""):
    """Replace a locked cell's source with `text`, or append `after` to it."""
    return Edit("locked", gid, text=text, after=after)


def deleted(gid):
    return Edit("deleted", gid)


def variant(name):
    return Edit("variant", name)


def build_notebook(release_nb, source_nb, edits, values):
    """The reference submission with `edits` applied ($NAMES in their texts filled from `values`)."""
    fill = lambda text: string.Template(text).safe_substitute(values)  # noqa: E731
    names = [e.target for e in edits if e.kind == "variant"]
    nb = make_submission(release_nb, source_nb, VARIANTS[names[0] if names else "perfect"])
    reference = reference_solutions(source_nb)
    for edit in edits:
        if edit.kind == "variant":
            continue
        index = next((i for i, c in enumerate(nb.cells) if grade_id(c) == edit.target), None)
        assert index is not None, f"no cell {edit.target!r} in the release"
        cell = nb.cells[index]
        if edit.kind == "code":
            src = reference[edit.target]
            for old, new in edit.replace:
                assert src.count(old) == 1, (edit.target, old, "must occur exactly once in the reference")
                src = src.replace(old, fill(new))
            cell.source = "\n".join(part for part in (fill(edit.before), src, fill(edit.after)) if part)
        elif edit.kind == "added":
            nb.cells.insert(index + 1, nbformat.v4.new_code_cell(fill(edit.text)))
        elif edit.kind == "locked":
            assert cell.metadata["nbgrader"].get("locked"), edit.target
            cell.source = fill(edit.text) if edit.text is not None else cell.source + "\n" + fill(edit.after)
        elif edit.kind == "deleted":
            del nb.cells[index]
        else:
            raise ValueError(edit.kind)
    return nb


class Listener:
    """A TCP port on 127.0.0.1 and an abstract unix socket; records every connection made to them."""

    def __init__(self, token):
        self.connections = []
        self._stop = threading.Event()
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.name = f"hostile-class-{token}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.name)
        self._threads = [threading.Thread(target=self._serve, args=(s,), daemon=True) for s in (self.tcp, self.unix)]
        for sock, thread in zip((self.tcp, self.unix), self._threads):
            sock.listen(16)
            sock.settimeout(0.2)
            thread.start()

    def _serve(self, sock):
        while not self._stop.is_set():
            try:
                conn, addr = sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections.append((sock.family.name, addr))
            conn.close()

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.tcp.close()
        self.unix.close()
        return list(self.connections)


def digests(folder):
    """{sha256: path} of every file under folder."""
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in Path(folder).rglob("*") if p.is_file()}


def fingerprint(*roots):
    """{path: sha256} of every file under the given files/folders (a missing root is recorded as such)."""
    prints = {}
    for root in map(Path, roots):
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
        else:
            prints[str(root)] = "missing"
            continue
        for path in files:
            prints[str(path)] = ("symlink -> " + str(path.readlink())) if path.is_symlink() \
                else hashlib.sha256(path.read_bytes()).hexdigest()
    return prints


def modes(*roots):
    """{path: permission bits} of the given files/folders and everything under them."""
    found = {}
    for root in map(Path, roots):
        for path in [root, *(sorted(root.rglob("*")) if root.is_dir() else [])]:
            if path.exists():
                found[str(path)] = oct(path.stat().st_mode & 0o7777)
    return found


def student_readable(folder, handed_out, notebook="assignment.ipynb"):
    """[(where, text)] of what grading left in a student's autograded folder that the student could
    get back (feedback copies the folder's files): every file except those identical to what the
    student was handed (`handed_out`: the source folder's helpers.py, data/), and of the graded
    notebook only the outputs the student's own code could have written -- not the tracebacks of
    failing test cells, which quote the hidden tests by design (feedback redacts them)."""
    found = []
    folder, handed_out = Path(folder), Path(handed_out)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        where = str(path.relative_to(folder))
        given = handed_out / where
        if path.name != notebook and given.is_file() and given.read_bytes() == path.read_bytes():
            continue
        if path.name != notebook or path.parent != folder:
            found.append((where, path.read_bytes().decode("latin-1")))
            continue
        nb = nbformat.read(str(path), as_version=4)
        for index, cell in enumerate(nb.cells):
            is_test = bool(cell.metadata.get("nbgrader", {}).get("grade")) and cell.cell_type == "code" \
                and not cell.metadata.get("nbgrader", {}).get("solution")
            for output in cell.get("outputs", []):
                if output.output_type == "error" and is_test:
                    continue
                found.append((f"{where} cell {index} ({grade_id(cell) or 'added'}) {output.output_type}",
                              _output_text(output)))
    return found


def _output_text(output):
    if output.output_type == "stream":
        return output.get("text", "")
    if output.output_type == "error":
        return "\n".join([output.get("ename", ""), output.get("evalue", ""), *output.get("traceback", [])])
    return "\n".join(str(v) for v in output.get("data", {}).values())


def cell_output(nb_path, gid=None, index=None):
    """All text a cell of a graded notebook printed (streams, results and errors)."""
    nb = nbformat.read(str(nb_path), as_version=4)
    cells = [c for i, c in enumerate(nb.cells) if (gid is not None and grade_id(c) == gid) or i == index]
    return "\n".join(_output_text(o) for c in cells for o in c.get("outputs", []))
