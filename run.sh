#!/usr/bin/env bash
# Build the landing image, run its contract tests inside it, then serve it in the foreground.
# usage: ./run.sh [--local] [--dev] [--no-tests] [-h]
#   --local     skip Docker: serve the same app from a local .venv on 127.0.0.1 (also the
#               fallback when no Docker engine answers; metrics off unless METRICS_PORT is set)
#   --dev       reload on edits: the server restarts its workers when a file of the app changes
#               (in Docker the source folder is mounted read-only over /app; no in-image tests)
#   --no-tests  serve without running the contract tests inside the image
#   PORT               host port (default 80 with Docker; 8080 with --local or host networking)
#   PYTHON_IMAGE       base image to build on (default: the Dockerfile's, python:3.13-slim)
#   LANDING_IMAGE      image tag (default landing; the tests' image is LANDING_IMAGE-tests)
#   LANDING_CONTAINER  container name (default landing; the tests' is LANDING_CONTAINER-tests)
# The contract tests run once per test image: an image ID that passed is noted in
# ${XDG_CACHE_HOME:-~/.cache}/landing/tests-passed and not tested again. Docker starts a
# server that crashes again; Ctrl-C, SIGTERM or closing the terminal stops and removes it.
set -euo pipefail

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
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
# ... and this one says where it serves, for a second run.sh to tell.
url_label=org.landing.url
stamp="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/landing/tests-passed"

say() {
  echo "run.sh: $*" >&2
}

answers() {
  # Tell whether GET /healthcheck on 127.0.0.1:$1 answers 200: the server is up and ready.
  # shellcheck disable=SC2016  # $1 is the inner shell's
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
    printf "GET /healthcheck HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3 &&
    read -r _ status _ <&3 && [[ "$status" == 200 ]]' _ "$1" 2>/dev/null
}

refuse_taken_port() {
  # Stop before starting anything when something already listens on the host's port $1.
  # shellcheck disable=SC2016  # $1 is the inner shell's
  if timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; then
    say "something already listens on port $1 (another ./run.sh?): set PORT to a free port"
    exit 1
  fi
}

when_answering() {
  # Poll port $1 for up to $2 s, then run the rest (the "serving" line) once it answers.
  local port="$1" limit="$2" deadline=$((SECONDS + $2))
  shift 2
  until answers "$port"; do
    if ((SECONDS >= deadline)); then
      say "nothing answers on port $port after $limit s; the lines above may say why"
      return 1
    fi
    sleep 0.2
  done
  "$@"
}

poller=
# shellcheck disable=SC2329  # called from the EXIT trap
stop_poller() {
  if [[ -n "$poller" ]]; then kill "$poller" 2>/dev/null || true; fi
}
trap stop_poller EXIT

run_local() {
  # Same app, same settings code; only the address differs: loopback, unprivileged port.
  local port="${PORT:-8080}" reload=0 server status
  # The same .venv and stamp as test.sh: pip runs again only when a pin changed. The runtime
  # view of uv.lock, installed with its hashes.
  # shellcheck source=.ci/venv.sh
  source .ci/venv.sh
  ensure_venv .venv requirements.txt
  if $dev; then
    reload=1
    say "--dev: an edit to the app is live within about a second (RELOAD=1)"
  fi
  refuse_taken_port "$port"
  # A process group of its own (set -m): the terminal's Ctrl-C and hang-up reach run.sh only,
  # which passes on exactly one signal; the server alone would take SIGHUP as "reload".
  # Metrics stay off unless METRICS_PORT is set: two local servers must not both want 9464.
  set -m
  HOST=127.0.0.1 PORT="$port" RELOAD="$reload" METRICS_PORT="${METRICS_PORT:-0}" \
    .venv/bin/python landing.py </dev/null &
  server=$!
  set +m
  trap 'kill -INT "$server" 2>/dev/null || true' INT
  trap 'kill -TERM "$server" 2>/dev/null || true' TERM HUP
  when_answering "$port" 60 say "serving http://127.0.0.1:$port/ from .venv (Ctrl-C stops)" &
  poller=$!
  # A trap interrupts `wait`: wait again until the server has stopped, then exit as it did.
  while :; do
    status=0
    wait "$server" || status=$?
    kill -0 "$server" 2>/dev/null || break
  done
  exit "$status"
}

if $local_mode; then
  say "--local: running without Docker"
  run_local
fi
if ! engine_error=$(timeout 20 docker info 2>&1 >/dev/null); then
  if [[ "$engine_error" == *"permission denied"* ]]; then
    say "Docker refuses you: permission denied on its socket (join the docker group:" \
      "sudo usermod -aG docker \"\$USER\", then log in again); running locally instead"
  else
    say "no Docker engine answers (docker info failed); running locally instead"
  fi
  run_local
fi
# The server in the container runs as UID 10001: it must be able to read the app's files
# (and with --dev enter the folder). A checkout made under umask 077, or in `mktemp -d`, is
# 0600/0700; the image copies files with their modes, and its tests would fail on a permission.
# Only --dev mounts the folder itself; the image copies its files, whatever the folder's mode.
unreadable=
if $dev; then
  unreadable=$(find . -maxdepth 0 ! -perm -o=rx -print -quit)
