"""Seeds of the hidden tests' inputs: one per submission, drawn from a course secret.

With one seed for everybody, a student who records the arguments their functions receive during
grading (or is told them) can hand in a table of answers. So each submission's seed is an HMAC of
the course secret over the term seed, the student id and the SHA-256 of the submitted notebook:
a re-grade of the same submission draws the same inputs (bit-identical grades), any change to the
notebook draws new ones, and inputs learned from one submission say nothing about another's.
The secret is created at release in the course directory (never in release/ or feedback/).
"""
import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE = ".autograder_secret"
SEED_VARIABLE = "BACKPROP_GRADER_SEED"  # what the notebook's hidden tests read


def ensure_secret(course_root):
    """The course secret (32 random bytes, hex in `<course>/.autograder_secret`, mode 0600),
    created on first use; returns the bytes."""
    path = Path(course_root) / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    staged = path.with_name(f"{SECRET_FILE}.{os.getpid()}.tmp")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    try:
        os.link(staged, path)  # never replaces a secret another process just made
    except FileExistsError:
        pass
    finally:
        staged.unlink()
    return bytes.fromhex(path.read_text().strip())


def submission_seed(secret, term_seed, student, notebook_bytes):
    """A 128-bit seed for one submission (an int, as numpy's default_rng takes it)."""
    message = b"\0".join([b"backprop-grader-v1", str(int(term_seed)).encode(), student.encode("utf-8"),
                          hashlib.sha256(notebook_bytes).digest()])
    return int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest()[:16], "big")


def term_seed_from_env(environ=None):
    """The course-wide seed `grade --seed` or BACKPROP_GRADER_SEED sets (default 0)."""
    value = (os.environ if environ is None else environ).get(SEED_VARIABLE, "0")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{SEED_VARIABLE}={value!r} is not an integer") from None
