"""A student's session in a real browser: JupyterLab, the released notebook with a correct solution,
Run All, the rendered maths and nbgrader's Validate button — what a student sees, not what nbclient sees.

Needs Debian's chromium (/usr/bin/chromium) and Playwright for Python; `make test` installs both when
run as root. Playwright's own browser download is not used (it cannot work without the internet).
Screenshots go to tests/artifacts/browser/ (git-ignored) for a human to look at.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from support import stop_server

from autograder.testcells import grade_id
from autograder.variants import VARIANTS, make_submission

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (requirements.txt; `make test` installs it)")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: Debian's chromium drives this test (`make browser-deps` as root installs it)")

# Headless chromium as root on a machine without a network: no setuid sandbox as root, no GPU, and none
# of the background traffic (updates, sync, first-run pages) that would only wait on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions"]
SERVER_START = 60     # s: JupyterLab starting on two busy cores
LAB_LOAD = 60         # s: the JupyterLab bundle loading and the kernel starting
RUN_ALL = 120         # s: the reference notebook runs in ~5-15 s; generous for a loaded machine
VALIDATE = 180        # s: Validate saves, then nbgrader runs the whole notebook again in a new kernel
SUCCESS = "Success! Your notebook passes all the tests."

# The notebook panel's kernel indicator and the input prompts: "[*]:" while queued or running,
# "[ ]:" for a cell that never ran (Run All stops at the first error and clears the rest).
JS_RUN_FINISHED = """() => {
    const status = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
    return status && status.dataset.status === 'idle' && !prompts.some(p => p.textContent.includes('*'));
}"""

# Per cell of the notebook (in order, as JupyterLab lays them out): how many formulas MathJax typeset,
# the errors it reported, and the text left outside formulas, code and outputs.
# Only the visible CommonHTML output is read (mjx-*), not the hidden MathML copy for screen readers.
#  - mjx-merror: TeX that MathJax could not parse, with its message in data-mjx-error;
#  - a red mjx-mtext: an undefined macro, which MathJax's `noundefined` package shows in red, no merror;
#  - "Math input error": what MathJax shows when a whole formula fails to process;
#  - a "$" left in the prose: a formula that was never typeset (unbalanced delimiters, a stray dollar).
JS_MATH = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')].map(cell => {
    const rendered = cell.querySelector('.jp-RenderedMarkdown');
    if (!rendered) return null;
    const prose = rendered.cloneNode(true);
    prose.querySelectorAll('mjx-container, code, pre').forEach(e => e.remove());
    const source = e => (e.closest('mjx-container').querySelector('mjx-assistive-mml') || e).textContent;
    return {
        formulas: rendered.querySelectorAll('mjx-container').length,
        errors: [...rendered.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error')),
        undefined_macros: [...rendered.querySelectorAll('mjx-mtext')]
                              .filter(e => e.style.color === 'red').map(source),
        input_error: rendered.textContent.includes('Math input error'),
        stray_dollars: prose.textContent.includes('$'),
    };
})"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answered(release_nb, source_nb):
    """The release notebook as a student hands in a correct one: the reference code in every solution
    cell (the "perfect" variant) and the model answers in the written ones — nbgrader's Validate refuses
    a notebook whose answer cells still say "YOUR ANSWER HERE"."""
    nb = make_submission(release_nb, source_nb, VARIANTS["perfect"])
    model = {grade_id(c): c.source for c in source_nb.cells
             if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "\n".join(line for line in model[grade_id(cell)].splitlines()
                                    if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    return nb


@pytest.fixture
def student_folder(released_course, release_nb, source_nb, tmp_path):
    """A copy of what students get (release/backprop/), with a correct, answered notebook."""
    folder = tmp_path / "student"
    shutil.copytree(released_course.release, folder)
    nbformat.write(_answered(release_nb, source_nb), folder / "assignment.ipynb")
    return folder


@pytest.fixture
def lab(student_folder, tmp_path):
    """JupyterLab serving the student's folder on 127.0.0.1, token-less, with a private Jupyter
    configuration (no settings, workspaces or open tabs from this machine's user) and the venv's
    nbgrader extensions (the Validate button and its server endpoint). Yields the base URL."""
    jupyter = tmp_path / "jupyter"
    for sub in ("config/labconfig", "data", "runtime", "ipython"):
        (jupyter / sub).mkdir(parents=True)
    # JupyterLab's news plugin would ask to fetch announcements from the internet: not in a test.
    (jupyter / "config/labconfig/page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    env = dict(os.environ, MNIST_OFFLINE="1",  # the bundled sample, no download attempt
               JUPYTER_CONFIG_DIR=str(jupyter / "config"), JUPYTER_DATA_DIR=str(jupyter / "data"),
               JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"), IPYTHONDIR=str(jupyter / "ipython"))
    # conftest sets MPLBACKEND=Agg for the suite; a student's kernel draws inline, so the figures show.
    env.pop("MPLBACKEND", None)
    port = _free_port()
    log = tmp_path / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",  # fail, not serve elsewhere
           "--IdentityProvider.token=", "--LabApp.news_url=None"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # CI runs as root; Jupyter refuses root otherwise
    # cwd is the student's folder, as when a student types `jupyter lab` there: nbgrader's Validate
    # reads its configuration from the server's working directory, and there is none there.
    with open(log, "wb") as out:
        server = subprocess.Popen(cmd, cwd=student_folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/api/status", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on {base} in {SERVER_START} s:\n{_tail(log)}")
                time.sleep(0.5)
        yield base
    finally:
        stop_server(server)


def _wait(page, js, seconds, what):
    """Wait until the page function `js` returns true; a timeout becomes a sentence, not a stack."""
    try:
        page.wait_for_function(js, timeout=seconds * 1000)
    except sync_api.TimeoutError:
        pytest.fail(f"{what} within {seconds} s")


def _tail(log, lines=40):
    return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])


def test_a_correct_notebook_runs_renders_and_validates_in_jupyterlab(lab, student_folder):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()  # screenshots of an earlier run would pass for this run's
    notebook_file = student_folder / "assignment.ipynb"
    cells = nbformat.read(notebook_file, as_version=4).cells
    code_cells = sum(c.cell_type == "code" for c in cells)
    math_cells = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and "$" in c.source]
    console = []

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))

            # ?reset: start from an empty workspace, the notebook as the only tab.
            page.goto(f"{lab}/lab/tree/assignment.ipynb?reset")
            panel = page.locator(".jp-NotebookPanel")
            _wait(page, """() => !!document.querySelector(
                      '.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]')""",
                  LAB_LOAD, "JupyterLab did not show the notebook with an idle kernel")
            # Every cell in the DOM, in order: the indices below are the notebook's cell indices.
            sync_api.expect(panel.locator(".jp-Notebook .jp-Cell")).to_have_count(len(cells), timeout=30_000)

            # Run > Run All Cells, as a student would; the kernel is fresh, so prompts count from 1.
            page.locator(".lm-MenuBar").get_by_text("Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            _wait(page, JS_RUN_FINISHED, RUN_ALL, "Run All did not finish (a cell still [*] or the kernel busy)")
            last_figure = panel.locator(".jp-OutputArea-output[data-mime-type='image/png']").last
            if last_figure.count():
                last_figure.scroll_into_view_if_needed()  # the training curves: the run's outcome
            page.screenshot(path=ARTIFACTS / "1-after-run-all.png")

            # Save (Ctrl+S) and read what the browser saved: the outputs the student sees, with types.
            page.keyboard.press("Control+s")
            _wait(page, "() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')", 30, "Ctrl+S did not save")
            saved = nbformat.read(notebook_file, as_version=4)
            errors = [f"cell {i} ({grade_id(c) or 'no grade_id'}): {o.ename}: {o.evalue}"
                      for i, c in enumerate(saved.cells) if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "error"]
            assert errors == [], "error outputs after Run All:\n" + "\n".join(errors)
            counts = [c.execution_count for c in saved.cells if c.cell_type == "code"]
            assert counts == list(range(1, code_cells + 1)), f"not every cell ran, in order: {counts}"

            # MathJax typesets after the markdown renders: wait until each cell with maths has formulas
            # (or give up waiting, and let the assertions below say which cells have none).
            try:
                page.wait_for_function(f"""() => {{
                    const math = ({JS_MATH})();
                    return {math_cells}.every(i => math[i] && math[i].formulas > 0);
                }}""", timeout=30_000)
            except sync_api.TimeoutError:
                pass
            math = page.evaluate(JS_MATH)
            typeset = [i for i, m in enumerate(math) if m and m["formulas"]]
            assert typeset == math_cells, f"cells with maths (by index) {math_cells}, typeset: {typeset}"
            problems = {i: m for i, m in enumerate(math) if m and (m["errors"] or m["undefined_macros"]
                                                                  or m["input_error"] or m["stray_dollars"])}
            assert problems == {}, f"MathJax problems (cell index: what): {problems}"
            # The worked derivation: the cell with the most formulas.
            derivation = max(math_cells, key=lambda i: math[i]["formulas"])
            cell = panel.locator(".jp-Notebook .jp-Cell").nth(derivation)
            cell.scroll_into_view_if_needed()
            cell.screenshot(path=ARTIFACTS / "2-derivation.png")

            # The toolbar's Validate: it saves, then nbgrader validates the file on the server.
            panel.locator(".jp-NotebookPanel-toolbar .validate-button").click()
            _wait(page, "() => !!document.querySelector('.jp-Dialog')", VALIDATE, "Validate showed no dialog")
            dialog = page.locator(".jp-Dialog")
            page.screenshot(path=ARTIFACTS / "3-validate.png")
            title = dialog.locator(".jp-Dialog-header").inner_text().strip()
            body = dialog.locator(".jp-Dialog-body").inner_text().strip()
            assert (title, body) == ("Validation Results", SUCCESS), f"Validate said: {title}\n{body}"
        finally:
            (ARTIFACTS / "console-errors.txt").write_text("\n".join(console) + "\n" if console else "")
            browser.close()
