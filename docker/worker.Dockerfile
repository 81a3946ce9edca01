# A Dask worker that can grade: the kit's pinned environment, the kit itself and bubblewrap.
# (Not built in the kit's CI: that machine has no container runtime.)
#
#   docker build -f docker/worker.Dockerfile -t backprop-grader-worker .
#   docker run --rm --network host \
#       --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#       --cgroupns private --cgroup-parent grading.slice \
#       backprop-grader-worker tcp://SCHEDULER:8786 --nthreads 2
#
# bubblewrap needs to create user, mount, pid and network namespaces inside the container: the two
# --security-opt lift Docker's default profiles that forbid it (without them the worker refuses
# every job with the same message as `grade` on a machine without bwrap). With a private, writable
# cgroup namespace each submission is capped by a cgroup; elsewhere a watchdog thread enforces the
# 2 GiB memory cap instead. Kubernetes (dask-kubernetes): the same two relaxations in the pod's
# securityContext (seccompProfile: Unconfined, appArmorProfile: Unconfined).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/grader
COPY requirements.txt pyproject.toml README.md helpers.py ./
RUN pip install --no-cache-dir -r requirements.txt
COPY autograder ./autograder
RUN pip install --no-cache-dir --no-deps -e .

# A job is a child process killed at its budget: the worker may not be a daemon process.
# nbgrader shells out to `alembic`, which pip put in /usr/local/bin (on PATH).
ENV DASK_DISTRIBUTED__WORKER__DAEMON=False \
    MPLBACKEND=Agg
# Workers grade in their own temporary folders and keep nothing: no volume is needed.
ENTRYPOINT ["dask", "worker", "--nworkers", "1", "--no-dashboard", "--preload", "autograder.grading.cluster"]
