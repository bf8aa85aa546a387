#!/usr/bin/env bash
# Run the test suite under coverage, setting up .venv first on a fresh machine.
# usage: ./test.sh [pytest arguments...]   e.g. ./test.sh -k healthcheck -x
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,3p' "$0"
  exit 0
fi

cd "$(dirname "$0")"

has_deps() {
  "$1" -c 'import cherrypy, coverage, pytest' 2>/dev/null
}

# An environment that already has the dependencies (the image's /opt/venv) is used
# as it is; anywhere else the suite gets its own .venv, refreshed when a pin changes.
if [[ ! -x .venv/bin/python ]] && has_deps python3; then
  python=python3
else
  python=.venv/bin/python
  stamp=.venv/requirements.sha256
  wanted=$(cat requirements.txt requirements-dev.txt | sha256sum)
  if [[ ! -x "$python" ]]; then
    echo "test.sh: creating .venv" >&2
    python3 -m venv .venv
  fi
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
    echo "test.sh: installing requirements-dev.txt into .venv" >&2
    "$python" -m pip install --quiet --upgrade pip
    "$python" -m pip install --quiet -r requirements-dev.txt
    echo "$wanted" >"$stamp"
  fi
fi

"$python" -m coverage erase
status=0
"$python" -m coverage run -m pytest "$@" || status=$?
"$python" -m coverage combine --quiet || true
# A subset of the tests cannot cover everything: enforce 100% only for the whole suite.
if [[ $# -gt 0 ]]; then
  "$python" -m coverage report -m --fail-under=0
else
  "$python" -m coverage report -m || { [[ $status -ne 0 ]] || status=$?; }
fi
exit "$status"
