"""`release`: build the course directory and the student version of the assignment."""
from autograder.course import ASSIGNMENT, Course, CourseError, copy_sources, failure_line, open_api, write_config
from autograder.seeds import ensure_secret


def release(course=None, *, cell_timeout=None, submission_timeout=None, echo=print):
    """Write nbgrader_config.py, copy the kit into source/, run generate_assignment.

    Returns the release folder (what students receive).
    """
    course = course or Course()
    write_config(course, cell_timeout=cell_timeout, submission_timeout=submission_timeout)
    ensure_secret(course.root)  # seeds every submission's hidden inputs; stays in the course root
    copy_sources(course)
    result = open_api(course).generate_assignment(ASSIGNMENT)
    if not result["success"]:
        raise CourseError(f"generate_assignment failed: {failure_line(result)}")
    echo(f"Released '{ASSIGNMENT}'. Give students this folder: {course.release}")
    return course.release
