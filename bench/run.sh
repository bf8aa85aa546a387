#!/usr/bin/env bash
# Benchmark the landing app beside its peers on loopback (a few minutes; see bench/bench.py).
# usage: ./bench/run.sh [bench.py options...]   e.g. ./bench/run.sh --duration 2 --rounds 1
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,3p' "$0"
  echo
  # The driver's own options; printing them needs only the standard library.
  exec python3 "$(dirname "$0")/bench.py" --help
fi

# Paths given to bench.py (--app, --variant) stay relative to where this was run from.
caller_dir=$PWD
bench_dir=$(cd "$(dirname "$0")" && pwd)
cd "$bench_dir"

# wrk and nginx come from Debian; install them only when missing (needs root or sudo).
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v taskset >/dev/null || missing+=(util-linux)
if (( ${#missing[@]} )); then
  sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  echo "bench: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if (( $(nproc) < 2 )); then
  echo "bench: needs 2 cores (one for the servers, one for wrk); this machine has $(nproc)" >&2
  exit 1
fi

# bench/.venv: the app's pins plus Flask, gunicorn and psutil; refreshed when a pin changes.
python=.venv/bin/python
stamp=.venv/requirements.sha256
wanted=$(cat requirements.txt ../requirements.txt | sha256sum)
if [[ ! -x "$python" ]]; then
  echo "bench: creating bench/.venv" >&2
  python3 -m venv .venv
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  echo "bench: installing bench/requirements.txt into bench/.venv" >&2
  "$python" -m pip install --quiet --upgrade pip
  # The app's pins are hashed (uv.lock's runtime view) and install as the image's do; the
  # bench's own pins carry no hashes, so they go in a second install.
  "$python" -m pip install --quiet --require-hashes --no-deps -r ../requirements.txt
  "$python" -m pip install --quiet -r requirements.txt
  echo "$wanted" >"$stamp"
fi

cd "$caller_dir"
exec "$bench_dir/$python" "$bench_dir/bench.py" "$@"
