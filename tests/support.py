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
