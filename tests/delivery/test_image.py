"""The real Docker image on a real engine: built once, then run as Docker and operators run it.

Without an engine these tests skip with the reason; with REQUIRE_DOCKER=1 (CI) they fail
instead. Set PYTHON_IMAGE to build on a local base (CI: landing-base:trixie). Containers get
no network and are probed on their own loopback through `docker exec`.
"""
import email.utils
import json
import os
import time
import types

import pytest

from conftest import APP_FILES, wait_until
from containers import (
    BASE_IMAGE,
    Containers,
    build,
    docker,
    image_config,
    image_size,
    require_base_image,
    require_engine,
)

pytestmark = pytest.mark.slow

RUNTIME_TAG = 'landing:pytest'
TESTS_TAG = 'landing:pytest-tests'
SIZE_BUDGET = 80 * 1000 * 1000  # bytes over the base image, in Docker's MB
HEALTHY_DEADLINE = 10
STOP_DEADLINE = 3
SUITE_TIMEOUT = 600
HARDENED = ('--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges')


@pytest.fixture(scope='session')
def images():
    """Build the test target, then the runtime image, once per session (cached layers)."""
    require_engine()
    require_base_image()
    # Two builds, one set of layers: the stages they share are built once.
    build(TESTS_TAG, target='test')
    build(RUNTIME_TAG)
    return types.SimpleNamespace(runtime=RUNTIME_TAG, tests=TESTS_TAG)


@pytest.fixture
def containers(images):
    """Start containers for one test; remove them all when it ends, failed or not."""
    started = Containers()
    try:
        yield started
    finally:
        started.remove_all()


@pytest.fixture(scope='module')
def serving(images):
    """One runtime container, as `docker run` starts it, shared by the read-only tests."""
    started = Containers()
    try:
        yield started.start(images.runtime)
    finally:
        started.remove_all()


def python_in(containers, image, code):
    """Run `python -c code` in a fresh container of `image`; return what it prints, as JSON."""
    result = containers.run(image, 'python', '-c', code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---- The image as built -------------------------------------------------------------------

def test_image_adds_at_most_80_mb_to_its_base(images):
    """The runtime image is its base plus at most 80 MB: the venv and the app, nothing else."""
    added = image_size(images.runtime) - image_size(BASE_IMAGE)
    assert added <= SIZE_BUDGET, f'{added / 1e6:.1f} MB over {BASE_IMAGE}'


def test_image_runs_python_landing_py_as_uid_10001_on_port_80_with_a_healthcheck(images):
    """Exec-form CMD, non-root UID 10001, EXPOSE 80 and 9464, HEALTHCHECK with healthcheck.py."""
    config = image_config(images.runtime)
    assert config['User'].split(':')[0] == '10001'
    assert config['Cmd'] == ['python', 'landing.py']
    assert not config.get('Entrypoint')
    assert sorted(config['ExposedPorts']) == ['80/tcp', '9464/tcp']
    assert config['Healthcheck']['Test'] == ['CMD', 'python', 'healthcheck.py']
    assert {'PYTHONUNBUFFERED=1', 'PYTHONDONTWRITEBYTECODE=1'} <= set(config['Env'])


def test_runtime_image_holds_the_app_and_its_venv_but_no_test_tools_or_pip(containers, images):
    """The runtime stage carries only the app files and the pinned venv: no tests, no pip."""
    files, modules = python_in(containers, images.runtime, (
        'import importlib.util as u, json, os;'
        'print(json.dumps([sorted(os.listdir(".")),'
        '[m for m in ("cherrypy", "pytest", "coverage", "pip") if u.find_spec(m)]]))'))
    # __pycache__: the app's bytecode, compiled at build time (the server may not write it).
    assert files == sorted([*APP_FILES, '__pycache__'])
    assert modules == ['cherrypy']


def test_runtime_image_carries_the_apps_bytecode_up_to_date(containers, images):
    """Every module of the app has bytecode in the image that its source still matches."""
    # A .pyc's bytes 8-16: the source's mtime and size when compiled; Python recompiles (here,
    # at every start: it may not write) when they differ.
    stale = python_in(containers, images.runtime, (
        'import glob, importlib.util, json, os\n'
        'def fresh(path):\n'
        '    cached, stat = importlib.util.cache_from_source(path), os.stat(path)\n'
        '    numbers = (int(stat.st_mtime), stat.st_size)\n'
        '    stamp = b"".join(number.to_bytes(4, "little") for number in numbers)\n'
        '    return os.path.exists(cached) and open(cached, "rb").read(16)[8:] == stamp\n'
        'print(json.dumps([path for path in glob.glob("*.py") + glob.glob("serving/*.py")\n'
        '                  if not fresh(path)]))'))
    assert stale == []


def test_build_context_leaves_out_git_venv_caches_and_test_output(containers, images):
    """.dockerignore keeps history, local venvs, caches and coverage data out of the image."""
    names = set(python_in(containers, images.tests, (
        'import json, os;'
        'print(json.dumps([n for _, dirs, files in os.walk(".") for n in dirs + files]))')))
    unwanted = {'.git', '.venv', '__pycache__', '.pytest_cache', '.hypothesis', 'htmlcov',
                'test-output', '.coverage'}
    assert names & unwanted == set()
    assert [name for name in names if name.startswith('.coverage.')] == []
    assert {'landing.py', 'test.sh', 'tests', 'pyproject.toml'} <= names
    # The tests of the site and of the server's contract; the host's own stay out.
    assert {'site', 'contract'} <= names
    assert names & {'server', 'delivery'} == set()


# ---- A container of it, as `docker run` starts it -----------------------------------------

def test_container_becomes_healthy_within_10_s(serving):
    """Docker's own HEALTHCHECK reports healthy within 10 s of `docker run`."""
    seconds = serving.wait_healthy(HEALTHY_DEADLINE)
    assert seconds <= HEALTHY_DEADLINE


def test_landing_page_answers_inside_the_container(serving):
    """GET / is 200 text/html in UTF-8 with the page that shows /logo.png; HEAD / is 200."""
    serving.wait_healthy(HEALTHY_DEADLINE)
    status, headers, body = serving.http('GET', '/')
    assert status == 200
    assert headers['content-type'].replace(' ', '') == 'text/html;charset=utf-8'
    assert b'src="/logo.png"' in body
    assert serving.http('HEAD', '/')[0] == 200


@pytest.mark.parametrize('path', ['/healthcheck', '/healthcheck/'])
def test_healthcheck_answers_yay_uncached_inside_the_container(serving, path):
    """Both forms of /healthcheck answer 200 Yay with Cache-Control: no-store, no redirect."""
    serving.wait_healthy(HEALTHY_DEADLINE)
    status, headers, body = serving.http('GET', path)
    assert (status, body) == (200, b'Yay')
    assert headers['cache-control'] == 'no-store'


def test_logo_is_served_with_last_modified_and_304_inside_the_container(serving):
    """/logo.png is the PNG with Last-Modified and Cache-Control; If-Modified-Since gets 304."""
    serving.wait_healthy(HEALTHY_DEADLINE)
    status, headers, body = serving.http('GET', '/logo.png')
    assert (status, headers['content-type']) == (200, 'image/png')
    assert body.startswith(b'\x89PNG\r\n\x1a\n')
    assert email.utils.parsedate_to_datetime(headers['last-modified'])
    assert headers['cache-control']
    again = serving.http('GET', '/logo.png', {'If-Modified-Since': headers['last-modified']})
    assert again[0] == 304


def test_server_is_pid_1_and_runs_as_uid_10001(serving):
    """The server itself is PID 1 (it gets docker stop's SIGTERM), with every UID 10001."""
    status = serving.exec('cat', '/proc/1/status').stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith('Uid:'))
    assert uids == ['10001'] * 4
    cmdline = serving.exec('cat', '/proc/1/cmdline').stdout
    assert cmdline.split('\0')[:2] == ['python', 'landing.py']


