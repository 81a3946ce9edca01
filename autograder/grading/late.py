"""The course's late policy: an nbgrader late-submission plugin, configured in nbgrader_config.py.

nbgrader's AssignLatePenalties (the last autograde step) calls `late_submission_penalty(student,
score, seconds_late)` when a submission's timestamp is past the assignment's due date, and stores
what it returns (clipped to [0, score]) as the notebook's late_submission_penalty. This plugin
subtracts the student's extension (course/deadlines.json) from the lateness first, then applies a
penalty per hour and/or per day late, a cap, and a hard cut-off after which the score is 0.

    c.AssignLatePenalties.plugin_class = "autograder.grading.late.LatePolicy"
    c.LatePolicy.per_day = 0.1          # 10% of the maximum score per day late
    c.LatePolicy.cap = 0.5              # never more than half the maximum score
    c.LatePolicy.cutoff_hours = 168     # more than a week late: 0 points
"""
import math
from dataclasses import dataclass
from typing import Optional

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Enum, Float

from autograder.term import deadlines


@dataclass(frozen=True)
class Policy:
    """The late policy's numbers, in the unit `unit` ("fraction" of the maximum score, or "points")."""

    per_hour: float = 0.0
    per_day: float = 0.0
    unit: str = "fraction"
    partial: str = "started"   # "started": a started hour or day counts whole; "prorated": exact
    cap: Optional[float] = None
    cutoff_hours: Optional[float] = None
    grace_minutes: float = 0.0


def periods(seconds_late, period_seconds, partial):
    """How many hours (or days) late, as the policy counts them."""
    exact = seconds_late / period_seconds
    return math.ceil(exact - 1e-9) if partial == "started" else exact


def penalty_points(policy, seconds_late, score, max_score):
    """Points to take off a submission `seconds_late` late (after any extension) that scored
    `score` of `max_score`. 0 when on time or within the grace; the whole score past the cut-off;
    never more than the score."""
    if seconds_late <= policy.grace_minutes * 60.0:
        return 0.0
    if policy.cutoff_hours is not None and seconds_late > policy.cutoff_hours * 3600.0:
        return float(score)
    scale = max_score if policy.unit == "fraction" else 1.0
    points = scale * (policy.per_hour * periods(seconds_late, 3600.0, policy.partial)
                      + policy.per_day * periods(seconds_late, 86400.0, policy.partial))
    if policy.cap is not None:
        points = min(points, scale * policy.cap)
    return round(max(0.0, min(points, float(score))), 6)


def describe(policy):
    """One line for a TA: what lateness costs, e.g. "10% of the maximum score per started day,
    at most 50% of the maximum score in all; 0 points when more than 168 h late"."""
    fraction = policy.unit == "fraction"
    amount = (lambda x: f"{100 * x:g}% of the maximum score") if fraction else (lambda x: f"{x:g} points")
    started = "started " if policy.partial == "started" else ""
    rates = [f"{amount(rate)} per {started}{period}"
             for rate, period in ((policy.per_hour, "hour"), (policy.per_day, "day")) if rate]
    parts = [" + ".join(rates) if rates else "no penalty per hour or day"]
    if policy.cap is not None and rates:
        parts[0] += f", at most {amount(policy.cap)} in all"
    if policy.grace_minutes:
        parts.append(f"{policy.grace_minutes:g} minutes' grace")
    if policy.cutoff_hours is not None:
        parts.append(f"0 points when more than {policy.cutoff_hours:g} h late")
    return "; ".join(parts)


class LatePolicy(LateSubmissionPlugin):
    """Late penalty per hour and/or per day, with a cap and a hard cut-off, after the student's
    extension (course/deadlines.json, set with `python -m autograder deadline --extend`)."""

    per_hour = Float(0.0, min=0.0, help="penalty per hour late, in `unit`").tag(config=True)
    per_day = Float(0.0, min=0.0, help="penalty per day (24 h) late, in `unit`").tag(config=True)
    unit = Enum(("fraction", "points"), default_value="fraction",
                help="'fraction': per_hour, per_day and cap are fractions of the notebook's maximum score "
                     "(0.1 = 10%); 'points': they are points").tag(config=True)
    partial = Enum(("started", "prorated"), default_value="started",
                   help="'started': a started hour or day counts as a whole one; 'prorated': 25 h late "
                        "is 25/24 days").tag(config=True)
    cap = Float(None, allow_none=True, min=0.0,
                help="the most lateness can cost before the cut-off, in `unit` (None: no cap)").tag(config=True)
    cutoff_hours = Float(None, allow_none=True, min=0.0,
                         help="more than this many hours late (after the extension): the score is 0 "
                              "(None: no cut-off)").tag(config=True)
    grace_minutes = Float(0.0, min=0.0, help="this many minutes late cost nothing").tag(config=True)

    def policy(self):
        return Policy(self.per_hour, self.per_day, self.unit, self.partial, self.cap, self.cutoff_hours,
                      self.grace_minutes)

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        """nbgrader's hook (called by AssignLatePenalties only when the submission is late)."""
        max_score, due, root, assignment = self._context()
        extension = deadlines.assignment_entry(root, assignment)["extensions"].get(student_id)
        seconds_late = max(0.0, total_seconds_late - deadlines.extension_seconds(extension, due))
        points = penalty_points(self.policy(), seconds_late, score, max_score)
        self.log.info("%s: %.2f h late after an extension of %.2f h: penalty %g", student_id,
                      seconds_late / 3600, deadlines.extension_seconds(extension, due) / 3600, points)
        return points

    def _context(self):
        """(max score of the notebook, aware due date, course root, assignment) from the calling
        AssignLatePenalties, whose gradebook session is open while it calls this plugin."""
        from nbgrader.coursedir import CourseDirectory

        caller = self.parent
        gradebook = caller.gradebook
        notebook = gradebook.find_submission_notebook(caller.notebook_id, caller.assignment_id, caller.student_id)
        due = deadlines.as_utc(gradebook.find_assignment(caller.assignment_id).duedate)
        root = CourseDirectory(config=self.config).root
        return float(notebook.max_score), due, root, caller.assignment_id
