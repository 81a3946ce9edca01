"""Helpers shared by test files (import them as `from support import ...`; tests never import
conftest, which pytest loads by itself and which holds only fixtures)."""


def sandbox_ok():
    """bubblewrap is installed and can start a sandbox here: tests that need one skip otherwise."""
    try:
        from autograder.sandbox.bwrap import bwrap_available
    except ImportError:
        return False
    return bwrap_available()
