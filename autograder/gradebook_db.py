"""Where a course's gradebook lives: nbgrader's SQLite file (the default, `gradebook.db` in the course
root) or a PostgreSQL database named by `c.CourseDirectory.db_url` in the course's nbgrader_config.py
(nbgrader's own key, so `nbgrader` commands and formgrader use the same database as the kit).

Grading jobs never write the course's database: each grades against a SQLite snapshot
(`gradebook_snapshot`) and the one writer, grading/merge.py, copies the results in.
"""
import sqlite3
from pathlib import Path

# Database kinds the kit is tested with (nbgrader's ORM is SQLAlchemy's, so others may work too).
SUPPORTED = ("sqlite", "postgresql")
SQLITE_PREFIX = "sqlite:///"


def sqlite_url(path):
    """The SQLAlchemy URL of a SQLite file."""
    return f"{SQLITE_PREFIX}{Path(path).resolve()}"


def sqlite_path(url):
    """The file of a SQLite URL, or None for any other database."""
    return Path(url[len(SQLITE_PREFIX):]) if url.startswith(SQLITE_PREFIX) else None


def configured_db_url(config):
    """The course config's CourseDirectory.db_url, or None when it leaves nbgrader's default."""
    value = config.CourseDirectory.get("db_url") if "CourseDirectory" in config else None
    return str(value) if value else None


def shown(url):
    """The URL as a TA may see it in a message: the password hidden."""
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as the user typed it, minus nothing secret
        return "<unparsable database URL>"


def has_password(url):
    from sqlalchemy.engine import make_url
    return bool(make_url(url).password)


def check_db_url(url):
    """The URL if the kit can use it as a gradebook (parsed, a supported kind, reachable), else a
    CourseError with one line that says what is wrong."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from autograder.course import CourseError

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - SQLAlchemy's ArgumentError and ValueError alike
        raise CourseError(f"--db {url!r} is not a database URL: use postgresql://USER@HOST/DBNAME "
                          f"or sqlite:////absolute/path/gradebook.db") from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise CourseError(f"--db {shown(url)}: a {parsed.get_backend_name()} database is not supported; "
                          f"use postgresql://... or sqlite:///...")
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or not Path(parsed.database).is_absolute():
            raise CourseError(f"--db {shown(url)}: a SQLite gradebook needs an absolute path (sqlite:////path/x.db)")
        return url
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3; the kit pins psycopg2 (binary wheels).
        # Written out in full, so plain nbgrader reading the config gets the same driver.
        url = parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 10})
    except ModuleNotFoundError as exc:
        raise CourseError(f"--db {shown(url)}: the database driver is missing ({exc.name}); "
                          f"install psycopg2-binary in the kit's venv") from None
    try:
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any connection failure is the same problem for the TA
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["unknown error"])[0]
        raise CourseError(f"cannot open the gradebook database {shown(url)}: {first[:200]}") from None
    finally:
        engine.dispose()
    return url


def check_driver(url, where="nbgrader_config.py"):
    """A CourseError with one line if the Python driver of the database `url` cannot be loaded
    (a URL written by hand: SQLAlchemy's default for postgresql:// is psycopg 3, not installed)."""
    from sqlalchemy.engine import make_url

    from autograder.course import CourseError
    try:
        make_url(url).get_dialect().import_dbapi()
    except ModuleNotFoundError as exc:
        raise CourseError(f"the gradebook database {shown(url)} ({where}) needs the Python module {exc.name!r}, "
                          f"which is not installed: write it as postgresql+psycopg2://...") from None
    except Exception as exc:  # noqa: BLE001 - an unparsable URL or an unknown database kind
        raise CourseError(f"the gradebook database URL in {where} is not usable: {type(exc).__name__}: "
                          f"{str(exc)[:160]}") from None


def gradebook_snapshot(course, path):
    """A SQLite copy of the course's gradebook at `path`, whatever database holds it: what grading
    jobs grade against. Consistent even while TAs write (SQLite's backup API; for another database
    one REPEATABLE READ transaction), so a job never sees half of someone's change."""
    path = Path(path)
    source = sqlite_path(course.db_url)
    if source is not None:
        _sqlite_backup(source, path)
    else:
        _copy_tables(course.db_url, path)
    return path


def gradebook_snapshot_bytes(course):
    """The bytes of a SQLite snapshot of the course's gradebook (gradebook_snapshot), for a job that
    takes its data in memory."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="gradebook-snapshot-") as folder:
        return gradebook_snapshot(course, Path(folder) / "gradebook.db").read_bytes()


def _sqlite_backup(source, path):
    # read-only: a missing gradebook is an error here, never a new empty file
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(path)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _copy_tables(url, path):
    """Every row of nbgrader's tables (and its schema version) from `url` into a new SQLite file."""
    from nbgrader.api import Base
    from sqlalchemy import create_engine, select, text

    source = create_engine(url)
    target = create_engine(sqlite_url(path))
    try:
        Base.metadata.create_all(bind=target)
        with source.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin(), target.begin() as out:
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                out.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
                out.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": version})
                for table in Base.metadata.sorted_tables:  # parents before children: foreign keys hold
                    rows = [dict(row._mapping) for row in conn.execute(select(table))]
                    if rows:
                        out.execute(table.insert(), rows)
    finally:
        source.dispose()
        target.dispose()
