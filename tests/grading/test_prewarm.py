"""The forkserver's prewarm (autograder/grading/prewarm.py) must only warm caches: notebooks are
validated as strictly as before, nothing stays open for the forked jobs to inherit, and the jobs'
forkserver really loads it."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, sys
fds_before = sorted(os.listdir("/proc/self/fd"))
import autograder.grading.prewarm
fds_after = sorted(os.listdir("/proc/self/fd"))
import nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nbformat.validate(nb)
broken = nbformat.from_dict(json.loads(json.dumps(nb)))
broken.cells[0]["cell_type"] = "not-a-cell-type"
try:
    nbformat.validate(broken)
    rejected = False
except nbformat.ValidationError:
    rejected = True
print(json.dumps({"fds_before": fds_before, "fds_after": fds_after, "rejected": rejected,
                  "rfc": repr(sys.modules.get("rfc3987_syntax", "absent")),
                  "nbgrader_mapped": "nbgrader.api" in sys.modules, "numpy": "numpy" in sys.modules}))
"""


def _probe():
    done = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "assignment.ipynb")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_prewarm_keeps_validation_and_leaves_nothing_open():
    seen = _probe()
    assert seen["rejected"], "a notebook with a bad cell type must still fail nbformat validation"
    assert seen["fds_after"] == seen["fds_before"], "prewarm left a file or connection open for every job"
    assert seen["rfc"] == "None"  # the slow optional import is blocked, not merely not yet imported
    assert seen["nbgrader_mapped"] and seen["numpy"]


def test_jobs_forkserver_preloads_prewarm_before_the_job_module():
    from multiprocessing import forkserver

    from autograder.grading import jobs

    forkserver._forkserver._stop()  # noqa: SLF001 - a fresh forkserver, so that its preload list is set now
    try:
        jobs.start_forkserver("autograder.grading.job")
        preload = forkserver._forkserver._preload_modules  # noqa: SLF001
        assert preload.index("autograder.grading.prewarm") < preload.index("autograder.grading.job")
    finally:
        forkserver._forkserver._stop()  # noqa: SLF001
