"""Shared fixtures: free loopback ports, the app served in-process, and the app as a real process."""
import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import cherrypy
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import landing  # noqa: E402  (needs ROOT on sys.path)

START_DEADLINE = 15


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def request(port, method, path, headers=None, body=None, host='127.0.0.1', timeout=10):
    """Send one HTTP request on a new connection; return (status, headers, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        conn.close()


def wait_until(condition, deadline=START_DEADLINE, what='condition'):
    """Poll `condition` until it returns a true value or `deadline` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f'{what} not reached within {deadline} s')
        time.sleep(0.05)


@pytest.fixture(scope='session')
def app_port():
    """Serve Landing with the real prod.conf in this process on a free loopback port."""
    port = free_port()
    landing.configure({'HOST': '127.0.0.1', 'PORT': str(port)})
    cherrypy.config.update({'log.screen': False})
    cherrypy.tree.mount(landing.Landing(), '', landing.CONFIG_PATH)
    cherrypy.engine.start()
    try:
        wait_until(lambda: request(port, 'GET', '/healthcheck')[0] == 200,
                   what='in-process server')
        yield port
    finally:
        cherrypy.engine.exit()
        cherrypy.tree.apps.clear()


class ServerProcess:
    """A `python landing.py` child process, with its output captured to files."""

    def __init__(self, workdir, env=None, script=None, port=None):
        self.port = port or free_port()
        self.stdout_path = workdir / 'stdout.log'
        self.stderr_path = workdir / 'stderr.log'
        environment = dict(os.environ, HOST='127.0.0.1', PORT=str(self.port))
        environment.update(env or {})
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            # Started from workdir, not the repo: the app must find its files itself.
            self.proc = subprocess.Popen(
                [sys.executable, script or os.path.join(ROOT, 'landing.py')],
                cwd=workdir, env=environment, stdout=out, stderr=err)

    def wait_ready(self):
        """Poll /healthcheck until it answers 200; fail early if the process died."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f'server exited {self.proc.returncode}: {self.stderr()}')
            return request(self.port, 'GET', '/healthcheck', timeout=2)[0] == 200
        wait_until(ready, what='server process ready')
        return self

    def stdout(self):
        """Return what the process wrote to stdout so far."""
        return self.stdout_path.read_text()

    def stderr(self):
        """Return what the process wrote to stderr so far."""
        return self.stderr_path.read_text()

    def stop(self, timeout=15):
        """Send SIGTERM by PID and return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        """End the process by PID if it still runs (fixture clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_server(tmp_path):
    """Start `python landing.py` processes on free ports; kill any left when the test ends."""
    started = []

    def start(env=None, script=None, port=None):
        workdir = tmp_path / f'server{len(started)}'
        workdir.mkdir()
        server = ServerProcess(workdir, env, script, port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
