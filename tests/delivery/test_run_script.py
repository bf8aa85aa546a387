"""run.sh: usage, its Docker steps in order, what it says when something is missing, --dev.

Most tests put a stand-in `docker` first on PATH that records its calls and answers as the
test sets it up, so they run anywhere in a second; the last ones run run.sh against the real
engine the way CI can (no TTY), and skip without an engine unless REQUIRE_DOCKER=1.
"""
import contextlib
import fcntl
import hashlib
import os
import pty
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
import uuid

import pytest

from conftest import ROOT, children, free_port, landing, request, wait_until
from containers import (
    Container,
    copy_checkout,
    docker,
    edit_page,
    has_bridge_network,
    require_base_image,
    require_engine,
)

RUN_SH = os.path.join(ROOT, 'run.sh')
USAGE = 'usage: ./run.sh [--local] [--dev] [--no-tests] [-h]'
LABEL = 'org.landing.run-sh=1'
HARDENED = ['--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges']
TEST_ID = 'sha256:' + 'ab' * 32
HEALTHY_DEADLINE = 10
# A cold build, the contract tests inside the image, then the start: about 30 s here.
SERVING_DEADLINE = 600
# The targets: a warm re-run serves within 15 s, an edit is live within ~2 s.
WARM_DEADLINE = 15
LIVE_DEADLINE = 5

FAKE_DOCKER = r"""#!/usr/bin/env bash
# Stand-in for the docker CLI: records each call, answers as the test configured it.
printf '%q ' "$@" >>"$FAKE_DOCKER_CALLS"; echo >>"$FAKE_DOCKER_CALLS"
case "$1 ${2:-}" in
  "info "*)
    # FAKE_DOCKER_INFO_ERROR: what the real CLI says on failing (no engine, no permission).
    [[ "${FAKE_DOCKER_INFO:-0}" == 0 ]] || echo "${FAKE_DOCKER_INFO_ERROR:-}" >&2
    exit "${FAKE_DOCKER_INFO:-0}" ;;
  "image inspect")
    # With --format: the test image's ID; without: whether the base image is local.
    if [[ "$3" == --format ]]; then echo "${FAKE_DOCKER_TEST_ID}"; exit 0; fi
    exit "${FAKE_DOCKER_BASE:-0}" ;;
  "pull "*) exit "${FAKE_DOCKER_PULL:-1}" ;;
  "network inspect") exit "${FAKE_DOCKER_BRIDGE:-0}" ;;
  "container inspect")
    # FAKE_DOCKER_RUNNING="name=url ...": containers running, with the address they serve.
    if [[ "$4" == *org.landing.url* ]]; then
      for entry in ${FAKE_DOCKER_RUNNING:-}; do
        if [[ "${entry%%=*}" == "${*: -1}" ]]; then echo "running ${entry#*=}"; exit 0; fi
      done
    fi
    # FAKE_DOCKER_CONTAINERS="name=label-value ...": the containers that exist, and their label.
    for entry in ${FAKE_DOCKER_CONTAINERS:-}; do
      if [[ "${entry%%=*}" == "${*: -1}" ]]; then echo "${entry#*=}"; exit 0; fi
    done
    exit 1 ;;
  "run "*)
    [[ " $* " == *" --network none "* ]] && exit "${FAKE_DOCKER_SUITE:-0}"
    exit "${FAKE_DOCKER_SERVE:-0}" ;;
esac
exit 0
"""
# What run.sh reads from the environment: a test sets each one it needs, never inherits it.
RUN_SH_VARIABLES = ('PORT', 'PYTHON_IMAGE', 'LANDING_IMAGE', 'LANDING_CONTAINER', 'IMAGE',
                    'CONTAINER_NAME', 'XDG_CACHE_HOME')


