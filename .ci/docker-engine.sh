# shellcheck shell=bash
# Docker engine and stand-in base image for CI and for developers' machines.
# usage: source .ci/docker-engine.sh; start_docker_engine; trap stop_docker_engine EXIT
#        build_base_image; export PYTHON_IMAGE="$BASE_IMAGE"
# Functions only: sourcing changes nothing until one is called. Each is safe under
# `set -euo pipefail` and needs root (dockerd, debootstrap), as CI and these machines are.

# Where start_docker_engine keeps what it started, so another shell can stop that engine.
: "${DOCKERD_LOG:=${TMPDIR:-/tmp}/landing-dockerd.log}"
: "${DOCKERD_PID_FILE:=${TMPDIR:-/tmp}/landing-dockerd.pid}"
: "${DOCKER_ENGINE_DEADLINE:=60}"
DOCKERD_PID="${DOCKERD_PID:-}"
# yes: this shell started the engine; no: it found one running (not ours to stop);
# empty: start_docker_engine was not called here, so stop goes by DOCKERD_PID_FILE.
DOCKER_ENGINE_OURS="${DOCKER_ENGINE_OURS:-}"

# The stand-in for python:3.13-slim: same Debian release (trixie), same Python (3.13).
BASE_IMAGE_TAG="${BASE_IMAGE_TAG:-landing-base:trixie}"

docker_engine_answers() {
  # A bounded wait: a wedged engine must fail the caller, not hang CI.
  timeout 10 docker info >/dev/null 2>&1
}

start_docker_engine() {
  # Start dockerd in the background unless an engine already answers; wait for it.
  if docker_engine_answers; then
    echo "docker-engine: an engine already answers; using it (and leaving it running)" >&2
    DOCKER_ENGINE_OURS=no
    return 0
  fi
  # No bridge and no iptables: containers get only their own loopback (or the host's
  # network when asked), and the host's firewall is left as it was.
  dockerd --bridge=none --iptables=false --ip6tables=false >"$DOCKERD_LOG" 2>&1 &
  DOCKERD_PID=$!
  DOCKER_ENGINE_OURS=yes
  echo "$DOCKERD_PID" >"$DOCKERD_PID_FILE"
  echo "docker-engine: started dockerd, PID $DOCKERD_PID, log $DOCKERD_LOG" >&2
  local deadline=$((SECONDS + DOCKER_ENGINE_DEADLINE))
  until docker_engine_answers; do
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      echo "docker-engine: dockerd exited; last lines of its log:" >&2
      tail -n 20 "$DOCKERD_LOG" >&2
      rm -f "$DOCKERD_PID_FILE"
      return 1
    fi
    if ((SECONDS > deadline)); then
      echo "docker-engine: no answer from dockerd within ${DOCKER_ENGINE_DEADLINE} s" >&2
      tail -n 20 "$DOCKERD_LOG" >&2
      stop_docker_engine
      return 1
    fi
    sleep 0.5
  done
}

stop_docker_engine() {
  # Stop only the dockerd that start_docker_engine started (by PID), and wait for it.
  [[ "$DOCKER_ENGINE_OURS" != no ]] || return 0
  local pid="${DOCKERD_PID:-}"
  if [[ -z "$DOCKER_ENGINE_OURS" && -r "$DOCKERD_PID_FILE" ]]; then
    pid=$(<"$DOCKERD_PID_FILE")
  fi
  [[ -n "$pid" ]] || return 0
  # A PID file can outlive its process and the PID be reused: check it is dockerd.
  if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    # dockerd stops its containers and containerd first; give it time, then insist.
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "docker-engine: dockerd $pid ignored SIGTERM for 30 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "docker-engine: stopped dockerd, PID $pid" >&2
  fi
  rm -f "$DOCKERD_PID_FILE"
  DOCKERD_PID=
  DOCKER_ENGINE_OURS=
}

_debootstrap_base_image() (
  # In a subshell so its EXIT trap removes the root file system whatever happens.
  set -euo pipefail
  local rootfs
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/landing-base.XXXXXX")
  trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
  echo "docker-engine: debootstrapping Debian trixie into $rootfs (about a minute)" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    trixie "$rootfs" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
  }
  # The host's bundle may hold a CA that this network's HTTPS depends on; pip in the
  # image's build stage must trust what the host trusts (PIP_CERT points at it).
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  # Nothing in the image needs apt's package lists or caches.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["python3"]' \
    - "$BASE_IMAGE_TAG" >/dev/null
)

build_base_image() {
  # Set BASE_IMAGE to the stand-in base, building it first when the engine lacks it.
  if ! docker image inspect "$BASE_IMAGE_TAG" >/dev/null 2>&1; then
    _debootstrap_base_image
    echo "docker-engine: built $BASE_IMAGE_TAG" >&2
  fi
  # shellcheck disable=SC2034  # for the caller: export PYTHON_IMAGE="$BASE_IMAGE"
  BASE_IMAGE="$BASE_IMAGE_TAG"
}

# Run as a script (not sourced), for developers and run.sh's hints:
#   bash .ci/docker-engine.sh start       start dockerd (as above) and leave it running
#   bash .ci/docker-engine.sh base-image  build landing-base:trixie unless the engine has it
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  case "${1:-}" in
    start) start_docker_engine ;;
    base-image)
      build_base_image
      echo "docker-engine: use it with PYTHON_IMAGE=$BASE_IMAGE" >&2
      ;;
    *) sed -n '/^# Run as a script/,/^#   bash .ci.*base-image/p' "$0" >&2; exit 2 ;;
  esac
fi
