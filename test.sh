#!/usr/bin/env bash
# Run the test suite under branch coverage, then lint; set up .venv first on a fresh machine.
# usage: ./test.sh [pytest arguments...]   e.g. ./test.sh -m "not slow"   ./test.sh -k healthcheck
#   With no arguments: all tests, 100% coverage enforced, then ruff, mypy, shellcheck, hadolint.
#   With arguments: those tests only; coverage is reported, not enforced, and lint is skipped.
#   Installs what can run here: Playwright where /usr/bin/chromium is (or REQUIRE_BROWSER=1),
#   the Kubernetes schemas where REQUIRE_KUBERNETES=1 or KUBERNETES_SCHEMAS=1.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

cd "$(dirname "$0")"

say() {
  echo "test.sh: $*" >&2
}

# Views of uv.lock, each one install set (.ci/lock.sh): the runtime, then the host suite's and
# the linters' groups, then the groups that need a part a machine may lack.
requirements=(requirements.txt requirements-dev.txt)
if [[ -x /usr/bin/chromium || "${REQUIRE_BROWSER:-}" == 1 ]]; then
  requirements+=(requirements-browser.txt)
fi
if [[ "${REQUIRE_KUBERNETES:-}" == 1 || "${KUBERNETES_SCHEMAS:-}" == 1 ]]; then
  requirements+=(requirements-kubernetes.txt)
fi

has_deps() {
  "$1" -c 'import cherrypy, granian, coverage, pytest' 2>/dev/null
}

# An environment that already has the dependencies (the image's /opt/venv) is used as it is;
# anywhere else the suite gets its own .venv, refreshed when a pin or the set of files changes.
if [[ ! -x .venv/bin/python ]] && has_deps python3; then
  python=python3
else
  python=.venv/bin/python
  # shellcheck source=.ci/venv.sh
  source .ci/venv.sh
  ensure_venv .venv "${requirements[@]}"
fi

# Coverage measures every module in this folder, wherever a test starts the app from.
export LANDING_ROOT="$PWD"
"$python" -m coverage erase
status=0
"$python" -m coverage run -m pytest "$@" || status=$?
"$python" -m coverage combine --quiet || true
# A subset of the tests cannot cover everything: enforce 100% only for the whole suite.
if [[ $# -gt 0 ]]; then
  "$python" -m coverage report -m --fail-under=0
  exit "$status"
fi
coverage_status=0
"$python" -m coverage report -m || coverage_status=$?

lint_status=0
bin=$(dirname "$python")
if [[ -x "$bin/ruff" ]]; then
  say "lint: ruff, mypy, shellcheck, hadolint"
  "$bin/ruff" check . || lint_status=$?
  # The types: what it checks, and how strictly, is [tool.mypy] in pyproject.toml.
  "$bin/mypy" || lint_status=$?
  "$bin/shellcheck" -x run.sh test.sh .ci/run .ci/*.sh bench/run.sh || lint_status=$?
  "$bin/hadolint" Dockerfile || lint_status=$?
elif [[ "${CI:-}" == true ]]; then
  say "lint tools missing from $bin (requirements-dev.txt: the lint group)"
  lint_status=1
else
  say "lint skipped: no ruff in $bin (requirements-dev.txt, the lint group, installs it)"
fi

for step_status in "$status" "$coverage_status" "$lint_status"; do
  [[ "$step_status" -eq 0 ]] || exit "$step_status"
done
