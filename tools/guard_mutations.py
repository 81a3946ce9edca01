"""Guard mutations: remove a guard or flip a check on purpose, and see that a test notices.

Each entry of GUARDS names one guard of the grader (a line that keeps student code contained, a
verdict honest or a secret secret), an edit that breaks it (`old` -> `new`, which must occur exactly
once in `path`, so the catalogue fails loudly when the code moves on without it) and the test(s)
that must then fail. The runner copies the working tree to a temporary folder, runs the tests once
unmutated (a test that already fails there proves nothing), then for each guard applies the edit to
the copy, runs only that guard's tests and puts the file back:

    killed    a test failed (or the run hung past --timeout): the guard has a test
    survived  every test passed with the guard broken: a missing test
    stale     `old` is not in the file exactly once: the catalogue needs updating

    python tools/guard_mutations.py [--list | --check] [--timeout S] [name ...]   (make guards: all)

The copy is imported through PYTHONPATH, ahead of the editable install, so every process a test
starts (nbgrader's subprocesses, the grading jobs) runs the mutated code, never the real tree's.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

KIT = Path(__file__).resolve().parent.parent


class Guard(NamedTuple):
    name: str
    path: str         # relative to the kit
    old: str          # exact text, once in the file
    new: str          # what it becomes: the guard removed or the check flipped
    tests: tuple      # pytest node ids, one of which must fail
    why: str          # what a student (or a bug) would get away with


GUARDS = [
    Guard("strip-hidden-tests-off", "autograder/grading/pipeline.py",
          "cell.source = notebook.split_hidden(cell.source, self.config).visible",
          "pass  # GUARD MUTATION",
          # (feedback strips hidden tests itself, so no feedback test sees this; the kernel's own
          # input history, printed by a student's cell into the autograded notebook, does)
          ("tests/hostile/test_hostile_class.py::test_hostile_student_gets_exactly_what_it_deserves[history_reader]",),
          "the student's kernel runs the hidden tests, and its code can read and print them"),
    Guard("reverify-keeps-kernel-outputs", "autograder/grading/pipeline.py",
          'cell.outputs = [_verdict_output(gid, record["cells"][gid])]',
          "pass  # GUARD MUTATION",
          ("tests/hostile/test_grading_paths.py::"
           "test_nbgrader_autograde_stores_only_verified_scores_and_flags_tampering",),
          "nbgrader scores the outputs of the student's own kernel, which its code can forge"),
    Guard("tamper-comparison-flipped", "autograder/grading/pipeline.py",
          'elif in_kernel == "passed" and not verdict.visible_passed',
          'elif in_kernel == "passed" and verdict.visible_passed',
          ("tests/hostile/test_grading_paths.py::"
           "test_nbgrader_autograde_stores_only_verified_scores_and_flags_tampering",),
          "a kernel fooled by patched assertions is not flagged; an honest hidden-test failure would be"),
    Guard("verifier-visible-verdict-is-the-whole-verdict", "autograder/judge/verify.py",
          "return Verdict(passed, message, visible_ok,",
          "return Verdict(passed, message, passed,",
          ("tests/instructors/test_pipeline.py::test_grades_json_has_per_cell_detail_and_status",),
          "a bug only the hidden tests catch (hard-coded answers) is reported as tampering"),
    Guard("seed-ignores-submission-content", "autograder/seeds.py",
          "hashlib.sha256(notebook_bytes).digest()])",
          'b""])',
          ("tests/hostile/test_grading_paths.py::test_each_submission_draws_its_own_hidden_inputs",
           "tests/hostile/test_grading_paths.py::test_inputs_learned_from_one_submission_are_useless_for_another",
           "tests/instructors/test_pipeline.py::test_a_changed_resubmission_draws_new_hidden_inputs"),
          "a student resubmits with a table of the hidden inputs recorded in the previous grading run"),
    Guard("watchdog-never-kills", "autograder/sandbox/cgroup.py",
          'f"({total >> 20} MiB resident)")\n                _kill_tree(tree)',
          'f"({total >> 20} MiB resident)")\n                pass  # GUARD MUTATION',
          ("tests/hostile/test_limits.py::test_aggregate_memory_fallback_watchdog",),
          "without cgroups, a sandbox's processes together take all the grader's memory"),
    Guard("collect-follows-links", "autograder/verbs/collect.py",
          "info = entry.stat(follow_symlinks=False)",
          "info = entry.stat(follow_symlinks=True)",
          ("tests/hostile/test_intake.py::test_linked_notebooks_and_folders_are_never_followed",),
          "a submission links to the instructor's files and collect copies them into the course"),
    Guard("collect-opens-through-links", "autograder/verbs/collect.py",
          "os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK",
          "os.O_RDONLY | os.O_NONBLOCK",
          ("tests/hostile/test_intake.py::"
           "test_a_file_swapped_for_a_fifo_or_a_link_after_the_check_is_refused_not_opened",),
          "a notebook swapped for a link after it was checked is read through the link"),
    Guard("output-cap-off", "autograder/grading/execute.py",
          "        if size <= left:",
          "        if True:  # GUARD MUTATION",
          ("tests/hostile/test_limits.py::test_output_flood_is_capped",),
          "a kernel printing without end fills the grader's memory and the autograded notebook"),
    Guard("feedback-sanitizer-off", "autograder/grading/feedback_page.py",
          "    return bleach.clean(html, tags=ALLOWED_TAGS,",
          "    return html or bleach.clean(html, tags=ALLOWED_TAGS,",
          ("tests/hostile/test_feedback_trust.py::test_student_markdown_is_sanitized",),
          "a student's Markdown puts script into the feedback page a TA opens"),
    Guard("feedback-leak-scan-blind", "autograder/verbs/feedback.py",
          "if any(wanted in form for form in forms) or _in_base64(line, compact):",
          "if False:  # GUARD MUTATION",
          ("tests/hostile/test_feedback_trust.py::test_a_page_that_shows_a_hidden_line_is_withheld",),
          "a feedback page that shows hidden-test lines is handed out"),
    Guard("failed-regrade-keeps-feedback", "autograder/grading/merge.py",
          "        shutil.rmtree(course.feedback(outcome.student), ignore_errors=True)\n        return",
          "        return",
          ("tests/hostile/test_feedback_trust.py::test_a_failed_regrade_removes_the_old_feedback",),
          "a student whose new submission could not be graded still has the old page, looking current"),
    Guard("failed-regrade-keeps-score", "autograder/grading/merge.py",
          "gb.remove_submission(course.assignment, outcome.student)",
          "pass  # GUARD MUTATION",
          ("tests/instructors/test_pipeline.py::test_a_failed_regrade_leaves_no_stale_score",),
          "the old score of a submission that could not be graded is exported as current"),
    Guard("jobs-deadline-kills-only-the-job", "autograder/grading/jobs.py",
          "                kill_tree(proc.pid)\n                proc.join()",
          "                proc.kill()\n                proc.join()",
          ("tests/hostile/test_budget.py::test_a_job_past_its_deadline_is_killed_with_its_whole_tree",),
          "a job past its deadline dies but the sandboxes it started (own sessions) run on"),
    Guard("every-job-fails", "autograder/grading/jobs.py",
          'outcome: Any = ("ok", fn(*args))',
          'outcome: Any = ("error", "GUARD MUTATION: no job succeeds")',
          ("tests/instructors/test_parallel.py::test_two_workers_give_the_grades_of_one",),
          "parallel grading fails every student the same way with 1 and 2 workers"),
    Guard("sandbox-nonroot-shares-namespaces", "autograder/sandbox/bwrap.py",
          'argv += ["--unshare-all", "--unshare-user"]',
          'argv += ["--unshare-user"]',
          ("tests/hostile/test_sandbox.py::test_unprivileged_command_line_makes_every_namespace",
           "tests/hostile/test_sandbox.py::test_unprivileged_sandbox_isolates"),
          "a grader run by a normal user gives student code the host's network, pids and ipc"),
    Guard("sandbox-root-shares-network", "autograder/sandbox/bwrap.py",
          '"--unshare-pid", "--unshare-net",',
          '"--unshare-pid",',
          ("tests/hostile/test_sandbox.py::test_no_network",),
          "student code reaches the network and the grader's local services"),
    Guard("sandbox-no-process-limit", "autograder/sandbox/bwrap.py",
          'limits.append("--nproc=" + _limit(resource.RLIMIT_NPROC, int(max_processes)))',
          "pass  # GUARD MUTATION",
          # (test_fork_limit_in_kernel passes without it: the cgroup's pids.max stops the forks too)
          ("tests/hostile/test_sandbox.py::test_limits_are_applied",),
          "a fork bomb in a kernel is bounded by nothing but the cgroup (absent on some machines)"),
    Guard("special-files-left-in-autograded", "autograder/grading/execute.py",
          "                os.unlink(path)\n                removed.append",
          "                removed.append",
          # (only reachable without the sandbox: a sandboxed kernel's folder is a private tmpfs, so the
          # hostile class's named pipe never reaches the host and its test passes either way)
          ("tests/hostile/test_sandbox.py::test_special_files_left_by_unsandboxed_code_are_removed",),
          "a FIFO or symlink the kernel left behind is followed (or blocks) outside the sandbox"),
    Guard("hidden-loss-check-vacuous", "assignment.ipynb",
          "np.float64(_ref_net_loss(X, y, P, c))",
          "np.float64(loss)",
          ("tests/grading/test_mutations.py::test_every_cells_hidden_checks_alone_catch_a_wrong_value",),
          "test_loss_value's hidden checks compare the loss with itself and pass any value"),
    Guard("hostile-listener-records-nothing", "tests/hostile/hostile_submissions.py",
          "self.connections.append((sock.family.name, addr))",
          "pass  # GUARD MUTATION",
          ("tests/hostile/test_hostile_class.py::test_no_connection_reached_the_graders_sockets",),
          "the hostile class's no-network check passes whatever the sandbox lets through"),
]


def copy_tree(dest):
    """The working tree as it is (tracked and untracked files, not ignored ones) into dest."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=KIT, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, listing.split("\0")):
        src = KIT / rel
        if src.is_file() or src.is_symlink():  # a tracked file deleted in the tree is left out
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)


