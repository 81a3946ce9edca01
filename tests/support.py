"""Helpers shared by test files (import them as `from support import ...`; tests never import
conftest, which pytest loads by itself and which holds only fixtures)."""


def sandbox_ok():
    """bubblewrap is installed and can start a sandbox here: tests that need one skip otherwise."""
    try:
        from autograder.sandbox.bwrap import bwrap_available
    except ImportError:
        return False
    return bwrap_available()


def stop_server(server):
    """Stop a Jupyter server and everything it started. SIGTERM lets Jupyter shut its kernels down;
    kernels run in sessions of their own, so whatever outlives the server is killed by process id."""
    import subprocess

    import psutil
    try:
        started = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    for proc in started:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def course_with_class(released_course, root, variants):
    """A copy of the released course at `root` with one submission per name in `variants`, each
    student named after the variant of autograder.variants they hand in."""
    import shutil

    import nbformat

    from autograder.course import Course
    from autograder.testcells import read_notebook
    from autograder.variants import VARIANTS, make_submission

    course = Course(root)
    shutil.copytree(released_course.root, course.root)
    source_nb = read_notebook(course.notebook(course.source))
    release_nb = read_notebook(course.notebook(course.release))
    for name in variants:
        course.submitted(name).mkdir(parents=True)
        nbformat.write(make_submission(release_nb, source_nb, VARIANTS[name]),
                       str(course.notebook(course.submitted(name))))
    return course