def script_env(**overrides):
    """Return os.environ without coverage's subprocess hook and run.sh's variables, + overrides."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith('COVERAGE_PROCESS') and key not in RUN_SH_VARIABLES}
    env.update(overrides)
    return env


class FakeDocker:
    """A recording stand-in for the docker CLI, first on PATH for the scripts a test runs."""

    def __init__(self, folder):
        self.bin = folder / 'bin'
        self.bin.mkdir()
        self.cache = folder / 'cache'
        self.calls_path = folder / 'docker-calls'
        self.calls_path.touch()
        (self.bin / 'docker').write_text(FAKE_DOCKER)
        (self.bin / 'docker').chmod(0o755)

    def env(self, **overrides):
        """Return an environment in which `docker` is this stand-in (and the cache is private)."""
        return script_env(**{'PATH': f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                             'FAKE_DOCKER_CALLS': str(self.calls_path),
                             'FAKE_DOCKER_TEST_ID': TEST_ID, 'XDG_CACHE_HOME': str(self.cache),
                             **overrides})

    def calls(self, *commands):
        """Return the recorded calls (only those of `commands`, if given) as argument lists."""
        calls = [shlex.split(line) for line in self.calls_path.read_text().splitlines()]
        return [call for call in calls if not commands or call[0] in commands]

    def forget(self):
        """Drop the calls recorded so far (between two runs of run.sh)."""
        self.calls_path.write_text('')


@pytest.fixture
def fake_docker(tmp_path):
    """A recording stand-in for `docker` (it needs no clean-up beyond tmp_path)."""
    return FakeDocker(tmp_path)


@pytest.fixture
def processes():
    """Collect the run.sh processes a test starts; end any still running, by PID, at the end.

    Its children go first: run.sh --local starts the server in a process group of its own,
    which would outlive run.sh when a test fails before stopping it.
    """
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            for child in children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)
            proc.kill()
            proc.wait()


# What a shell started with `nohup` or `&` hands its children ignored; a terminal's session
# starts with all four at their defaults, and run.sh can only trap a signal that is not ignored.
TERMINAL_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)


def as_in_a_terminal_session():
    """In the child: the signals a terminal sends back at their defaults, whatever ran pytest."""
    for number in TERMINAL_SIGNALS:
        signal.signal(number, signal.SIG_DFL)


def run_script(args, env, timeout=30):
    """Run run.sh with `args` to the end, without a TTY; return the CompletedProcess."""
    return subprocess.run([RUN_SH, *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def said(result):
    """Return the lines run.sh itself wrote to stderr (not docker's or the server's)."""
    return [line for line in result.stderr.splitlines() if line.startswith('run.sh: ')]


def build(target, tag, *build_arg):
    """Return the `docker build` call run.sh makes for `target`, tagged `tag`."""
    return ['build', '--network', 'host', '--force-rm', *build_arg, '--target', target,
            '--tag', tag, '.']


def serve(name, image, *network):
    """Return the `docker run` call that serves `image` as container `name`, hardened.

    Docker restarts it after a crash; it is labelled with the address it serves.
    """
    host_port = network[1].split(':')[0] if network[0] == '--publish' else network[3][5:]
    return ['run', '--restart', 'on-failure', '--name', name, '--label', LABEL, '--label',
            f'org.landing.url=http://localhost:{host_port}/', '--sig-proxy=false', *HARDENED,
            *network, image]


def contract_tests(name, image):
    """Return the `docker run` call that runs the contract tests in `image`, without a network."""
    return ['run', '--rm', '--name', name, '--label', LABEL, '--network', 'none', image]


# ---- Usage ---------------------------------------------------------------------------------

@pytest.mark.parametrize('flag', ['-h', '--help'])
def test_help_prints_the_usage_line_flags_and_variables_and_exits_0(flag):
    """-h and --help print the usage line, every flag and every variable, then exit 0."""
    result = run_script([flag], script_env())
    assert result.returncode == 0
    assert USAGE in result.stdout
    for word in ('--local', '--dev', '--no-tests', 'PORT', 'PYTHON_IMAGE', 'LANDING_IMAGE',
                 'LANDING_CONTAINER'):
        assert word in result.stdout


def test_unknown_argument_prints_usage_and_exits_2(fake_docker):
    """An unknown argument is named, the usage follows on stderr, and nothing runs."""
    result = run_script(['--bogus'], fake_docker.env())
    assert result.returncode == 2
    assert 'unknown argument: --bogus' in result.stderr
    assert USAGE in result.stderr
    assert fake_docker.calls() == []


# ---- The Docker steps, in order (stand-in docker) -------------------------------------------

def test_builds_runs_the_contract_tests_in_the_image_then_serves_it_hardened(fake_docker):
    """Build the test target and the runtime, the tests without a network, then serve on PORT."""
    env = fake_docker.env(PORT='8123', PYTHON_IMAGE='example/base:1', LANDING_IMAGE='shop',
                          LANDING_CONTAINER='shop-web')
    result = run_script([], env)
    assert result.returncode == 0, result.stderr
    base = ['--build-arg', 'PYTHON_IMAGE=example/base:1']
    assert fake_docker.calls('build', 'run', 'rm', 'pull') == [
        build('test', 'shop-tests', *base),
        build('runtime', 'shop', *base),
        contract_tests('shop-web-tests', 'shop-tests'),
        serve('shop-web', 'shop', '--publish', '8123:80'),
    ]
    # The base image was found locally, before any build.
    assert fake_docker.calls()[1] == ['image', 'inspect', 'example/base:1']


def test_defaults_build_on_the_dockerfile_base_and_publish_port_80(fake_docker):
    """Without variables: the Dockerfile's base (no --build-arg), landing, port 80."""
    assert run_script([], fake_docker.env()).returncode == 0
    assert ['image', 'inspect', 'python:3.13-slim'] in fake_docker.calls()
    assert fake_docker.calls('build', 'run') == [
        build('test', 'landing-tests'),
        build('runtime', 'landing'),
        contract_tests('landing-tests', 'landing-tests'),
        serve('landing', 'landing', '--publish', '80:80'),
    ]


def test_old_image_and_container_name_variables_are_not_read(fake_docker):
    """IMAGE and CONTAINER_NAME are too generic to mean this app: run.sh ignores them."""
    env = fake_docker.env(IMAGE='someone-elses', CONTAINER_NAME='someone-elses')
    assert run_script([], env).returncode == 0
    assert 'someone-elses' not in fake_docker.calls_path.read_text()


