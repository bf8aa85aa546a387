"""The health check: what Kubernetes probes, load balancers and Docker's HEALTHCHECK rely on."""
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from unittest import mock

import cherrypy
import pytest
from cherrypy.process.wspbus import states

import healthcheck
import serving.health
from conftest import ROOT, free_port, request, wait_until

STOPPING_STATES = [states.STOPPING, states.STOPPED, states.EXITING]


@pytest.mark.parametrize('path', ['/healthcheck', '/healthcheck/'])
def test_healthcheck_answers_yay_as_uncached_plain_text_without_redirect(app_port, path):
    """Both forms answer 200 'Yay' directly, as text/plain that no cache may keep."""
    status, headers, body = request(app_port, 'GET', path)
    assert status == 200
    assert body == b'Yay'
    assert headers.get_content_type() == 'text/plain'
    assert headers['Cache-Control'] == 'no-store'
    assert 'Location' not in headers


def test_head_healthcheck_answers_200_without_body(app_port):
    """HEAD works for probes that do not want a body."""
    status, _, body = request(app_port, 'HEAD', '/healthcheck')
    assert (status, body) == (200, b'')


@pytest.mark.parametrize('accept', [
    'application/health+json',
    'text/plain;q=0.5, application/health+json',
])
def test_healthcheck_speaks_health_json_when_asked(app_port, accept):
    """Accept: application/health+json gets {"status": "pass"} in that media type."""
    status, headers, body = request(app_port, 'GET', '/healthcheck', {'Accept': accept})
    assert status == 200
    assert headers['Content-Type'] == 'application/health+json'
    assert json.loads(body) == {'status': 'pass'}


def test_health_json_refused_with_q_zero_falls_back_to_text(app_port):
    """A client that explicitly refuses health+json (q=0) gets the plain answer."""
    _, headers, body = request(
        app_port, 'GET', '/healthcheck', {'Accept': 'application/health+json;q=0'})
    assert body == b'Yay'
    assert headers.get_content_type() == 'text/plain'


@pytest.mark.parametrize('state', STOPPING_STATES)
def test_healthcheck_answers_503_shutting_down_once_the_engine_stops(in_process, state):
    """Once the engine stops, probes get 503 Shutting down so the node leaves rotation."""
    with mock.patch.object(cherrypy.engine, 'state', state):
        status, headers, body = in_process('GET', '/healthcheck')
    assert (status, body) == (503, b'Shutting down')
    assert headers['Cache-Control'] == 'no-store'


@pytest.mark.parametrize('state', [states.STOPPED, states.STARTING])
def test_healthcheck_answers_503_starting_before_the_engine_first_starts(in_process, state):
    """Before the server first serves, probes get 503 Starting (not yet ready, not leaving)."""
    with mock.patch.object(cherrypy.engine, 'state', state), \
            mock.patch.object(serving.health, 'started', threading.Event()):
        status, _, body = in_process('GET', '/healthcheck')
    assert (status, body) == (503, b'Starting')


def test_healthcheck_answers_503_shutting_down_while_draining(in_process):
    """While draining (after SIGTERM, DRAIN_SECONDS), probes fail and answers close."""
    serving.health.draining.value = 1
    try:
        status, headers, body = in_process('GET', '/healthcheck')
    finally:
        serving.health.draining.value = 0
    assert (status, body) == (503, b'Shutting down')
    assert headers['Connection'] == 'close'


@pytest.mark.parametrize('state', [states.STARTING, states.STOPPING])
def test_health_json_says_fail_with_503_while_not_serving(in_process, state):
    """The JSON form reports fail, with 503, while starting and while stopping."""
    with mock.patch.object(cherrypy.engine, 'state', state):
        status, headers, body = in_process(
            'GET', '/healthcheck', {'Accept': 'application/health+json'})
    assert status == 503
    assert headers['Content-Type'] == 'application/health+json'
    assert json.loads(body) == {'status': 'fail'}


def test_default_probe_url_follows_port():
    """The probe targets the local server on PORT, 80 when unset."""
    assert healthcheck.default_url({}) == 'http://127.0.0.1:80/healthcheck'
    assert healthcheck.default_url({'PORT': '8080'}) == 'http://127.0.0.1:8080/healthcheck'


def test_probe_passes_on_a_healthy_server(app_port):
    """probe() returns 0 when the URL answers 200."""
    assert healthcheck.probe(f'http://127.0.0.1:{app_port}/healthcheck') == 0


def test_probe_fails_on_503(start_server):
    """probe() returns 1 when the server says it is shutting down (draining after SIGTERM)."""
    draining = start_server(env={'DRAIN_SECONDS': '30'}).wait_ready()
    draining.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: request(draining.port, 'GET', '/healthcheck')[0] == 503,
               what='health check failing while draining')
    assert healthcheck.probe(f'http://127.0.0.1:{draining.port}/healthcheck') == 1


def test_probe_fails_on_a_404(app_port):
    """probe() returns 1 for any answer other than 200."""
    assert healthcheck.probe(f'http://127.0.0.1:{app_port}/no-such-page') == 1


def test_probe_fails_when_nothing_listens():
    """probe() returns 1 when the connection is refused."""
    assert healthcheck.probe(f'http://127.0.0.1:{free_port()}/healthcheck') == 1


def test_probe_fails_on_a_malformed_url():
    """probe() returns 1, not a traceback, for a URL it cannot use."""
    assert healthcheck.probe('not a url') == 1


@pytest.fixture
def silent_listener():
    """A loopback socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_probe_gives_up_after_its_timeout(silent_listener):
    """A server that accepts but never answers fails the probe once the timeout passes."""
    started = time.monotonic()
    assert healthcheck.probe(f'http://127.0.0.1:{silent_listener}/', timeout=0.5) == 1
    assert 0.5 <= time.monotonic() - started < 5


def run_probe_script(*args, env=None):
    """Run `python healthcheck.py ARGS` as Docker's HEALTHCHECK would."""
    return subprocess.run(
        [sys.executable, f'{ROOT}/healthcheck.py', *args], capture_output=True,
        text=True, timeout=30, env=env)


def test_probe_script_exits_0_against_a_healthy_server(app_port):
    """`python healthcheck.py URL` exits 0 when the URL answers 200."""
    done = run_probe_script(f'http://127.0.0.1:{app_port}/healthcheck')
    assert done.returncode == 0, done.stderr


def test_probe_script_defaults_to_the_local_server_on_port(app_port):
    """With no URL, the script probes 127.0.0.1 on PORT."""
    done = run_probe_script(env={'PORT': str(app_port)})
    assert done.returncode == 0, done.stderr


def test_probe_script_exits_1_and_says_why_when_nothing_listens():
    """Exit 1 with one line on stderr naming the URL, not a traceback."""
    url = f'http://127.0.0.1:{free_port()}/healthcheck'
    done = run_probe_script(url)
    assert done.returncode == 1
    assert url in done.stderr
    assert 'Traceback' not in done.stderr


def test_probe_script_never_imports_cherrypy(app_port):
    """The probe runs every few seconds in the container: it loads only the standard library."""
    done = subprocess.run(
        [sys.executable, '-X', 'importtime', f'{ROOT}/healthcheck.py',
         f'http://127.0.0.1:{app_port}/healthcheck'],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert 'cherrypy' not in done.stderr
    assert 'cheroot' not in done.stderr
    assert 'urllib.request' in done.stderr  # the import log is really there