def run_tests(tree, nodes, timeout):
    """'passed', 'failed' or 'timeout': pytest on `nodes` in `tree`, importing the tree's code."""
    env = {**os.environ, "PYTHONPATH": str(tree), "MNIST_OFFLINE": "1", "MPLBACKEND": "Agg",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *nodes]
    # a session of its own, so that a hung run is stopped with every kernel and job it started
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what the tests left running, or all of a hung run
        proc.wait()
    if proc.returncode == 0:
        return "passed", stdout
    if proc.returncode == 5 or "ERROR: not found" in stdout + stderr:
        return "no tests", stdout + stderr  # a node id that does not exist proves nothing
    return "failed", stdout


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:100] if lines else ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these guards (default: all)")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--check", action="store_true",
                        help="only check that every mutation still applies (each `old` once in its file)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run (default 900)")
    args = parser.parse_args(argv)
    # `kill` (SIGTERM) unwinds like Ctrl-C: the running test's session is killed, the copy removed
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    unknown = set(args.names) - {g.name for g in GUARDS}
    if unknown:
        parser.error(f"no such guard: {', '.join(sorted(unknown))}")
    guards = [g for g in GUARDS if not args.names or g.name in args.names]
    if args.list:
        for g in guards:
            print(f"{g.name}\n  {g.path}: {g.why}\n  caught by: {', '.join(g.tests)}")
        return 0
    if args.check:
        stale = [g.name for g in guards if (KIT / g.path).read_text().count(g.old) != 1]
        print(f"stale: {', '.join(stale)}" if stale else f"all {len(guards)} mutations apply")
        return 1 if stale else 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="guard-mutations-") as tmp:
        tree = Path(tmp) / "kit"
        copy_tree(tree)
        nodes = sorted({node for g in guards for node in g.tests})
        print(f"baseline: {len(nodes)} tests, unmutated, in {tree}", flush=True)
        baseline = {}
        # "killed" below only means something for a test that passes here; one run per test file
        # (its module fixtures built once), so a failure marks every node of that file unproven
        for file in sorted({node.split("::")[0] for node in nodes}):
            group = [node for node in nodes if node.split("::")[0] == file]
            result, out = run_tests(tree, group, args.timeout)
            baseline.update(dict.fromkeys(group, result))
            print(f"  {result:8s} {file} ({len(group)} tests)" + ("" if result == "passed" else f": {last_line(out)}"),
                  flush=True)
            for line in [line for line in out.splitlines() if line.startswith("E ")][:5]:  # why, in short
                print(f"    {line[:200]}", flush=True)
        for g in guards:
            target = tree / g.path
            original = target.read_text()
            start = time.monotonic()
            if original.count(g.old) != 1:
                rows.append((g, "stale", f"`old` found {original.count(g.old)} times in {g.path}"))
            elif any(baseline[node] != "passed" for node in g.tests):
                rows.append((g, "unproven", "a test of it does not pass unmutated"))
            else:
                target.write_text(original.replace(g.old, g.new))
                try:
                    result, out = run_tests(tree, list(g.tests), args.timeout)
                finally:
                    target.write_text(original)
                verdict = {"failed": "killed", "timeout": "killed", "passed": "survived"}.get(result, "unproven")
                detail = f"{result} in {time.monotonic() - start:.0f} s" + (f": {last_line(out)}" if out else "")
                rows.append((g, verdict, detail))
            print(f"{rows[-1][1]:9s} {g.name}  ({rows[-1][2]})", flush=True)

    print("\n| guard | broken in | verdict | test that must catch it |\n|---|---|---|---|")
    for g, verdict, _ in rows:
        print(f"| {g.name} | {g.path} | {verdict} | {'<br>'.join(g.tests)} |")
    bad = [g.name for g, verdict, _ in rows if verdict != "killed"]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} guard mutations killed" +
          (f"; not killed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
