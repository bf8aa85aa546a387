#!/usr/bin/env bash
# Build the landing image, run the test suite inside it, then serve it in the foreground.
# usage: ./run.sh [--local] [-h]
#   --local   skip Docker: serve the same app from a local .venv on 127.0.0.1 (also the
#             fallback when no Docker engine answers)
#   PORT          host port to serve on (default 80 with Docker, 8080 with --local)
#   PYTHON_IMAGE  base image to build on (default: the Dockerfile's python:3.13-slim)
#   IMAGE, CONTAINER_NAME  image tag and container name (default: landing)
set -euo pipefail

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

local_mode=false
for arg in "$@"; do
  case "$arg" in
    --local) local_mode=true ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")"
IMAGE="${IMAGE:-landing}"
TEST_IMAGE="${IMAGE}-tests"
CONTAINER_NAME="${CONTAINER_NAME:-landing}"

say() {
  echo "run.sh: $*" >&2
}

run_local() {
  # Same app, same settings code; only the address differs: loopback, unprivileged port.
  local port="${PORT:-8080}" python=.venv/bin/python
  # The same .venv and stamp as test.sh: pip runs again only when a pin changed.
  # shellcheck source=.ci/venv.sh
  source .ci/venv.sh
  ensure_venv .venv requirements.txt
  say "serving http://127.0.0.1:$port/ from .venv (Ctrl-C stops)"
  # exec: the server itself gets Ctrl-C and SIGTERM and shuts down gracefully.
  HOST=127.0.0.1 PORT="$port" exec "$python" landing.py
}

if $local_mode; then
  say "--local: running without Docker"
  run_local
fi
if ! timeout 20 docker info >/dev/null 2>&1; then
  say "no Docker engine answers (docker info failed); running locally instead"
  run_local
fi

# Host network: pip in the build stage needs the index, and engines started without a
# bridge (as CI's is) give build steps no other. --force-rm: no failed step left behind.
build_args=(--network host --force-rm)
if [[ -n "${PYTHON_IMAGE:-}" ]]; then
  build_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
fi

say "removing any previous $CONTAINER_NAME and $CONTAINER_NAME-tests containers"
docker rm --force "$CONTAINER_NAME" "$CONTAINER_NAME-tests" >/dev/null 2>&1 || true

say "building $TEST_IMAGE and $IMAGE"
# The test target first: the runtime stages it shares are then cached for the second build.
docker build "${build_args[@]}" --target test --tag "$TEST_IMAGE" .
docker build "${build_args[@]}" --tag "$IMAGE" .

say "running the test suite inside $TEST_IMAGE"
# The suite talks only to its own loopback, so the container needs no network.
if ! docker run --rm --name "$CONTAINER_NAME-tests" --network none "$TEST_IMAGE"; then
  say "the test suite failed inside the image; not starting $IMAGE"
  exit 1
fi

client=
# shellcheck disable=SC2329  # called from the traps below
stop_container() {
  # docker stop sends SIGTERM (graceful shutdown); --rm then removes the container.
  docker stop "$CONTAINER_NAME" >/dev/null 2>&1 || true
  docker rm --force "$CONTAINER_NAME" >/dev/null 2>&1 || true
  # Let `docker run` print the server's last lines before this script exits.
  if [[ -n "$client" ]]; then wait "$client" 2>/dev/null || true; fi
}
trap 'say "stopping $CONTAINER_NAME"; stop_container; exit 130' INT
trap 'say "stopping $CONTAINER_NAME"; stop_container; exit 143' TERM HUP

# No signal proxy: the trap's `docker stop` is the one way a signal reaches the server, so
# Ctrl-C (which the terminal also sends to docker run) never means two shutdowns at once.
run_args=(--rm --name "$CONTAINER_NAME" --sig-proxy=false --publish "${PORT:-80}:80")
# A TTY only when there is one; under CI, nohup or a pipe the log stays plain lines.
if [[ -t 0 && -t 1 ]]; then
  run_args+=(--tty)
fi
say "serving http://localhost:${PORT:-80}/ from $IMAGE (Ctrl-C stops and removes it)"
# In the background, then wait: bash runs a trap only between commands, and `wait` is
# interrupted by a signal where a foreground `docker run` would delay the trap until it ends.
docker run "${run_args[@]}" "$IMAGE" &
client=$!
status=0
wait "$client" || status=$?
exit "$status"
