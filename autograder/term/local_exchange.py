"""A course without a hub keeps nbgrader's exchange in its own folder (course/exchange), and says so in
its nbgrader_config.py, so that formgrader shows a released assignment as "released".

nbgrader's formgrader calls an assignment "released" only when its student version is in the
exchange's outbound folder (NbGraderAPI.get_released_assignments lists <Exchange.root>/<course_id>/
outbound/), and "draft" otherwise: it has no other record of a release. A course handed out through
an LMS never used the exchange, so formgrader called every assignment "draft". Here `release` also
publishes the release to the course's own exchange, and the course config names that exchange, so
formgrader, plain `nbgrader` and the kit agree.

Only where no exchange is configured in Jupyter's config path (a hub's admin sets Exchange.root in
e.g. /etc/jupyter): there the hub's exchange is the course's, a plain release leaves it alone (it
would hand the assignment to every student), and `release --exchange` publishes it (exchange.py).
"""
from pathlib import Path

from traitlets.config import Config, JSONFileConfigLoader, PyFileConfigLoader

from autograder.course import CourseError, failure_line, open_api

CONFIG_LINES = '''
# nbgrader's exchange of this course (autograder/term/local_exchange.py): `release` publishes the student
# version here, so formgrader shows the assignment as released. A hub's shared exchange replaces it.
c.Exchange.root = {root!r}
'''


def hub_exchange():
    """Exchange.root as Jupyter's config path sets it (a hub's), or None."""
    from jupyter_core.paths import jupyter_config_path

    for folder in jupyter_config_path():  # the first folder wins, as in Jupyter apps
        for loader in (PyFileConfigLoader("nbgrader_config.py", path=folder),
                       JSONFileConfigLoader("nbgrader_config.json", path=folder)):
            try:
                config = loader.load_config()
            except Exception:  # noqa: BLE001 - missing or broken: Jupyter apps skip it too
                continue
            if isinstance(config, Config) and "root" in config.Exchange:
                return str(config.Exchange.root)
    return None


def course_exchange(course):
    """The course's own exchange folder, or None when a hub's exchange is configured."""
    return None if hub_exchange() else course.root / "exchange"


def configure(course):
    """Name the course's own exchange in its nbgrader_config.py (after write_config rewrote it)."""
    root = course_exchange(course)
    if root is not None:
        with open(course.config_file, "a") as handle:
            handle.write(CONFIG_LINES.format(root=str(root)))
    return root


def publish(course):
    """Copy release/<assignment>/ into the course's own exchange (replacing an earlier copy), with
    nbgrader's ExchangeReleaseAssignment. Does nothing when a hub's exchange is configured."""
    root = course_exchange(course)
    if root is None:
        return None
    Path(root).mkdir(exist_ok=True)
    config = Config()
    config.Exchange.root = str(root)
    config.ExchangeReleaseAssignment.force = True
    result = open_api(course, config).release_assignment(course.assignment)
    if not result["success"]:
        raise CourseError(f"could not record the release in the course's exchange {root}: {failure_line(result)}")
    return root
