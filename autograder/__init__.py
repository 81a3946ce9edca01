"""The instructor's side of the backprop assignment: one CLI over nbgrader.

Each verb is a module with one public function, usable from Python too:
release, collect, grade, feedback, export, report, demo.
"""