def test_contract_tests_run_once_per_test_image(fake_docker):
    """A test image ID that passed is not tested again; a new one (an edit) is."""
    assert run_script([], fake_docker.env()).returncode == 0
    fake_docker.forget()
    again = run_script([], fake_docker.env())
    assert again.returncode == 0
    assert [call for call in fake_docker.calls('run') if '--network' in call] == []
    assert 'contract tests already passed' in again.stderr
    fake_docker.forget()
    edited = run_script([], fake_docker.env(FAKE_DOCKER_TEST_ID='sha256:' + 'cd' * 32))
    assert edited.returncode == 0
    assert contract_tests('landing-tests', 'landing-tests') in fake_docker.calls('run')


def test_a_cache_it_cannot_write_only_means_the_tests_run_again(fake_docker, tmp_path):
    """The pass is noted where it can be; if not, run.sh says so and serves all the same."""
    not_a_folder = tmp_path / 'cache-file'
    not_a_folder.write_text('')
    result = run_script([], fake_docker.env(XDG_CACHE_HOME=str(not_a_folder)))
    assert result.returncode == 0
    assert 'the tests will run again next time' in result.stderr
    assert fake_docker.calls('run')[-1] == serve('landing', 'landing', '--publish', '80:80')


def test_failing_contract_tests_stop_before_serving_and_run_again_next_time(fake_docker):
    """When the tests fail inside the image, run.sh exits 1, never serves, and notes no pass."""
    result = run_script([], fake_docker.env(FAKE_DOCKER_SUITE='1'))
    assert result.returncode == 1
    assert said(result)[-1] == ('run.sh: the contract tests failed inside the image; '
                                'not starting landing')
    assert fake_docker.calls('run') == [contract_tests('landing-tests', 'landing-tests')]
    fake_docker.forget()
    assert run_script([], fake_docker.env()).returncode == 0
    assert fake_docker.calls('run')[0] == contract_tests('landing-tests', 'landing-tests')


def test_no_tests_builds_and_serves_the_runtime_target_only(fake_docker):
    """--no-tests: one build of the runtime target, no test container, then serve."""
    assert run_script(['--no-tests'], fake_docker.env()).returncode == 0
    assert fake_docker.calls('build', 'run') == [
        build('runtime', 'landing'),
        serve('landing', 'landing', '--publish', '80:80'),
    ]


