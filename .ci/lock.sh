#!/usr/bin/env bash
# Refresh the lock: resolve pyproject.toml into uv.lock (every Python from requires-python,
# every platform, with hashes), then write the lock's views that pip installs from, one per
# install set. usage: bash .ci/lock.sh [uv lock options]   e.g. --upgrade, --upgrade-package granian
# Needs uv at the version pyproject.toml's [tool.uv] names (pip install uv==THAT).
set -euo pipefail
cd "$(dirname "$0")/.."

uv lock "$@"
export_view() {
  # Write requirements file $1 from the lock: the packages of the sets named after it, hashed.
  local file="$1"
  shift
  uv export --quiet --frozen --no-emit-project --no-default-groups --format requirements-txt \
    --output-file "$file" "$@"
}
# The runtime (the image, run.sh --local): the project's dependencies, no group.
export_view requirements.txt --no-dev
# The image's test stage: pytest and coverage only.
export_view requirements-test.txt --only-group test
# test.sh on every machine: the host suite's tools and the linters.
export_view requirements-dev.txt --only-group host --only-group lint
# test.sh where Chromium is, and where the Kubernetes schemas are asked for.
export_view requirements-browser.txt --only-group browser
export_view requirements-kubernetes.txt --only-group kubernetes
