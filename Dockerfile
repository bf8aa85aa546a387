# The landing page as one image: a build stage makes the venv, the runtime stage carries only
# the venv and the app, run by a non-root user.
#   docker build --network host -t landing .                      the runtime image (default)
#   docker build --network host --target test -t landing-tests .  its venv and user + the contract tests
#   docker run --rm --network none landing-tests                  the contract tests, in the image
# Classic-builder syntax only (no RUN --mount, no heredocs): not every engine has BuildKit.
# The classic builder builds every stage above its --target: the runtime stages come first,
# so `--target runtime` (./run.sh --no-tests, --dev) builds none of the test tools.

# Any Debian-like image with python3 and its venv module; CI passes a locally built stand-in.
ARG PYTHON_IMAGE=python:3.13-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
# Requirements before the code: editing the app reuses this layer instead of reinstalling.
# requirements.txt is uv.lock's runtime view (.ci/lock.sh): the project's dependencies and
# everything they pull in, each with its hashes, and no test tool.
COPY requirements.txt /tmp/requirements.txt
# --require-hashes: only the files the lock names install. --no-deps plus `pip check` proves
# requirements.txt pins every dependency: nothing unpinned can slip in. pip itself then goes:
# the runtime installs nothing.
RUN /opt/venv/bin/python -m pip install --require-hashes --no-deps -r /tmp/requirements.txt \
 && /opt/venv/bin/python -m pip check \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet pip

# What the runtime and test images share: Python, the venv, the user. No app code yet, so
# an edit to the app rebuilds neither this nor the test tools.
FROM ${PYTHON_IMAGE} AS runtime-base
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH
# A fixed UID, so volume permissions and Kubernetes' runAsUser can name it.
RUN groupadd --system --gid 10001 landing \
 && useradd --system --uid 10001 --gid landing --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin landing
COPY --from=build /opt/venv /opt/venv
WORKDIR /app

FROM runtime-base AS runtime
# Every module beside landing.py (yours too) and the serving package, owned by root and
# read-only to the server: it cannot rewrite its own code.
COPY *.py prod.conf ./
COPY serving/ serving/
COPY static/ static/
# The app's bytecode, compiled once here: the server may not write it, and compiling the app's
# modules at every start costs it 10-20 ms.
RUN python -m compileall -q .
USER 10001:10001
# 80: the site; 9464: Prometheus metrics (METRICS_PORT), on loopback unless METRICS_HOST opens
# them (the Kubernetes Deployment does, for the cluster only).
EXPOSE 80 9464
# start-interval needs a newer engine; a short interval gets the first verdict in ~5 s.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "healthcheck.py"]
# Exec form: the server is PID 1 and receives docker stop's SIGTERM itself.
CMD ["python", "landing.py"]

# The test tools join a copy of the build venv in a stage of their own: the lock's test group
# (pytest and coverage with what they pull in, hashed: requirements-test.txt), no lint,
# browser or Kubernetes tools.
FROM build AS test-tools
COPY requirements-test.txt /tmp/requirements-test.txt
RUN /opt/venv/bin/python -m ensurepip --default-pip >/dev/null \
 && /opt/venv/bin/python -m pip install --require-hashes --no-deps -r /tmp/requirements-test.txt \
 && /opt/venv/bin/python -m pip check \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet pip

# The runtime's Python, venv and user, plus the test tools and the tests of the site
# (tests/site: the page, its health check, its static files, its headers) and of what the
# server promises it (tests/contract: the guard, the settings, stopping), proved for the
# packages and user the runtime image ships, in about 5 s. tests/server and tests/delivery
# stay out of the build context (.dockerignore): they run on the host (./test.sh, CI).
FROM runtime-base AS test
COPY --from=test-tools /opt/venv /opt/venv
# The app stays root-owned and read-only, as in the runtime: coverage writes to /tmp, and
# pytest keeps no cache.
ENV COVERAGE_FILE=/tmp/.coverage PYTEST_ADDOPTS="-p no:cacheprovider"
COPY pyproject.toml test.sh ./
COPY tests/ tests/
# The app last: an edit to it rebuilds only these two small layers.
COPY *.py prod.conf ./
COPY serving/ serving/
COPY static/ static/
USER 10001:10001
CMD ["./test.sh", "-q", "-m", "not slow"]

# Last stage = default target: a plain `docker build .` gives the runtime image.
FROM runtime
