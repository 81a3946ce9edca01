"""What the grader knows about a notebook's cells: which are tests, and which lines are hidden.

Hidden-test delimiters are nbgrader's own, read from the configured `ClearHiddenTests`, so a
course that changes them in nbgrader_config.py is split the same way everywhere.
"""
from typing import NamedTuple

import nbformat
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests


class TestCell(NamedTuple):
    """An autograded test cell of the source notebook."""

    __test__ = False  # a name pytest would otherwise collect

    grade_id: str
    points: float
    source: str


def read_notebook(path):
    return nbformat.read(str(path), as_version=4)


def is_test_cell(cell):
    """An autograded test: a grade cell with code that students do not write."""
    return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)


def test_cells(nb):
    """[TestCell] of the notebook, in notebook order."""
    return [TestCell(cell.metadata["nbgrader"]["grade_id"], float(cell.metadata["nbgrader"]["points"]),
                     cell.source) for cell in nb.cells if is_test_cell(cell)]


test_cells.__test__ = False


def delimiters(config=None):
    """(begin, end) of a hidden-test block, as nbgrader's ClearHiddenTests is configured."""
    clear = ClearHiddenTests(config=config) if config is not None else ClearHiddenTests()
    return clear.begin_test_delimeter, clear.end_test_delimeter


class Parts(NamedTuple):
    """A test cell's source in the order the grader runs it."""

    preamble: str  # hidden blocks above the first visible line: definitions the hidden tests share
    visible: str   # what the student sees and their kernel runs
    hidden: str    # the other hidden blocks, in order


def split_hidden(source, config=None):
    """The Parts of a test cell. The grader runs the preamble, the visible part, then the hidden
    part, all in one namespace: hidden blocks may use what the visible part defined, never the
    reverse. Raises ValueError on a block that is nested or never closed."""
    begin, end = delimiters(config)
    preamble, visible, hidden, inside = [], [], [], False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise ValueError("a hidden-test block is nested in another")
            inside = True
        elif end in line:
            inside = False
        elif inside:
            (hidden if any(v.strip() for v in visible) else preamble).append(line)
        else:
            visible.append(line)
    if inside:
        raise ValueError("a hidden-test block is never closed")
    return Parts("\n".join(preamble), "\n".join(visible), "\n".join(hidden))


def hidden_lines(nb, config=None, min_length=12):
    """Every distinctive line inside a hidden-test block of the notebook (for leak scans); short
    lines ("else:", "break") prove nothing."""
    lines = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            parts = split_hidden(cell.source, config)
            lines.update(line.strip() for line in (parts.preamble + "\n" + parts.hidden).splitlines()
                         if len(line.strip()) >= min_length)
    return lines
