"""The process's life: start-up failures, SIGTERM and Ctrl-C at any moment, requests in flight.

Each test starts a real `python landing.py` (or tests/slow_landing.py) and signals it by PID.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import APP_FILES, ROOT, copy_app, free_port, request, wait_until

SLOW_APP = os.path.join(ROOT, 'tests', 'slow_landing.py')


def visit_all(port, paths):
    """Request every path at once, each on its own connection; return threads and answers."""
    answers = {}

    def visit(index, path):
        try:
            answers[index] = request(port, 'GET', path, timeout=20)[::2]
        except OSError as error:
            answers[index] = repr(error)

    threads = [threading.Thread(target=visit, args=item) for item in enumerate(paths)]
    for thread in threads:
        thread.start()
    return threads, answers


def test_sigterm_answers_every_request_received_before_it(start_server):
    """20 requests on 10 threads (10 running, 10 queued), then SIGTERM: 20 answers, exit 0."""
    server = start_server(env={'THREADS': '10'}, script=SLOW_APP).wait_ready()
    threads, answers = visit_all(server.port, ['/slow?seconds=2'] * 20)
    wait_until(lambda: server.stderr().count('slow request started') >= 10,
               what='every thread busy')
    # Received: all 20 connections accepted by the server, none still in the kernel's backlog.
    wait_until(lambda: accepted(server.port, 20), what='20 connections accepted')
    assert server.stop(timeout=15) == 0
    for thread in threads:
        thread.join(timeout=20)
    assert answers == {index: (200, b'done') for index in range(20)}


def accepted(port, count):
    """Tell whether `count` connections to `port` are open and none waits to be accepted.

    From /proc/net/tcp: the server's ESTABLISHED sockets, and the listening socket's receive
    queue, which for a listener is its accept backlog.
    """
    established, backlog = 0, None
    with open('/proc/net/tcp') as table:
        for line in list(table)[1:]:
            fields = line.split()
            local_port, state = int(fields[1].split(':')[1], 16), fields[3]
            if local_port != port:
                continue
            if state == '01':
                established += 1
            elif state == '0A':
                backlog = int(fields[4].split(':')[1], 16)
    return established == count and backlog == 0


def test_sigterm_stops_within_the_shutdown_timeout_when_a_request_hangs(start_server):
    """A handler slower than SHUTDOWN_TIMEOUT does not keep the process alive past it."""
    server = start_server(env={'SHUTDOWN_TIMEOUT': '1'}, script=SLOW_APP).wait_ready()
    threads, _ = visit_all(server.port, ['/slow?seconds=30'])
    wait_until(lambda: 'slow request started' in server.stderr(), what='request in flight')
    started = time.monotonic()
    assert server.stop(timeout=10) == 0
    assert time.monotonic() - started < 5
    for thread in threads:
        thread.join(timeout=20)


@pytest.mark.parametrize('first, second, gap', [
    (signal.SIGTERM, signal.SIGTERM, 0.2),
    (signal.SIGINT, signal.SIGINT, 0.2),
    (signal.SIGTERM, signal.SIGINT, 0.2),
    (signal.SIGTERM, signal.SIGTERM, 0.01),
    (signal.SIGINT, signal.SIGINT, 0.05),
    (signal.SIGQUIT, signal.SIGTERM, 0.01),
    (signal.SIGTERM, signal.SIGTERM, 0.5),
])
def test_a_second_signal_never_hangs_nor_prints_a_traceback(start_server, first, second, gap):
    """Signalled twice, 10 to 500 ms apart (Ctrl-C twice, docker stop twice): a clean exit 0.

    The request in flight is answered, nothing prints a traceback, and a second signal as
    Python finalizes no longer kills the process (exit -15).
    """
    server = start_server(script=SLOW_APP).wait_ready()
    threads, answers = visit_all(server.port, ['/slow?seconds=1'])
    wait_until(lambda: 'slow request started' in server.stderr(), what='request in flight')
    server.proc.send_signal(first)
    time.sleep(gap)  # the interval under test, not a wait for something
    server.proc.send_signal(second)
    assert server.proc.wait(timeout=15) == 0
    for thread in threads:
        thread.join(timeout=20)
    assert answers == {0: (200, b'done')}
    assert 'Traceback' not in server.stderr()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', server.port), timeout=2)


def catches_sigterm(pid):
    """Tell whether process `pid` has a handler for SIGTERM (its SigCgt mask in /proc)."""
    with open(f'/proc/{pid}/status') as status:
        caught = next(line for line in status if line.startswith('SigCgt:'))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


@pytest.mark.parametrize('delay', [0.0, 0.03, 0.08, 0.15, 0.25, 0.4])
def test_sigterm_during_start_up_exits_0_quickly(start_server, delay):
    """SIGTERM at any moment of start-up (importing, binding, loading the worker): exit 0 < 3 s.

    Counted from when the process first catches SIGTERM: the interpreter's own start comes
    before any code can, and there the signal ends the process (or, for PID 1 in a
    container, is ignored).
    """
    server = start_server()
    wait_until(lambda: catches_sigterm(server.proc.pid), what='SIGTERM handler')
    time.sleep(delay)  # the moment under test
    started = time.monotonic()
    assert server.stop(timeout=10) == 0
    assert time.monotonic() - started < 3
    assert 'Traceback' not in server.stderr()


def run_app(env, timeout=10):
    """Run `python landing.py` to its end with `env` added; return (process result, seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'landing.py')],
        env=dict(os.environ, METRICS_PORT='0', **env),
        capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