def test_dev_mounts_the_source_read_only_over_app_with_reload(fake_docker, tmp_path):
    """--dev: the runtime image serves the source folder (read-only) with RELOAD=1; no tests."""
    # A copy readable by others, as a checkout is: this one may sit in a private folder.
    source = copy_checkout(tmp_path / 'source')
    result = subprocess.run([source / 'run.sh', '--dev'], env=fake_docker.env(PORT='8124'),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert result.returncode == 0, result.stderr
    mount = f'type=bind,source={source},target=/app,readonly'
    assert fake_docker.calls('build', 'run') == [
        build('runtime', 'landing'),
        serve('landing', 'landing', '--publish', '8124:80', '--mount', mount, '--env',
              'RELOAD=1'),
    ]
    assert 'no tests in the image' in result.stderr


@pytest.mark.parametrize('port, expected', [(None, '8080'), ('9001', '9001')],
                         ids=['default-8080', 'PORT'])
def test_engine_without_a_bridge_serves_on_the_host_network_on_port(fake_docker, port,
                                                                     expected):
    """No bridge network: the container shares the host's network and listens on PORT itself.

    (--publish would be ignored on such an engine: "serving", and nothing would answer.)
    Its metrics stay off, as unpublished as on a bridge, and off the host's port 9464.
    """
    env = fake_docker.env(FAKE_DOCKER_BRIDGE='1', **({'PORT': port} if port else {}))
    result = run_script(['--no-tests'], env)
    assert result.returncode == 0, result.stderr
    assert fake_docker.calls('run') == [
        serve('landing', 'landing', '--network', 'host', '--env', f'PORT={expected}', '--env',
              'METRICS_PORT=0')]
    assert said(result)[0] == ('run.sh: this engine has no bridge network: the container uses '
                               f"the host's network, on PORT={expected}")


def test_base_image_neither_local_nor_pullable_says_set_python_image_in_one_line(fake_docker):
    """No base image and no registry: one line naming the image and PYTHON_IMAGE; no build."""
    result = run_script([], fake_docker.env(FAKE_DOCKER_BASE='1', FAKE_DOCKER_PULL='1'))
    assert result.returncode == 1
    assert said(result) == [
        'run.sh: base image python:3.13-slim is neither local nor pullable: set PYTHON_IMAGE '
        'to a local Debian image with python3 and venv (bash .ci/docker-engine.sh base-image '
        'builds landing-base:trixie)']
    assert result.stderr.count('\n') == 1
    assert fake_docker.calls('pull', 'build', 'run') == [['pull', 'python:3.13-slim']]


def test_base_image_missing_locally_is_pulled_first(fake_docker):
    """A base image the engine lacks is pulled, then the build goes on."""
    env = fake_docker.env(FAKE_DOCKER_BASE='1', FAKE_DOCKER_PULL='0')
    assert run_script(['--no-tests'], env).returncode == 0
    assert fake_docker.calls('pull', 'build')[:2] == [['pull', 'python:3.13-slim'],
                                                      build('runtime', 'landing')]


def test_removes_its_own_previous_containers_before_starting_new_ones(fake_docker):
    """Containers left by an earlier run.sh (they carry its label) are removed by name."""
    env = fake_docker.env(FAKE_DOCKER_CONTAINERS='landing=1 landing-tests=1')
    assert run_script([], env).returncode == 0
    assert fake_docker.calls('rm', 'run') == [
        ['rm', '--force', 'landing-tests'],
        contract_tests('landing-tests', 'landing-tests'),
        ['rm', '--force', 'landing'],
        serve('landing', 'landing', '--publish', '80:80'),
        # Once the server has stopped for good (no --rm: Docker may restart it).
        ['rm', '--force', 'landing'],
    ]


@pytest.mark.parametrize('existing', ['landing=', 'landing-tests=', 'landing=0'])
def test_never_removes_a_container_it_did_not_start(fake_docker, existing):
    """A container with run.sh's name but not its label is left alone: run.sh says so, exits 1."""
    result = run_script([], fake_docker.env(FAKE_DOCKER_CONTAINERS=existing))
    name = existing.split('=')[0]
    assert result.returncode == 1
    assert said(result)[-1] == (f'run.sh: a container named {name} exists that run.sh did not '
                                'start; set LANDING_CONTAINER to another name, or remove it '
                                'yourself')
    assert fake_docker.calls('rm') == []
    assert serve('landing', 'landing', '--publish', '80:80') not in fake_docker.calls('run')


@pytest.mark.parametrize('name', ['landing', 'landing-tests'])
def test_a_second_run_leaves_the_first_ones_running_container_alone(fake_docker, name):
    """A container of run.sh's still running: one line saying where; no build, no removal."""
    env = fake_docker.env(FAKE_DOCKER_CONTAINERS=f'{name}=1',
                          FAKE_DOCKER_RUNNING=f'{name}=http://localhost:8125/')
    result = run_script([], env)
    assert result.returncode == 1
    assert said(result) == [
        f'run.sh: {name} is already running, serving http://localhost:8125/ (another ./run.sh '
        f'started it): stop it there with Ctrl-C (or docker stop {name}), or set '
        'LANDING_CONTAINER and PORT to run a second one']
    assert fake_docker.calls('build', 'rm', 'run', 'stop') == []


@pytest.fixture
def taken_port():
    """A loopback port something else listens on, as another server would."""
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_port_already_taken_is_said_before_building(fake_docker, taken_port):
    """Something listens on PORT already: one line saying so, and nothing is built or run."""
    result = run_script([], fake_docker.env(PORT=str(taken_port)))
    assert result.returncode == 1
    assert said(result) == [f'run.sh: something already listens on port {taken_port} (another '
                            './run.sh?): set PORT to a free port']
    assert fake_docker.calls('build', 'run') == []


def test_a_server_that_never_answers_is_never_said_to_be_serving(fake_docker):
    """`docker run` fails (a port taken meanwhile, say): no "serving" line, its status is kept."""
    result = run_script(['--no-tests'], fake_docker.env(PORT=str(free_port()),
                                                        FAKE_DOCKER_SERVE='125'))
    assert result.returncode == 125
    assert not [line for line in said(result) if 'serving' in line]


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
    assert '--tty' in fake_docker.calls('run')[-1]


# ---- Without Docker: the same app from a local .venv ----------------------------------------

@pytest.fixture
def app_copy(tmp_path):
    """A copy of the app and run.sh whose .venv is ready (it runs this Python): no pip needed."""
    app = tmp_path / 'app'
    app.mkdir()
    for name in os.listdir(ROOT):
        folders = ('serving', 'static', '.ci')
        if name.endswith(('.py', '.conf', '.sh')) or name in ('requirements.txt', *folders):
            copy = shutil.copytree if name in folders else shutil.copy2
            copy(os.path.join(ROOT, name), app / name)
    venv_bin = app / '.venv' / 'bin'
    venv_bin.mkdir(parents=True)
    (venv_bin / 'python').write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    (venv_bin / 'python').chmod(0o755)
    # The stamp run.sh and test.sh keep after installing requirements.txt: nothing to install.
    digest = hashlib.sha256((app / 'requirements.txt').read_bytes()).hexdigest()
    (app / '.venv' / 'requirements.stamp').write_text(f'{digest}  requirements.txt\n')
    return app


def start_script(script, args, env, processes, log):
    """Start `script` with `args` in its own session, output to `log`; return the process."""
    with open(log, 'w') as out:
        proc = subprocess.Popen([script, *args], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=as_in_a_terminal_session)
    processes.append(proc)
    return proc


def wait_answering(proc, log, answers, deadline):
    """Poll `answers()` until true while `proc` runs; return the seconds it took."""
    started = time.monotonic()

    def serving():
        assert proc.poll() is None, log.read_text()[-4000:]
        return answers()
    wait_until(serving, deadline=deadline, what='run.sh serving')
    return time.monotonic() - started


def run_script_in(app, args, env):
    """Run `app`'s run.sh with `args` to the end, without a TTY; return the CompletedProcess."""
    return subprocess.run([app / 'run.sh', *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)


SERVING = re.compile(r'^run\.sh: serving http://127\.0\.0\.1:(\d+)/', re.MULTILINE)
PERMISSION_DENIED = ('permission denied while trying to connect to the Docker daemon socket at '
                     'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.24/'
                     'info": dial unix /var/run/docker.sock: connect: permission denied')


def wait_said_serving(proc, log, port):
    """Wait for run.sh's "serving" line; the server must answer the moment it is printed."""
    wait_answering(proc, log, lambda: SERVING.search(log.read_text()), deadline=30)
    assert SERVING.search(log.read_text()).group(1) == str(port)
    assert request(port, 'GET', '/healthcheck', timeout=2)[0] == 200


@pytest.mark.parametrize('args, info, error, message', [
    (['--local'], '0', '', '--local: running without Docker'),
    ([], '1', 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.',
     'no Docker engine answers (docker info failed); running locally instead'),
    ([], '1', PERMISSION_DENIED,
     'Docker refuses you: permission denied on its socket (join the docker group: sudo usermod '
     '-aG docker "$USER", then log in again); running locally instead'),
], ids=['--local', 'no-engine', 'no-permission'])
def test_serves_the_app_from_local_venv_on_loopback(app_copy, fake_docker, processes, tmp_path,
                                                     args, info, error, message):
    """--local, or no engine (or no right to it): says so, serves on 127.0.0.1:PORT, SIGTERM 0.

    "serving" is said once the server answers, not before.
    """
    port = free_port()
    log = tmp_path / 'run.log'
    env = fake_docker.env(PORT=str(port), FAKE_DOCKER_INFO=info, FAKE_DOCKER_INFO_ERROR=error)
    proc = start_script(app_copy / 'run.sh', args, env, processes, log)
    wait_said_serving(proc, log, port)
    assert request(port, 'GET', '/')[2] == landing.PAGE.encode()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    output = log.read_text()
    assert f'run.sh: {message}' in output.splitlines()
    assert f'host=127.0.0.1 port={port}' in output
    assert 'reload=on' not in output
    assert fake_docker.calls() == ([] if args else [['info']])


def test_two_local_servers_on_different_ports_both_serve(app_copy, fake_docker, processes,
                                                         tmp_path):
    """Two --local on their own PORTs start side by side: metrics are off unless asked for."""
    ports = [free_port(), free_port()]
    runs = []
    for port in ports:
        log = tmp_path / f'run-{port}.log'
        proc = start_script(app_copy / 'run.sh', ['--local'], fake_docker.env(PORT=str(port)),
                            processes, log)
        runs.append((proc, log, port))
    for proc, log, port in runs:
        wait_said_serving(proc, log, port)
    for proc, _, port in runs:
        assert request(port, 'GET', '/healthcheck')[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_a_second_local_run_on_the_same_port_leaves_the_first_serving(
        app_copy, fake_docker, processes, tmp_path):
    """A second --local on the first one's PORT: one line, exit 1; the first keeps serving."""
    port = free_port()
    log = tmp_path / 'first.log'
    first = start_script(app_copy / 'run.sh', ['--local'], fake_docker.env(PORT=str(port)),
                         processes, log)
    wait_said_serving(first, log, port)
    second = run_script_in(app_copy, ['--local'], fake_docker.env(PORT=str(port)))
    assert second.returncode == 1
    assert said(second)[-1] == (f'run.sh: something already listens on port {port} (another '
                                './run.sh?): set PORT to a free port')
    assert first.poll() is None
    assert request(port, 'GET', '/healthcheck')[0] == 200
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=15) == 0


def server_pid(log):
    """Return granian's main PID, as the server's start-up lines in `log` name it."""
    return int(re.search(r'Starting granian \(main PID: (\d+)\)', log.read_text()).group(1))


def test_closing_the_terminal_stops_the_local_server(app_copy, fake_docker, processes, tmp_path):
    """A hang-up to run.sh's process group (the terminal closing) stops the server for good.

    The server alone would take SIGHUP as "reload its workers" and go on serving.
    """
    port = free_port()
    log = tmp_path / 'run.log'
    proc = start_script(app_copy / 'run.sh', ['--local'], fake_docker.env(PORT=str(port)),
                        processes, log)
    wait_said_serving(proc, log, port)
    server = server_pid(log)
    os.killpg(proc.pid, signal.SIGHUP)
    assert proc.wait(timeout=15) == 0
    wait_until(lambda: not os.path.exists(f'/proc/{server}'), deadline=5, what='server gone')
    with pytest.raises(ConnectionRefusedError):
        request(port, 'GET', '/healthcheck', timeout=2)
    assert 'ENGINE Bus EXITED' in log.read_text()


def take_terminal():
    """In the child: make stdin (a pty) the controlling terminal of its new session."""
    as_in_a_terminal_session()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.parametrize('gesture', ['ctrl-c', 'close'])
def test_in_a_terminal_ctrl_c_or_closing_it_stops_the_local_server_once(
        app_copy, fake_docker, processes, tmp_path, gesture):
    """On a real terminal: Ctrl-C, or the terminal going away, stops the server gracefully, once.

    The terminal signals run.sh's process group; the server, in a group of its own, hears
    exactly one signal from run.sh (two would stop it abruptly; a hang-up would reload it).
    """
    port = free_port()
    controller, terminal = pty.openpty()
    log = tmp_path / 'run.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen([app_copy / 'run.sh', '--local'],
                                env=fake_docker.env(PORT=str(port)), stdin=terminal,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=take_terminal)
    processes.append(proc)
    os.close(terminal)
    try:
        wait_said_serving(proc, log, port)
        server = server_pid(log)
        if gesture == 'ctrl-c':
            os.write(controller, b'\x03')
        else:
            os.close(controller)
        assert proc.wait(timeout=15) == 0
    finally:
        if gesture == 'ctrl-c':
            os.close(controller)
    wait_until(lambda: not os.path.exists(f'/proc/{server}'), deadline=5, what='server gone')
    output = log.read_text()
    assert output.count('ENGINE Bus EXITED') == 1
    assert 'Killing' not in output


def test_local_dev_serves_an_edit_to_the_page_within_2_s(app_copy, fake_docker, processes,
                                                         tmp_path):
    """--local --dev: RELOAD=1 from .venv; an edit to landing.py is live without a restart."""
    port = free_port()
    log = tmp_path / 'run.log'
    proc = start_script(app_copy / 'run.sh', ['--local', '--dev'],
                        fake_docker.env(PORT=str(port)), processes, log)
    wait_said_serving(proc, log, port)
    marker = edit_page(app_copy, 'Edited locally')
    wait_answering(proc, log, lambda: marker in request(port, 'GET', '/')[2],
                   deadline=LIVE_DEADLINE)
    assert 'reload=on' in log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert fake_docker.calls() == []


# ---- The .venv that run.sh --local and test.sh share (.ci/venv.sh) ----------------------------

NO_VENV_MODULE = ('venv: python3 cannot make a virtual environment (no venv or ensurepip '
                  'module): install python3-venv (Debian/Ubuntu: apt-get install python3-venv), '
                  'then run this again')
UNUSABLE = ("venv: .venv is unusable (its creation was cut short, or it has no pip); making it "
            'again')


@pytest.fixture
def python_without_ensurepip(tmp_path):
    """A PATH whose python3 has no ensurepip, as Debian's and Ubuntu's lack python3-venv."""
    shadow = tmp_path / 'shadow'
    (shadow / 'ensurepip').mkdir(parents=True)
    (shadow / 'ensurepip' / '__init__.py').write_text(
        'raise ModuleNotFoundError("No module named \'ensurepip\'", name="ensurepip")\n')
    folder = tmp_path / 'python-bin'
    folder.mkdir()
    base_python = os.path.realpath(sys.executable)  # this venv's interpreter, not the venv
    (folder / 'python3').write_text(
        f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(shadow))} exec {shlex.quote(base_python)} "$@"\n')
    (folder / 'python3').chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def without_venv(app):
    """Remove the copy's ready .venv: the copy is then a fresh clone's."""
    shutil.rmtree(app / '.venv')
    return app


