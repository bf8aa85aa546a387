#!/usr/bin/env bash
# Build the landing image, run its contract tests inside it, then serve it in the foreground.
# usage: ./run.sh [--local] [--dev] [--no-tests] [-h]
#   --local     skip Docker: serve the same app from a local .venv on 127.0.0.1 (also the
#               fallback when no Docker engine answers)
#   --dev       reload on edits: the server restarts its workers when a file of the app changes
#               (in Docker the source folder is mounted read-only over /app; no in-image tests)
#   --no-tests  serve without running the contract tests inside the image
#   PORT               host port (default 80 with Docker; 8080 with --local or host networking)
#   PYTHON_IMAGE       base image to build on (default: the Dockerfile's, python:3.13-slim)
#   LANDING_IMAGE      image tag (default landing; the tests' image is LANDING_IMAGE-tests)
#   LANDING_CONTAINER  container name (default landing; the tests' is LANDING_CONTAINER-tests)
# The contract tests run once per test image: an image ID that passed is noted in
# ${XDG_CACHE_HOME:-~/.cache}/landing/tests-passed and not tested again.
set -euo pipefail

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

local_mode=false dev=false tests=true
for arg in "$@"; do
  case "$arg" in
    --local) local_mode=true ;;
    --dev) dev=true ;;
    --no-tests) tests=false ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")"
image="${LANDING_IMAGE:-landing}"
test_image="$image-tests"
container="${LANDING_CONTAINER:-landing}"
# Every container run.sh starts carries this label; it removes no container without it.
label=org.landing.run-sh
stamp="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/landing/tests-passed"

say() {
  echo "run.sh: $*" >&2
}

run_local() {
  # Same app, same settings code; only the address differs: loopback, unprivileged port.
  local port="${PORT:-8080}" python=.venv/bin/python reload=0
  # The same .venv and stamp as test.sh: pip runs again only when a pin changed.
  # shellcheck source=.ci/venv.sh
  source .ci/venv.sh
  ensure_venv .venv requirements.txt
  if $dev; then
    reload=1
    say "--dev: an edit to the app is live within about a second (RELOAD=1)"
  fi
  say "serving http://127.0.0.1:$port/ from .venv (Ctrl-C stops)"
  # exec: the server itself gets Ctrl-C and SIGTERM and shuts down gracefully.
  HOST=127.0.0.1 PORT="$port" RELOAD="$reload" exec "$python" landing.py
}

if $local_mode; then
  say "--local: running without Docker"
  run_local
fi
if ! timeout 20 docker info >/dev/null 2>&1; then
  say "no Docker engine answers (docker info failed); running locally instead"
  run_local
fi
# --dev mounts this folder into a container whose server runs as UID 10001: it must be able to
# enter the folder and read the app (a checkout made with umask 077, or in `mktemp -d`, is not).
if $dev && [[ -n "$(find . landing.py -maxdepth 0 \( -type d ! -perm -o=rx -o -type f ! -perm -o=r \) -print -quit)" ]]; then
  say "--dev: the container's user (UID 10001) cannot read $PWD; run: chmod -R o+rX ."
  exit 1
fi

# The base image must be local or pullable; without a registry, say what to set instead of
# letting the build fail on FROM.
base="${PYTHON_IMAGE:-$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)}"
if ! docker image inspect "$base" >/dev/null 2>&1 && ! docker pull "$base" >/dev/null 2>&1; then
  say "base image $base is neither local nor pullable: set PYTHON_IMAGE to a local Debian" \
    "image with python3 and venv (bash .ci/docker-engine.sh base-image builds" \
    "landing-base:trixie)"
  exit 1
fi

# An engine without the default bridge (dockerd --bridge=none) cannot publish a port: the
# container then shares the host's network and the server itself listens on PORT. Metrics
# stay off there: on a bridge they are not published either, and the host's 9464 may be taken.
if docker network inspect bridge >/dev/null 2>&1; then
  port="${PORT:-80}"
  network_args=(--publish "$port:80")
else
  port="${PORT:-8080}"
  network_args=(--network host --env "PORT=$port" --env METRICS_PORT=0)
  say "this engine has no bridge network: the container uses the host's network, on PORT=$port"