def test_a_port_in_use_stops_start_up_with_one_line_naming_it():
    """Another process on the port: exit 1 within 2 s, one line naming the address, no traceback."""
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        done, seconds = run_app({'HOST': '127.0.0.1', 'PORT': str(port)})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f'landing: cannot listen on 127.0.0.1:{port}: Address already in use']
    assert seconds < 2


def test_a_second_server_on_the_same_port_is_refused(start_server):
    """Granian binds with SO_REUSEPORT; a second landing.py must still refuse to share the port."""
    first = start_server().wait_ready()
    done, _ = run_app({'HOST': '127.0.0.1', 'PORT': str(first.port)})
    assert done.returncode == 1
    assert 'Address already in use' in done.stderr


@pytest.mark.parametrize('host', ['999.1.1.1', 'no-such-host.invalid', '8.8.8.8'])
def test_a_bad_host_stops_start_up_with_one_line_naming_it(host):
    """HOST that this machine cannot bind: exit 1 within 2 s, one line naming HOST, no traceback."""
    done, seconds = run_app({'HOST': host, 'PORT': str(free_port())})
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith('landing: ')
    assert host in line
    assert seconds < 2


@pytest.mark.parametrize('value', ['+8080', '3_4829', '\u0668\u0660\u0668\u0660', ' 8080'])
def test_numbers_must_be_ascii_digits(value):
    """PORT='+8080', '3_4829' or Arabic-Indic digits: refused with one line, exit 1."""
    done, _ = run_app({'PORT': value})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f'landing: PORT must be a whole number from 1 to 65535, got {value!r}']


@pytest.mark.parametrize('old, new, says', [
    ('tools.staticdir.dir', 'tools.staticdir.dri', "tools.staticdir has no option 'dri'"),
    ('[/static]', '[/static', "'[/static' lacks its closing ]"),
    ('max-age=3600")]', 'max-age=3600")', 'not a Python value'),
])
def test_a_prod_conf_mistake_stops_start_up_with_one_line(tmp_path, old, new, says):
    """prod.conf with a misspelled option, a missing ] or a bad value: exit 1, one line, < 2 s."""
    app = tmp_path / 'app'  # the folder name coverage maps back to the app's (pyproject.toml)
    app.mkdir()
    for name in APP_FILES:
        copy = shutil.copytree if name in ('serving', 'static') else shutil.copy2
        copy(os.path.join(ROOT, name), app / name)
    config = app / 'prod.conf'
    text = config.read_text()
    config.write_text(text.replace(old, new, 1))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(app / 'landing.py')], cwd=tmp_path,
                          env=dict(os.environ, PORT=str(free_port()), METRICS_PORT='0'),
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert re.fullmatch(r'landing: prod\.conf line \d+: .+', line)
    assert says in line
    assert time.monotonic() - started < 2


def test_sigquit_stops_gracefully_like_sigterm(start_server):
    """SIGQUIT with a request in flight: answered, exit 0, the metrics folder removed."""
    server = start_server(script=SLOW_APP).wait_ready()
    threads, answers = visit_all(server.port, ['/slow?seconds=1'])
    wait_until(lambda: 'slow request started' in server.stderr(), what='request in flight')
    folder = f'/dev/shm/landing-metrics-{server.proc.pid}'
    assert os.path.isdir(folder)
    server.proc.send_signal(signal.SIGQUIT)
    assert server.proc.wait(timeout=15) == 0
    for thread in threads:
        thread.join(timeout=20)
    assert answers == {0: (200, b'done')}
    assert not os.path.exists(folder)
    assert 'Traceback' not in server.stderr()


def test_the_shipped_landing_py_imports_serving_before_cherrypy(start_server):
    """The stop signals are taken before CherryPy loads: no word about import order at start."""
    server = start_server().wait_ready()
    assert 'imported before serving' not in server.stderr()


def test_importing_cherrypy_before_serving_is_named_at_start(start_server, tmp_path):
    """The one place import order matters says so itself, in one line, and still serves.

    serving takes SIGTERM and Ctrl-C before the slower imports; a landing.py (or a module of
    the user's it imports first) that loads CherryPy earlier leaves them unheard meanwhile.
    """
    app = copy_app(tmp_path / 'app')
    landing_py = app / 'landing.py'
    source = landing_py.read_text()
    landing_py.write_text(source.replace('\nimport serving\n', '\nimport cherrypy  # first\n'
                                         'import serving\n', 1))
    server = start_server(script=str(landing_py)).wait_ready()
    warned = [line for line in server.stderr().splitlines() if 'imported before serving' in line]
    assert len(warned) == 1
    assert 'import serving first in landing.py' in warned[0]