fi
if [[ -z "$unreadable" ]]; then
  unreadable=$(find ./*.py serving prod.conf static \
    requirements.txt requirements-test.txt pyproject.toml test.sh tests -name __pycache__ -prune \
    -o \( -type d ! -perm -o=rx -o -type f ! -perm -o=r \) -print -quit 2>/dev/null || true)
fi
if [[ -n "$unreadable" ]]; then
  [[ "$unreadable" == . ]] && unreadable=$PWD || unreadable=$PWD/${unreadable#./}
  say "the container's user (UID 10001) cannot read $unreadable (a checkout made under" \
    "umask 077?); run: chmod -R o+rX $PWD"
  exit 1
fi

own_container() {
  # Tell whether container $1 exists; exit with a line if run.sh did not start it (no label).
  local name="$1" value
  value=$(docker container inspect --format "{{index .Config.Labels \"$label\"}}" "$name" \
    2>/dev/null) || return 1
  if [[ "$value" != 1 ]]; then
    say "a container named $name exists that run.sh did not start; set LANDING_CONTAINER" \
      "to another name, or remove it yourself"
    exit 1
  fi
}

refuse_running_container() {
  # A second run.sh leaves the first one's container alone: it says where that one serves.
  local name="$1" state url
  own_container "$name" || return 0
  read -r state url < <(docker container inspect --format \
    "{{.State.Status}} {{index .Config.Labels \"$url_label\"}}" "$name" 2>/dev/null || true)
  case "$state" in
    running | restarting)
      say "$name is already running${url:+, serving $url} (another ./run.sh started it): stop" \
        "it there with Ctrl-C (or docker stop $name), or set LANDING_CONTAINER and PORT to" \
        "run a second one"
      exit 1
      ;;
  esac
}

remove_own_container() {
  # Remove container $1 if run.sh started it (it has the label) and it has stopped; refuse to
  # touch anyone else's, or one still running (two run.sh started at once).
  refuse_running_container "$1"
  own_container "$1" || return 0
  docker rm --force "$1" >/dev/null
}

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
url="http://localhost:$port/"
# Before building: a second run.sh neither replaces nor confuses the first one's containers.
refuse_running_container "$container"
refuse_running_container "$container-tests"
refuse_taken_port "$port"

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

# The same hardening as compose.yaml and the Kubernetes manifests. No --rm: it excludes a
# restart policy, and Docker restarting a server that exits unexpectedly (status not 0: a
# crash, an OOM kill) matters more; run.sh removes the container itself when it ends.
run_args=(--restart on-failure --name "$container" --label "$label=1" --label "$url_label=$url"
  --sig-proxy=false --read-only --cap-drop ALL --security-opt no-new-privileges
  "${network_args[@]}")
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
  # docker stop sends SIGTERM (graceful shutdown, and no restart); then the container goes.
  docker stop "$container" >/dev/null 2>&1 || true
  # Let the client print the server's last lines before this script exits.
  if [[ -n "$client" ]]; then wait "$client" 2>/dev/null || true; fi
  remove_own_container "$container" 2>/dev/null || true
}
trap 'say "stopping $container"; stop_container; exit 130' INT
trap 'say "stopping $container"; stop_container; exit 143' TERM
# Closing the terminal stops what run.sh started.
trap 'say "hang-up: stopping $container"; stop_container; exit 129' HUP

restarted() {
  # After the client returned: tell whether Docker started the container again, and set
  # `started` to when. Polled here, not in a $(subshell), so a signal's trap runs at once.
  local state
  while read -r state started < <(docker container inspect --format \
    '{{.State.Status}} {{.State.StartedAt}}' "$container" 2>/dev/null || true); do
    case "$state" in
      running) return 0 ;;
      restarting) sleep 0.2 ;;
      *) return 1 ;;
    esac
  done
  return 1
}

# No signal proxy: the trap's `docker stop` is the one way a signal reaches the server, so
# Ctrl-C (which the terminal also sends to docker run) never means two shutdowns at once.
when_answering "$port" 60 say "serving $url from $image (Ctrl-C stops and removes it)" &
poller=$!
# In the background, then wait: bash runs a trap only between commands, and `wait` is
# interrupted by a signal where a foreground `docker run` would delay the trap until it ends.
docker run "${run_args[@]}" "$image" &
client=$!
status=0
wait "$client" || status=$?
# The client returns when the server exits; after a crash Docker starts it again: follow
# the new one's output, from its start, until it stops for good.
started=
while restarted; do
  say "$container exited with status $status; Docker started it again (--restart on-failure)"
  docker logs --follow --since "$started" "$container" &
  client=$!
  wait "$client" || true
  status=$(docker container inspect --format '{{.State.ExitCode}}' "$container" 2>/dev/null ||
    echo "$status")
done
remove_own_container "$container" 2>/dev/null || true
exit "$status"