def test_docker_logs_show_visits_but_no_health_probes(serving):
    """`docker logs` has an access-log line for / on stdout and none for /healthcheck."""
    # Healthy means Docker's own probes of /healthcheck have run; add one of ours as well.
    serving.wait_healthy(HEALTHY_DEADLINE)
    serving.http('GET', '/healthcheck')
    marker = f'image-test-{os.getpid()}'
    serving.http('GET', '/', {'User-Agent': marker})

    def visit_logged():
        stdout = serving.logs()[0]
        return marker in stdout and stdout
    stdout = wait_until(visit_logged, deadline=5, what='access-log line for /')
    visit = [line for line in stdout.splitlines() if marker in line]
    assert len(visit) == 1
    assert '"GET / HTTP/1.1" 200' in visit[0]
    assert 'healthcheck' not in stdout


# ---- Containers run as operators and orchestrators run them -------------------------------

def test_docker_stop_returns_within_3_s_with_exit_code_0(containers, images):
    """Docker stop's SIGTERM reaches the server, which shuts down gracefully and exits 0."""
    container = containers.start(images.runtime)
    container.wait_healthy(HEALTHY_DEADLINE)
    started = time.monotonic()
    docker('stop', container.name)
    seconds = time.monotonic() - started
    assert seconds < STOP_DEADLINE
    state = container.state()
    assert (state['Running'], state['ExitCode'], state['OOMKilled']) == (False, 0, False)


def test_container_is_healthy_read_only_without_capabilities_or_privilege_gain(containers,
                                                                               images):
    """Healthy and serving under --read-only --cap-drop ALL --security-opt no-new-privileges."""
    container = containers.start(images.runtime, *HARDENED)
    container.wait_healthy(HEALTHY_DEADLINE)
    assert container.http('GET', '/')[0] == 200
    assert container.http('GET', '/logo.png')[0] == 200
    health = container.state()['Health']
    assert health['FailingStreak'] == 0
    assert health['Log'][-1]['ExitCode'] == 0


def test_suite_passes_inside_the_image(containers, images):
    """The fast tests pass in the test target: the runtime venv and user, plus the test tools."""
    result = containers.run(images.tests, timeout=SUITE_TIMEOUT)
    assert result.returncode == 0, f'{result.stdout[-4000:]}\n{result.stderr[-2000:]}'
    assert ' passed' in result.stdout

