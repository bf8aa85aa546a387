"""Helpers for the tests of the real image: the docker CLI, image builds, running containers.

Containers run with `--network none` and are probed through `docker exec`, on their own
loopback: no test ever sends traffic to a container's private address.
"""
import ast
import base64
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import ROOT, wait_until

# The Dockerfile's default base; CI and machines without a registry pass a local one.
BASE_IMAGE = os.environ.get('PYTHON_IMAGE', 'python:3.13-slim')
BUILD_TIMEOUT = 1200

# Runs inside the container: one HTTP request to its own loopback, the answer as JSON.
PROBE = """
import base64, http.client, json, sys
method, path, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
conn = http.client.HTTPConnection('127.0.0.1', int(sys.argv[4]), timeout=5)
conn.request(method, path, headers=headers)
answer = conn.getresponse()
print(json.dumps({'status': answer.status,
                  'headers': {k.lower(): v for k, v in answer.getheaders()},
                  'body': base64.b64encode(answer.read()).decode()}))
"""

# Runs inside the container: print the body at the URL given, or fail while nothing answers.
READ_PAGE = ('import sys, urllib.request; '
             'print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())')


def docker(*args, timeout=120, check=True):
    """Run `docker ARGS`; return the CompletedProcess, failing the test if it exits non-zero."""
    result = subprocess.run(['docker', *args], capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args[:3])} ... exited {result.returncode}:\n"
            f'{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return result


def unavailable(reason):
    """Skip the test for `reason`, or fail it when REQUIRE_DOCKER=1 (CI must run it)."""
    if os.environ.get('REQUIRE_DOCKER') == '1':
        pytest.fail(f'{reason}; REQUIRE_DOCKER=1 makes that a failure', pytrace=False)
    pytest.skip(reason)


def require_engine():
    """Return the engine's version, or skip/fail (see unavailable) when none answers."""
    try:
        result = docker('info', '--format', '{{.ServerVersion}}', timeout=30, check=False)
    except FileNotFoundError:
        unavailable('no Docker engine: the docker command is not installed')
    except subprocess.TimeoutExpired:
        unavailable('no Docker engine: `docker info` did not answer within 30 s')
    if result.returncode != 0:
        unavailable(f'no Docker engine answers `docker info`: {result.stderr.strip()[-300:]}')
    return result.stdout.strip()


def require_base_image():
    """Make sure the base image is on the engine (pulling it if need be), or skip/fail."""
    if docker('image', 'inspect', BASE_IMAGE, check=False).returncode == 0:
        return
    pulled = docker('pull', BASE_IMAGE, timeout=600, check=False)
    if pulled.returncode != 0:
        unavailable(f'base image {BASE_IMAGE} is neither local nor pullable; set PYTHON_IMAGE '
                    'to a local one, e.g. landing-base:trixie from .ci/docker-engine.sh')


def build(tag, target=None):
    """Build the repository's Dockerfile (optionally one target) as `tag`; return seconds taken."""
    # --force-rm: a failed step's container is removed too, not left on the engine.
    args = ['build', '--network', 'host', '--force-rm', '--tag', tag]
    if 'PYTHON_IMAGE' in os.environ:
        args += ['--build-arg', f"PYTHON_IMAGE={os.environ['PYTHON_IMAGE']}"]
    if target:
        args += ['--target', target]
    started = time.monotonic()
    docker(*args, ROOT, timeout=BUILD_TIMEOUT)
    return time.monotonic() - started


def image_size(image):
    """Return the image's size in bytes, as the engine counts it (all layers, uncompressed)."""
    return int(docker('image', 'inspect', '--format', '{{.Size}}', image).stdout)


def image_config(image):
    """Return the image's Config block: user, command, environment, ports, health check."""
    return json.loads(docker('image', 'inspect', '--format', '{{json .Config}}', image).stdout)


def copy_checkout(destination):
    """Copy what the image is built from and run.sh serves (no tests, no history) to a folder.

    For tests that edit the app: a container mounting the copy sees the edit, the checkout
    stays as it is. Returns the copy's path.
    """
    copy = shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(
        '.git', '.venv', '__pycache__', '.*_cache', '.hypothesis', '.coverage*', 'htmlcov',
        'test-output', 'tests', 'bench', 'deploy', 'docs'))
    # copytree gives the copy the checkout's own mode, 0700 when it was cloned into
    # `mktemp -d`; the container's user (UID 10001) must be able to enter it, as in a checkout.
    os.chmod(copy, 0o755)  # noqa: S103 (readable by the container, as a checkout is)
    return copy


