"""The whole-submission budget is enforced by the parent, by the clock: a grading job that outruns
it is killed with every process it started, and the batch goes on."""
import os
import subprocess
import sys
import time

import psutil

from autograder.grading import jobs


def _sleeper(seconds, pid_file):
    """A job that starts a grandchild in a session of its own (as sandboxes do), then hangs."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    with open(pid_file, "w") as handle:
        handle.write(str(child.pid))
    time.sleep(seconds)
    return f"slept {seconds}"


def test_a_job_past_its_deadline_is_killed_with_its_whole_tree(tmp_path):
    work = [jobs.Job("slow", (600, str(tmp_path / "slow.pid"))), jobs.Job("quick", (0, str(tmp_path / "quick.pid")))]
    start = time.monotonic()
    results = dict((job.key, result) for job, result in jobs.run(_sleeper, work, workers=2, seconds=8))
    assert time.monotonic() - start < 60  # not 600
    assert results["quick"] == "slept 0"
    assert results["slow"].startswith("timed out: the submission used up its time budget (8 s in all)")
    grandchild = int((tmp_path / "slow.pid").read_text())
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    os.kill(int((tmp_path / "quick.pid").read_text()), 9)  # the finished job's own leftover


def _crash(kind):
    if kind == "raise":
        raise ValueError("a bug in the grader")
    os._exit(3)


def test_a_crashed_or_dead_job_costs_only_itself(tmp_path):
    work = [jobs.Job("raise", ("raise",)), jobs.Job("exit", ("exit",))]
    results = dict((job.key, result) for job, result in jobs.run(_crash, work, workers=1, seconds=60))
    assert results == {"raise": "grader crashed: ValueError: a bug in the grader",
                       "exit": "the grading process died (exit code 3)"}
