"""run.sh: usage, the order of its Docker steps, the local fallback, and one real run.

Most tests put a stand-in `docker` first on PATH that records its calls, so they run anywhere
in a second; the last one runs run.sh against the real engine the way CI can (no TTY),
and skips without an engine unless REQUIRE_DOCKER=1.
"""
import hashlib
import os
import pty
import shlex
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from conftest import ROOT, free_port, request, wait_until
from containers import Container, docker, require_base_image, require_engine

RUN_SH = os.path.join(ROOT, 'run.sh')
USAGE = 'usage: ./run.sh [--local] [-h]'
HEALTHY_DEADLINE = 10
# Cached build, the whole suite inside the image, then the start: minutes on 2 cores.
SERVING_DEADLINE = 1200

FAKE_DOCKER = """#!/usr/bin/env bash
# Stand-in for the docker CLI: records each call, answers as the test configured it.
printf '%q ' "$@" >>"$FAKE_DOCKER_CALLS"; echo >>"$FAKE_DOCKER_CALLS"
case "$1" in
  info) exit "${FAKE_DOCKER_INFO:-0}" ;;
  run) [[ " $* " == *" --network none "* ]] && exit "${FAKE_DOCKER_SUITE:-0}" ;;
esac
exit 0
"""


def script_env(**overrides):
    """Return os.environ without coverage's subprocess hook, plus `overrides`."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith('COVERAGE_PROCESS')}
    env.update(overrides)
    return env


class FakeDocker:
    """A recording stand-in for the docker CLI, first on PATH for the scripts a test runs."""

    def __init__(self, folder):
        self.bin = folder / 'bin'
        self.bin.mkdir()
        self.calls_path = folder / 'docker-calls'
        self.calls_path.touch()
        (self.bin / 'docker').write_text(FAKE_DOCKER)
        (self.bin / 'docker').chmod(0o755)

    def env(self, **overrides):
        """Return an environment in which `docker` is this stand-in."""
        return script_env(PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                          FAKE_DOCKER_CALLS=str(self.calls_path), **overrides)

    def calls(self):
        """Return the recorded calls, each as its list of arguments."""
        return [shlex.split(line) for line in self.calls_path.read_text().splitlines()]


@pytest.fixture
def fake_docker(tmp_path):
    """A recording stand-in for `docker` (it needs no clean-up beyond tmp_path)."""
    return FakeDocker(tmp_path)


@pytest.fixture
def processes():
    """Collect the run.sh processes a test starts; end any still running, by PID, at the end."""
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_script(args, env, timeout=30):
    """Run run.sh with `args` to the end, without a TTY; return the CompletedProcess."""
    return subprocess.run([RUN_SH, *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


# ---- Usage ---------------------------------------------------------------------------------

@pytest.mark.parametrize('flag', ['-h', '--help'])
def test_help_prints_the_usage_line_and_exits_0(flag):
    """-h and --help print the usage line and what PORT and PYTHON_IMAGE do, then exit 0."""
    result = run_script([flag], script_env())
    assert result.returncode == 0
    assert USAGE in result.stdout
    assert 'PORT' in result.stdout
    assert 'PYTHON_IMAGE' in result.stdout


def test_unknown_argument_prints_usage_and_exits_2(fake_docker):
    """An unknown argument is named, the usage follows on stderr, and nothing runs."""
    result = run_script(['--bogus'], fake_docker.env())
    assert result.returncode == 2
    assert 'unknown argument: --bogus' in result.stderr
    assert USAGE in result.stderr
    assert fake_docker.calls() == []


# ---- The Docker steps, in order (stand-in docker) -------------------------------------------

def test_removes_old_container_builds_tests_in_the_image_then_serves_on_port(fake_docker):
    """Rm old containers, build test target and image (with PYTHON_IMAGE), suite, then serve."""
    env = fake_docker.env(PORT='8123', PYTHON_IMAGE='example/base:1', IMAGE='shop',
                          CONTAINER_NAME='shop-web')
    result = run_script([], env)
    assert result.returncode == 0, result.stderr
    base = ['--force-rm', '--build-arg', 'PYTHON_IMAGE=example/base:1']
    assert fake_docker.calls() == [
        ['info'],
        ['rm', '--force', 'shop-web', 'shop-web-tests'],
        ['build', '--network', 'host', *base, '--target', 'test', '--tag', 'shop-tests', '.'],
        ['build', '--network', 'host', *base, '--tag', 'shop', '.'],
        ['run', '--rm', '--name', 'shop-web-tests', '--network', 'none', 'shop-tests'],
        ['run', '--rm', '--name', 'shop-web', '--sig-proxy=false', '--publish', '8123:80',
         'shop'],
    ]


def test_defaults_build_on_the_dockerfile_base_and_publish_port_80(fake_docker):
    """Without PYTHON_IMAGE no --build-arg is passed; without PORT the host port is 80."""
    env = fake_docker.env()
    for name in ('PORT', 'PYTHON_IMAGE', 'IMAGE', 'CONTAINER_NAME'):
        env.pop(name, None)
    assert run_script([], env).returncode == 0
    calls = fake_docker.calls()
    assert [call for call in calls if '--build-arg' in call] == []
    assert calls[-1] == ['run', '--rm', '--name', 'landing', '--sig-proxy=false',
                         '--publish', '80:80', 'landing']


def test_failing_suite_in_the_image_stops_before_serving(fake_docker):
    """When ./test.sh fails inside the image, run.sh exits 1 and never starts the server."""
    result = run_script([], fake_docker.env(FAKE_DOCKER_SUITE='1'))
    assert result.returncode == 1
    assert 'test suite failed' in result.stderr
    assert fake_docker.calls()[-1][:2] == ['run', '--rm']
    assert '--network' in fake_docker.calls()[-1]


def test_container_gets_a_tty_only_when_run_sh_has_one(fake_docker, tmp_path):
    """On a terminal the server container gets -t (Ctrl-C, colours); under CI it does not."""
    controller, terminal = pty.openpty()
    try:
        with open(tmp_path / 'stderr', 'w') as stderr:
            code = subprocess.run([RUN_SH], env=fake_docker.env(), stdin=terminal,
                                  stdout=terminal, stderr=stderr, timeout=30).returncode
    finally:
        os.close(terminal)
        os.close(controller)
    assert code == 0
    assert '--tty' in fake_docker.calls()[-1]


# ---- Without Docker: the same app from a local .venv ----------------------------------------

@pytest.fixture
def app_copy(tmp_path):
    """A copy of the app and run.sh whose .venv is ready (it runs this Python): no pip needed."""
    app = tmp_path / 'app'
    app.mkdir()
    for name in os.listdir(ROOT):
        if name.endswith(('.py', '.conf', '.sh')) or name in ('requirements.txt', 'static', '.ci'):
            copy = shutil.copytree if name in ('static', '.ci') else shutil.copy2
            copy(os.path.join(ROOT, name), app / name)
    venv_bin = app / '.venv' / 'bin'
    venv_bin.mkdir(parents=True)
    (venv_bin / 'python').write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    (venv_bin / 'python').chmod(0o755)
    # The stamp run.sh and test.sh keep after installing requirements.txt: nothing to install.
    digest = hashlib.sha256((app / 'requirements.txt').read_bytes()).hexdigest()
    (app / '.venv' / 'requirements.stamp').write_text(f'{digest}  requirements.txt\n')
    return app


@pytest.mark.parametrize('args, info, message', [
    (['--local'], '0', '--local: running without Docker'),
    ([], '1', 'no Docker engine answers'),
], ids=['--local', 'no-engine'])
def test_serves_the_app_from_local_venv_on_loopback(app_copy, fake_docker, processes, tmp_path,
                                                     args, info, message):
    """--local, or no engine answering: says so, serves on 127.0.0.1:PORT, SIGTERM exits 0."""
    port = free_port()
    env = fake_docker.env(PORT=str(port), FAKE_DOCKER_INFO=info)
    with open(tmp_path / 'stdout', 'w') as out, open(tmp_path / 'stderr', 'w') as err:
        proc = subprocess.Popen([app_copy / 'run.sh', *args], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    processes.append(proc)

    def serving():
        assert proc.poll() is None, (tmp_path / 'stderr').read_text()
        return request(port, 'GET', '/healthcheck', timeout=2)[0] == 200
    wait_until(serving, what='run.sh serving locally')
    assert request(port, 'GET', '/')[0] == 200
    # exec: the PID run.sh started with is now the server, which stops gracefully.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    stderr = (tmp_path / 'stderr').read_text()
    assert message in stderr
    assert f'host=127.0.0.1 port={port}' in stderr
    assert fake_docker.calls() == ([] if args else [['info']])


# ---- The real thing ------------------------------------------------------------------------

@pytest.fixture
def real_run(tmp_path, processes):
    """Names for a real run.sh (its own image tags and container); removes them all at the end."""
    require_engine()
    require_base_image()
    suffix = uuid.uuid4().hex[:8]
    run = {'IMAGE': f'landing:pytest-run-{suffix}', 'CONTAINER_NAME': f'landing-run-{suffix}'}
    try:
        yield run
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        name = run['CONTAINER_NAME']
        docker('rm', '--force', name, f'{name}-tests', check=False)
        # Only these tags go; the layers stay shared with the other image tests' tags.
        docker('rmi', run['IMAGE'], f"{run['IMAGE']}-tests", check=False)


@pytest.mark.slow
def test_real_run_builds_tests_serves_without_tty_and_cleans_up_on_sigterm(real_run, processes,
                                                                           tmp_path):
    """Under CI (no TTY): suite passes in the image, container healthy, SIGTERM removes it."""
    port = free_port()
    log = tmp_path / 'run.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen([RUN_SH], env=script_env(PORT=str(port), **real_run),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    processes.append(proc)

    def started():
        assert proc.poll() is None, log.read_text()[-4000:]
        return 'run.sh: serving' in log.read_text()
    wait_until(started, deadline=SERVING_DEADLINE, what='run.sh serving')
    output = log.read_text()
    assert output.index('inside landing:') < output.index(' passed') < output.index('serving')

    container = Container(real_run['CONTAINER_NAME'])
    wait_until(lambda: docker('inspect', container.name, check=False).returncode == 0,
               what='the container')
    container.wait_healthy(HEALTHY_DEADLINE)
    assert container.http('GET', '/')[0] == 200
    config = docker('inspect', '--format', '{{json .Config.Tty}} {{json .HostConfig.PortBindings}}',
                    container.name).stdout
    assert config.split(' ', 1)[0] == 'false'
    assert f'"HostPort":"{port}"' in config
    assert '"80/tcp"' in config

    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert docker('ps', '--all', '--quiet', '--filter', f'name=^/{container.name}$').stdout == ''
    assert 'ENGINE Bus EXITED' in log.read_text()