@pytest.mark.parametrize('command', [['run.sh', '--local'], ['test.sh', '--co']],
                         ids=['run.sh', 'test.sh'])
@pytest.mark.parametrize('venv', ['none', 'without-pip'])
def test_a_python3_without_venv_is_named_in_one_line_with_the_package(
        app_copy, fake_docker, python_without_ensurepip, command, venv):
    """No ensurepip (no python3-venv): one line naming the package, exit 1, nothing else.

    A .venv left without pip by such a python3 is called unusable first, by both scripts.
    """
    without_venv(app_copy)
    if venv == 'without-pip':
        subprocess.run([os.path.realpath(sys.executable), '-m', 'venv', '--without-pip',
                        app_copy / '.venv'], check=True, timeout=60)
    result = subprocess.run([app_copy / command[0], *command[1:]],
                            env=fake_docker.env(PATH=python_without_ensurepip),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if not line.startswith('run.sh: ')]
    assert lines == ([UNUSABLE] if venv == 'without-pip' else []) + [NO_VENV_MODULE]


def ensure_venv(folder, *requirements, **popen):
    """Start .ci/venv.sh's `ensure_venv .venv REQUIREMENTS` in `folder`, in its own session."""
    script = f'source {shlex.quote(os.path.join(ROOT, ".ci", "venv.sh"))}; ensure_venv .venv "$@"'
    return subprocess.Popen(['bash', '-c', script, 'ensure_venv', *requirements], cwd=folder,
                            env=script_env(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **popen)


def test_a_venv_whose_creation_was_interrupted_is_made_again(tmp_path):
    """Ctrl-C while .venv is being created; the next run says it is unusable and remakes it."""
    (tmp_path / 'requirements.txt').write_text('')
    first = ensure_venv(tmp_path, 'requirements.txt')
    wait_until(lambda: (tmp_path / '.venv' / 'bin' / 'python').exists(), deadline=30,
               what='.venv being created')
    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    first.communicate(timeout=30)
    assert first.returncode != 0
    again = ensure_venv(tmp_path, 'requirements.txt')
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    assert stderr.splitlines()[:2] == [UNUSABLE, 'venv: creating .venv']
    pip = subprocess.run([tmp_path / '.venv' / 'bin' / 'python', '-m', 'pip', '--version'],
                         capture_output=True, timeout=60)
    assert pip.returncode == 0
    # Mended, it stays: the next run neither recreates nor reinstalls.
    third = ensure_venv(tmp_path, 'requirements.txt')
    assert third.communicate(timeout=60) == (None, '')
    assert third.returncode == 0


@pytest.mark.slow
def test_run_sh_local_remakes_a_venv_without_pip_and_serves(app_copy, fake_docker, processes,
                                                            tmp_path):
    """A .venv without pip (made where python3-venv was missing): remade, installed, served."""
    without_venv(app_copy)
    subprocess.run([os.path.realpath(sys.executable), '-m', 'venv', '--without-pip',
                    app_copy / '.venv'], check=True, timeout=60)
    port = free_port()
    log = tmp_path / 'run.log'
    proc = start_script(app_copy / 'run.sh', ['--local'], fake_docker.env(PORT=str(port)),
                        processes, log)
    wait_answering(proc, log, lambda: SERVING.search(log.read_text()), deadline=300)
    output = log.read_text().splitlines()
    assert output[1:4] == [UNUSABLE, 'venv: creating .venv',
                           'venv: installing requirements.txt into .venv']
    assert request(port, 'GET', '/')[2] == landing.PAGE.encode()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


# ---- The real thing ------------------------------------------------------------------------

@pytest.fixture
def real_run(tmp_path, processes):
    """Names for real runs of run.sh (its own image tags, container, cache); removed at the end.

    Returns the environment for run.sh: LANDING_IMAGE, LANDING_CONTAINER, XDG_CACHE_HOME, PORT.
    """
    require_engine()
    require_base_image()
    suffix = uuid.uuid4().hex[:8]
    env = {'LANDING_IMAGE': f'landing:pytest-run-{suffix}',
           'LANDING_CONTAINER': f'landing-run-{suffix}',
           'XDG_CACHE_HOME': str(tmp_path / 'cache'), 'PORT': str(free_port())}
    if 'PYTHON_IMAGE' in os.environ:
        env['PYTHON_IMAGE'] = os.environ['PYTHON_IMAGE']
    try:
        yield env
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # Only this run's containers and tags: the layers stay shared with other images.
        name = env['LANDING_CONTAINER']
        docker('rm', '--force', name, f'{name}-tests', check=False)
        docker('rmi', env['LANDING_IMAGE'], f"{env['LANDING_IMAGE']}-tests", check=False)


def serving_container(env):
    """Return the container run.sh serves from, probed where run.sh's PORT puts the server."""
    host_network = not has_bridge_network()
    return Container(env['LANDING_CONTAINER'], port=int(env['PORT']) if host_network else 80)


def container_answers(container):
    """Tell whether the container exists and its server answers GET /."""
    return container.page() is not None


def said_serving(log):
    """Tell whether run.sh has said "serving" in `log`."""
    return 'run.sh: serving' in log.read_text()


def container_pid(container):
    """Return the host's PID of the container's main process (the server)."""
    return int(docker('inspect', '--format', '{{.State.Pid}}', container.name).stdout)


@pytest.mark.slow
def test_real_run_tests_in_the_image_serves_hardened_and_a_rerun_serves_within_15_s(
        real_run, processes, tmp_path):
    """Under CI (no TTY): tests pass in the image, the container is healthy and hardened.

    "serving" is said once it answers; a second run.sh leaves it alone and says where it is;
    Docker restarts it after a crash; SIGTERM stops and removes it. Run again, the passed
    tests are skipped and it serves within 15 s; a hang-up stops and removes it.
    """
    log = tmp_path / 'run.log'
    proc = start_script(RUN_SH, [], script_env(**real_run), processes, log)
    container = serving_container(real_run)
    wait_answering(proc, log, lambda: said_serving(log), deadline=SERVING_DEADLINE)
    assert container_answers(container)
    output = log.read_text()
    assert (output.index('running the contract tests inside landing:') < output.index(' passed')
            < output.index('run.sh: serving'))

    # Docker's first health probe runs one interval (5 s) after the start.
    container = serving_container(real_run)
    container.wait_healthy(HEALTHY_DEADLINE)
    assert container.http('GET', '/')[0] == 200
    inspected = docker('inspect', '--format',
                       '{{json .Config.Tty}} {{index .Config.Labels "org.landing.run-sh"}} '
                       '{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.CapDrop}} '
                       '{{json .HostConfig.SecurityOpt}} {{.HostConfig.RestartPolicy.Name}} '
                       '{{.HostConfig.NetworkMode}}',
                       container.name).stdout.split()
    assert inspected[:6] == ['false', '1', 'true', '["ALL"]', '["no-new-privileges"]',
                             'on-failure']
    if has_bridge_network():
        bindings = docker('inspect', '--format', '{{json .HostConfig.PortBindings}}',
                          container.name).stdout
        assert f'"HostPort":"{real_run["PORT"]}"' in bindings
    else:
        # The host's network, on PORT: the server answers on the host's loopback.
        assert inspected[6] == 'host'
        assert request(int(real_run['PORT']), 'GET', '/')[0] == 200

    # A second run.sh with the same names: one line, and the first one's server is untouched.
    started = docker('inspect', '--format', '{{.Id}} {{.State.StartedAt}}', container.name).stdout
    second = run_script([], script_env(**real_run), timeout=120)
    assert second.returncode == 1
    assert said(second)[-1].startswith(
        f'run.sh: {container.name} is already running, serving http://localhost:'
        f'{real_run["PORT"]}/ (another ./run.sh started it)')
    assert docker('inspect', '--format', '{{.Id}} {{.State.StartedAt}}',
                  container.name).stdout == started
    assert proc.poll() is None

    # A crash (the kernel kills the server, as the OOM killer would): Docker starts it again.
    os.kill(container_pid(container), signal.SIGKILL)
    wait_answering(proc, log, lambda: 'Docker started it again' in log.read_text(), deadline=30)
    wait_answering(proc, log, lambda: container_answers(container), deadline=30)
    assert (f'run.sh: {container.name} exited with status 137; Docker started it again '
            '(--restart on-failure)') in log.read_text().splitlines()

    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert docker('ps', '--all', '--quiet', '--filter', f'name=^/{container.name}$').stdout == ''
    assert 'ENGINE Bus EXITED' in log.read_text()

    rerun_log = tmp_path / 'rerun.log'
    rerun = start_script(RUN_SH, [], script_env(**real_run), processes, rerun_log)
    seconds = wait_answering(rerun, rerun_log, lambda: said_serving(rerun_log),
                             deadline=WARM_DEADLINE)
    assert container_answers(container)
    assert 'contract tests already passed' in rerun_log.read_text()
    print(f'warm re-run serving after {seconds:.1f} s')
    # The terminal closing: a hang-up to run.sh's process group.
    os.killpg(rerun.pid, signal.SIGHUP)
    assert rerun.wait(timeout=30) == 129
    assert docker('ps', '--all', '--quiet', '--filter', f'name=^/{container.name}$').stdout == ''


@pytest.fixture
def source_copy(tmp_path):
    """A copy of what run.sh builds and serves, for --dev to mount and a test to edit."""
    return copy_checkout(tmp_path / 'source')


@pytest.mark.slow
def test_real_dev_container_serves_an_edit_to_the_mounted_source_within_2_s(
        real_run, source_copy, processes, tmp_path):
    """--dev in Docker: the source folder is served read-only with reload; an edit is live."""
    log = tmp_path / 'run.log'
    proc = start_script(source_copy / 'run.sh', ['--dev'], script_env(**real_run), processes,
                        log)
    container = serving_container(real_run)
    wait_answering(proc, log, lambda: said_serving(log), deadline=SERVING_DEADLINE)
    assert container_answers(container)
    mounts = docker('inspect', '--format', '{{json .Mounts}}', container.name).stdout
    assert f'"Source":"{source_copy}","Destination":"/app"' in mounts
    assert '"RW":false' in mounts

    marker = edit_page(source_copy, 'Edited in the container').decode()
    seconds = wait_answering(
        proc, log, lambda: marker in (container.page() or ''),
        deadline=LIVE_DEADLINE)
    print(f'edit live in the container after {seconds:.1f} s')
    assert 'reload=on' in log.read_text()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 143


@pytest.mark.parametrize('unreadable, args', [
    ('.', ['--dev']),
    *((name, args) for name in ('landing.py', 'shop.py', 'static/site.css', 'tests')
      for args in ([], ['--dev'])),
])
def test_refuses_a_checkout_the_containers_user_cannot_read(app_copy, fake_docker, unreadable,
                                                             args):
    """A folder or file others cannot read (umask 077): one line naming it, no build, exit 1.

    shop.py stands for a module of the user's own, which the image copies as it does landing.py.
    The checkout folder itself matters only to --dev, which mounts it.
    """
    (app_copy / 'tests').mkdir()
    (app_copy / 'shop.py').write_text('"""A module of the user\'s own."""\n')
    path = app_copy / unreadable
    path.chmod(0o700 if path.is_dir() else 0o600)
    result = subprocess.run([app_copy / 'run.sh', *args], env=fake_docker.env(),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert result.returncode == 1
    named = app_copy if unreadable == '.' else path
    assert result.stderr.splitlines() == [
        f"run.sh: the container's user (UID 10001) cannot read {named} (a checkout made under "
        f'umask 077?); run: chmod -R o+rX {app_copy}']
    assert fake_docker.calls() == [['info']]


def test_builds_from_a_checkout_folder_only_its_owner_can_enter(fake_docker, tmp_path):
    """`git clone` into `mktemp -d` gives a 0700 folder: the image copies files, so it builds."""
    source = copy_checkout(tmp_path / 'source')
    source.chmod(0o700)
    result = subprocess.run([source / 'run.sh', '--no-tests'], env=fake_docker.env(PORT='8124'),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert result.returncode == 0, result.stderr
    assert fake_docker.calls('build', 'run') == [
        build('runtime', 'landing'),
        serve('landing', 'landing', '--publish', '8124:80'),
    ]