fi

remove_own_container() {
  # Remove container $1 if run.sh started it (it has the label); refuse to touch anyone else's.
  local name="$1" value
  value=$(docker container inspect --format "{{index .Config.Labels \"$label\"}}" "$name" \
    2>/dev/null) || return 0
  if [[ "$value" != 1 ]]; then
    say "a container named $name exists that run.sh did not start; set LANDING_CONTAINER" \
      "to another name, or remove it yourself"
    exit 1
  fi
  docker rm --force "$name" >/dev/null
}

note_passed() {
  # Add test image ID $1 to the stamp; the newest 50 are enough to go back and forth.
  mkdir -p "$(dirname "$stamp")" 2>/dev/null || return 1
  { tail -n 49 "$stamp" 2>/dev/null || true; echo "$1"; } >"$stamp.$$" 2>/dev/null &&
    mv "$stamp.$$" "$stamp"
}

# Host network: pip in the build stage needs the index, and engines started without a
# bridge (as CI's is) give build steps no other. --force-rm: no failed step left behind.
build_args=(--network host --force-rm)
if [[ -n "${PYTHON_IMAGE:-}" ]]; then
  build_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
fi

if $dev && $tests; then
  say "--dev serves the source folder, not the image's copy: no tests in the image"
  tests=false
fi
if $tests; then
  say "building $test_image and $image"
  # The test target first: it builds the runtime stages too, so the second build is cached.
  docker build "${build_args[@]}" --target test --tag "$test_image" .
  docker build "${build_args[@]}" --target runtime --tag "$image" .
  test_id=$(docker image inspect --format '{{.Id}}' "$test_image")
  if grep -qxF "$test_id" "$stamp" 2>/dev/null; then
    say "the contract tests already passed in this $test_image (${test_id:7:12}); not again"
  else
    say "running the contract tests inside $test_image"
    remove_own_container "$container-tests"
    # The tests talk only to their own loopback, so the container needs no network.
    if ! docker run --rm --name "$container-tests" --label "$label=1" --network none \
      "$test_image"; then
      say "the contract tests failed inside the image; not starting $image"
      exit 1
    fi
    note_passed "$test_id" || say "could not write $stamp: the tests will run again next time"
  fi
else
  say "building $image (no tests)"
  docker build "${build_args[@]}" --target runtime --tag "$image" .
fi

# The same hardening as compose.yaml and the Kubernetes manifests.
run_args=(--rm --name "$container" --label "$label=1" --sig-proxy=false
  --read-only --cap-drop ALL --security-opt no-new-privileges "${network_args[@]}")
if $dev; then
  run_args+=(--mount "type=bind,source=$PWD,target=/app,readonly" --env RELOAD=1)
  say "--dev: $PWD is mounted over /app; an edit to the app is live within about a second"
fi
# A TTY only when there is one; under CI, nohup or a pipe the log stays plain lines.
if [[ -t 0 && -t 1 ]]; then
  run_args+=(--tty)
fi
remove_own_container "$container"

client=
# shellcheck disable=SC2329  # called from the traps below
stop_container() {
  # docker stop sends SIGTERM (graceful shutdown); --rm then removes the container.
  docker stop "$container" >/dev/null 2>&1 || true
  remove_own_container "$container" 2>/dev/null || true
  # Let `docker run` print the server's last lines before this script exits.
  if [[ -n "$client" ]]; then wait "$client" 2>/dev/null || true; fi
}
trap 'say "stopping $container"; stop_container; exit 130' INT
trap 'say "stopping $container"; stop_container; exit 143' TERM HUP

# No signal proxy: the trap's `docker stop` is the one way a signal reaches the server, so
# Ctrl-C (which the terminal also sends to docker run) never means two shutdowns at once.
say "serving http://localhost:$port/ from $image (Ctrl-C stops and removes it)"
# In the background, then wait: bash runs a trap only between commands, and `wait` is
# interrupted by a signal where a foreground `docker run` would delay the trap until it ends.
docker run "${run_args[@]}" "$image" &
client=$!
status=0
wait "$client" || status=$?
exit "$status"
