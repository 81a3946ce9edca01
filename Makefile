# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# nbgrader shells out to `alembic`, so the venv's bin/ must be on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MPLBACKEND := Agg

.PHONY: demo test bench guards sandbox-deps browser-deps postgres-deps clean

# The pinned environment, then the kit itself as an editable package (autograder + helpers), so
# tests, benchmarks and a course's nbgrader_config.py import it without touching sys.path.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# A Debian package where it is missing: installed when we can (CI runs as root), else a warning.
# $(call apt_install,PATH OF ITS PROGRAM,PACKAGE,WHAT IT IS FOR)
define apt_install
	@test -x $(1) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(2) ($(3))"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else \
	    echo "warning: $(2) ($(1)) is missing and cannot be installed here: $(3) will be skipped"; \
	  fi; }
endef

# Grading runs student code inside bubblewrap.
sandbox-deps:
	$(call apt_install,/usr/bin/bwrap,bubblewrap,the grading sandbox and its tests)

# tests/students/test_browser.py drives JupyterLab with Playwright (pinned in requirements.txt) and
# Debian's chromium: Playwright's own browser download needs the internet, a Debian package does not.
browser-deps:
	$(call apt_install,/usr/bin/chromium,chromium,the browser test)

# tests/instructors/test_postgres.py starts a throwaway PostgreSQL server (Debian's packages; the
# binaries live in /usr/lib/postgresql/<version>/bin, psycopg2-binary is pinned in requirements.txt).
postgres-deps:
	$(call apt_install,"$$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1)",postgresql,the PostgreSQL gradebook tests)

demo: $(VENV)/.installed sandbox-deps
	$(PY) -m autograder demo

# MNIST_OFFLINE: tests never touch the network; the notebook falls back to the bundled sample.
# Two pytest workers, one test file each: much of the suite waits on kernels and sandboxes.
test: $(VENV)/.installed sandbox-deps browser-deps postgres-deps
	$(VENV)/bin/ruff check --quiet .
	MNIST_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --nbval-lax assignment.ipynb tests

bench: $(VENV)/.installed sandbox-deps
	$(PY) -m benchmarks

# Guard mutations: each guard of the grader broken on purpose in a copy of the tree, and the test
# that must catch it run there (tools/guard_mutations.py); a guard that survives has no test. Slow:
# it runs the catalogue's tests once unmutated, then once per guard (module fixtures included).
guards: $(VENV)/.installed sandbox-deps
	$(PY) tools/guard_mutations.py

clean:
	rm -rf course build
