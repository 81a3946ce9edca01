"""Imported once by the forkserver that grading jobs are forked from (jobs.start_forkserver), before
the job's module: what every job would otherwise pay again on its first submission.

* `rfc3987_syntax` is made unimportable. jsonschema imports it, if installed, only to offer the
  "iri" format check, building a Lark grammar at import (~1 CPU s). nbformat validates notebooks
  without any format checker, so nothing a job does uses it.
* Modules a job imports only while grading: nbconvert's and nbclient's execution machinery, the
  kernelspec lookup (ipykernel), and numpy/matplotlib, which the grader's own copy of the imports
  cell loads in every job (Reverify) and which verify.py reads matplotlib's font cache from.
* SQLAlchemy's first use: mapping nbgrader's gradebook classes and compiling its queries, done on
  an in-memory SQLite database that is closed again.

Only import-time state is built here: no gradebook, file or connection stays open, no job data is
read, and no student code runs in this process (kernels and verification workers are exec'd in
the sandbox). Each step is a cache: if one fails, jobs simply pay for it themselves.
"""
import importlib
import sys

# Before anything imports jsonschema (nbformat does): a None entry makes `import` raise ImportError,
# which jsonschema takes as "optional package not installed".
if "rfc3987_syntax" not in sys.modules:
    sys.modules["rfc3987_syntax"] = None

JOB_MODULES = (
    "nbconvert.preprocessors.execute", "nbclient.client", "jupyter_client.manager", "jupyter_client.kernelspec",
    "ipykernel.kernelspec", "zmq.asyncio", "numpy", "matplotlib", "matplotlib.pyplot",
)


def _import_all(names):
    """Import what can be imported; a missing optional module is the job's problem, not ours."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - a cache: the job imports it again and sees the error
            continue


def _warm_gradebook():
    """Map nbgrader's ORM classes and compile a lookup once, on a throw-away in-memory database."""
    try:
        from nbgrader.api import Gradebook, MissingEntry
        with Gradebook("sqlite:///:memory:") as gb:
            try:
                gb.find_graded_cell("cell", "notebook", "assignment")
            except MissingEntry:
                pass
    except Exception:  # noqa: BLE001, S110 - a cache: each job's own gradebook still works or fails alone
        pass


_import_all(JOB_MODULES)
_warm_gradebook()
