"""Shared fixtures: free ports, the app as a real process, and the app called in-process."""
import glob
import http.client
import io
import json
import os
import shutil
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
import serving.guard  # noqa: E402
import serving.settings  # noqa: E402
import serving.startup  # noqa: E402

START_DEADLINE = 15

# What the image ships of the app (the Dockerfile's runtime COPY lines), for tests that copy
# it: every module beside landing.py, the user's own included, the serving package, prod.conf
# and static/.
APP_FILES = (*sorted(os.path.basename(path) for path in glob.glob(os.path.join(ROOT, '*.py'))),
             'serving', 'prod.conf', 'static')

# The headers every answer carries: ours (Server) and the page policy landing.py states.
OUR_HEADERS = (serving.guard.SERVER, *landing.HEADERS.items())

# The seed's settings, as landing.py's cherrypy.config.update states them.
SEED = {
    'server.socket_host': '0.0.0.0',
    'server.socket_port': 80,
    'server.thread_pool': 100,
    'tools.trailing_slash.on': False,
}


def copy_app(folder):
    """Copy the app (APP_FILES) into `folder`, made here; return it."""
    folder.mkdir()
    for name in APP_FILES:
        copy = shutil.copytree if name in ('serving', 'static') else shutil.copy2
        copy(os.path.join(ROOT, name), folder / name)
    return folder


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def children(pid):
    """Return the PIDs of `pid`'s child processes (Linux's /proc list), [] once it has gone."""
    try:
        with open(f'/proc/{pid}/task/{pid}/children') as listed:
            return [int(child) for child in listed.read().split()]
    except OSError:
        return []


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


class ServerProcess:
    """A `python landing.py` child process, with its output captured to files."""

    def __init__(self, workdir, env=None, script=None, port=None):
        self.port = port or free_port()
        self.stdout_path = workdir / 'stdout.log'
        self.stderr_path = workdir / 'stderr.log'
        # Metrics on a free port of their own: many servers run side by side here.
        environment = dict(os.environ, HOST='127.0.0.1', PORT=str(self.port),
                           METRICS_PORT=str(free_port()))
        environment.update(env or {})
        self.metrics_port = int(environment['METRICS_PORT'])
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
        """End the process by PID if it still runs (fixture clean-up): SIGTERM, then SIGKILL.

        A graceful stop first lets the process and its workers write their coverage data.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start_server(tmp_path):
    """Start `python landing.py` processes on free ports; kill any left when the test ends."""
    started = []

    def start(env=None, script=None, port=None):
        workdir = tmp_path / f'server{len(started)}'
        workdir.mkdir()
        process = ServerProcess(workdir, env, script, port)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


# Prints the Settings of a fresh `import landing` with no environment, and under 'cherrypy'
# the CherryPy config serving then runs with (plain values only).
FRESH_SETTINGS = '''
import dataclasses, json
import cherrypy, landing, serving.startup
settings = dataclasses.asdict(serving.startup.configure({}))
settings['cherrypy'] = {key: value for key, value in cherrypy.config.items()
                        if isinstance(value, (str, int, float, bool, type(None)))}
print(json.dumps(settings))
'''


@pytest.fixture(scope='session')
def fresh_settings():
    """The settings a fresh `import landing` gives with no environment, read in a new process.

    The Settings' fields, and under 'cherrypy' the CherryPy config the app runs with.
    """
    done = subprocess.run(
        [sys.executable, '-c', FRESH_SETTINGS],
        cwd=ROOT, env={'PATH': os.environ.get('PATH', '')}, capture_output=True, text=True,
        timeout=30, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope='session')
def app_port(tmp_path_factory):
    """Serve Landing as a real `python landing.py` process, shared by the session's tests."""
    served = ServerProcess(tmp_path_factory.mktemp('app'))
    try:
        served.wait_ready()
        yield served.port
    finally:
        served.kill()


class InProcessApp:
    """The WSGI app serving.startup.serve() hands to granian, called directly in this process."""

    def __init__(self, app):
        self.app = app

    def __call__(self, method, path, headers=None, protocol='HTTP/1.1'):
        """Call the app once; return (status code, headers dict, body bytes)."""
        path_info, _, query = path.partition('?')
        environ = {
            'REQUEST_METHOD': method, 'PATH_INFO': path_info, 'QUERY_STRING': query,
            'SERVER_NAME': '127.0.0.1', 'SERVER_PORT': '80', 'SERVER_PROTOCOL': protocol,
            'REMOTE_ADDR': '127.0.0.1', 'HTTP_HOST': 'localhost', 'SCRIPT_NAME': '',
            'wsgi.url_scheme': 'http', 'wsgi.input': io.BytesIO(), 'wsgi.errors': sys.stderr,
            'wsgi.version': (1, 0), 'wsgi.multithread': True, 'wsgi.multiprocess': False,
            'wsgi.run_once': False,
        }
        for name, value in (headers or {}).items():
            environ['HTTP_' + name.upper().replace('-', '_')] = value
        started = []
        answer = self.app(environ, lambda status, headers, exc_info=None: started.append(
            (status, headers)))
        try:
            body = b''.join(answer)
        finally:
            if hasattr(answer, 'close'):
                answer.close()
        status, header_list = started[-1]
        return int(status.split()[0]), dict(header_list), body


@pytest.fixture(scope='session')
def in_process():
    """Landing mounted with the real prod.conf and server settings, its engine started here."""
    settings = serving.startup.configure({})
    cherrypy.config.update({'log.screen': False})
    app = serving.startup.mount(landing.Landing(), landing.CONFIG_PATH, settings, landing.HEADERS)
    cherrypy.engine.start()
    try:
        yield InProcessApp(app)
    finally:
        cherrypy.engine.exit()
        cherrypy.tree.apps.clear()