def edit_page(app, text):
    """Append `text` to whatever page the copy's landing.py serves; return it as bytes.

    The line goes right after the PAGE assignment, so any page the user wrote gets it.
    """
    landing_py = app / 'landing.py'
    source = landing_py.read_text()
    [assignment] = [node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                    and any(getattr(target, 'id', None) == 'PAGE' for target in node.targets)]
    lines = source.splitlines(keepends=True)
    lines.insert(assignment.end_lineno, f'PAGE += {f"<p>{text}</p>"!r}\n')
    landing_py.write_text(''.join(lines))
    return f'<p>{text}</p>'.encode()


def has_bridge_network():
    """Tell whether the engine has its default bridge (one started with --bridge=none has not).

    Without it no port can be published: run.sh then puts its container on the host's network.
    """
    return docker('network', 'inspect', 'bridge', check=False).returncode == 0


class Container:
    """One container, probed from inside through `docker exec` on its own loopback at `port`."""

    def __init__(self, name, port=80):
        self.name = name
        self.port = port
        self.started_at = time.monotonic()

    def state(self):
        """Return `docker inspect`'s State block (Running, ExitCode, Health, ...)."""
        return json.loads(docker('inspect', '--format', '{{json .State}}', self.name).stdout)

    def wait_healthy(self, deadline):
        """Poll Docker's own health status until healthy, within `deadline` s of the start."""
        def healthy():
            state = self.state()
            status = state.get('Health', {}).get('Status')
            if not state['Running'] or status in ('unhealthy', None):
                raise AssertionError(f'container {self.name} is {state}:\n{self.logs()}')
            return status == 'healthy'
        remaining = self.started_at + deadline - time.monotonic()
        wait_until(healthy, deadline=max(remaining, 0), what=f'{self.name} healthy')
        return time.monotonic() - self.started_at

    def exec(self, *command, check=True):
        """Run `command` inside the container; return the CompletedProcess."""
        return docker('exec', self.name, *command, check=check)

    def http(self, method, path, headers=None):
        """Send one request to the container's own loopback; return (status, headers, body)."""
        answer = json.loads(
            self.exec('python', '-c', PROBE, method, path, json.dumps(headers or {}),
                      str(self.port)).stdout)
        return answer['status'], answer['headers'], base64.b64decode(answer['body'])

    def page(self, path='/'):
        """Return the body of GET `path` as text, or None while nothing answers (or no container).

        For polling: unlike http(), it never fails the test.
        """
        result = self.exec('python', '-c', READ_PAGE, f'http://127.0.0.1:{self.port}{path}',
                           check=False)
        return result.stdout if result.returncode == 0 else None

    def logs(self):
        """Return (stdout, stderr) of the container so far."""
        result = docker('logs', self.name)
        return result.stdout, result.stderr


class Containers:
    """Starts detached containers without a network; removes every one of them at the end."""

    def __init__(self):
        self.names = []

    def start(self, image, *options):
        """Run `image` detached with `--network none` and `options`; return its Container."""
        # Named before `docker run`: one created but failed to start is removed too.
        name = self._new_name()
        docker('run', '--detach', '--name', name, '--network', 'none', *options, image)
        return Container(name)

    def run(self, image, *command, timeout=120):
        """Run `image` (its CMD, or `command`) to the end without a network; return the result."""
        name = self._new_name()
        result = docker('run', '--name', name, '--network', 'none', image, *command,
                        timeout=timeout, check=False)
        docker('rm', name, check=False)
        return result

    def _new_name(self):
        """Return a fresh container name, recorded first so that remove_all finds it."""
        name = f'landing-pytest-{uuid.uuid4().hex[:10]}'
        self.names.append(name)
        return name

    def remove_all(self):
        """Remove (force, by name) every container started, whatever state it is in."""
        for name in self.names:
            docker('rm', '--force', '--volumes', name, check=False)
        self.names.clear()
