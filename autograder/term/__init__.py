"""The course around the notebook: deadlines and extensions, nbgrader's exchange, LMS files, similarity."""
