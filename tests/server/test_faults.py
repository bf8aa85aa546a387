"""What the supervisor survives: workers that die or hang, signals, start-up faults, half-closes.

Each test starts a real `python tests/faulty_landing.py` (or landing.py) and harms it by PID.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, children, free_port, request, wait_until

FAULTY_APP = os.path.join(ROOT, 'tests', 'faulty_landing.py')


class Prober:
    """Fresh /healthcheck probes every 50 ms, each allowed 1 s, until stopped; notes failures."""

    def __init__(self, port):
        self.port, self.sent, self.failed = port, 0, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        """Probe until stop() is called."""
        while not self.done.is_set():
            self.sent += 1
            try:
                status = request(self.port, 'GET', '/healthcheck', timeout=1)[0]
                if status != 200:
                    self.failed.append(status)
            except OSError as error:
                self.failed.append(repr(error))
            time.sleep(0.05)

    def stop(self):
        """Stop probing; return the failures."""
        self.done.set()
        self.thread.join()
        return self.failed


def start_with_workers(start_server, count, **env):
    """Start the faulty app with `count` workers; return it once every worker runs."""
    server = start_server(env={'WORKERS': str(count), **env}, script=FAULTY_APP).wait_ready()
    wait_until(lambda: len(children(server.proc.pid)) == count, what=f'{count} workers')
    wait_until(lambda: server.stderr().count('Started worker-') >= count, what='workers serving')
    return server


def test_a_killed_worker_is_replaced_while_the_other_serves(start_server):
    """WORKERS=2, kill -9 of one: every probe answers within 1 s throughout; a new one starts."""
    server = start_with_workers(start_server, 2)
    prober = Prober(server.port)
    time.sleep(0.5)  # probes before the kill
    victim = children(server.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(children(server.proc.pid)) == 2
               and victim not in children(server.proc.pid), what='a replacement worker')
    wait_until(lambda: server.stderr().count('Started worker-') >= 3, what='it serving')
    time.sleep(0.5)  # probes after it
    assert prober.stop() == []
    assert prober.sent > 10
    assert 'Respawning worker-' in server.stderr()
    assert server.stop() == 0


def test_one_worker_killed_is_serving_again_within_3_s(start_server):
    """WORKERS=1, a handler that ends its process (os._exit): service is back within 3 s."""
    server = start_with_workers(start_server, 1)
    with pytest.raises((OSError, http_client_errors())):
        request(server.port, 'GET', '/crash', timeout=5)
    crashed = time.monotonic()
    wait_until(lambda: request(server.port, 'GET', '/healthcheck', timeout=1)[0] == 200,
               what='service back')
    assert time.monotonic() - crashed < 3
    assert server.proc.poll() is None


def http_client_errors():
    """The http.client errors a connection closed without an answer raises."""
    import http.client
    return http.client.HTTPException


def test_a_worker_that_keeps_crashing_ends_the_server_with_exit_1(start_server):
    """Every worker dying as it starts: exit 1 within seconds, one line saying why."""
    server = start_server(env={'CRASH_AT_START': '1'}, script=FAULTY_APP)
    assert server.proc.wait(timeout=20) == 1
    log = server.stderr()
    assert log.count('Worker crash loop detected, exiting') == 1
    assert 'Traceback' not in log


def test_a_stopped_worker_is_replaced_after_worker_timeout(start_server):
    """SIGSTOP one of two workers: killed and replaced after WORKER_TIMEOUT (2 s here)."""
    server = start_with_workers(start_server, 2, WORKER_TIMEOUT='2')
    victim = children(server.proc.pid)[0]
    os.kill(victim, signal.SIGSTOP)
    stopped = time.monotonic()
    wait_until(lambda: len(children(server.proc.pid)) == 2
               and victim not in children(server.proc.pid), what='the hung worker replaced')
    assert 2 <= time.monotonic() - stopped < 6
    assert f'(PID {victim}) showed no sign of life' in server.stderr()
    wait_until(lambda: server.stderr().count('Started worker-') >= 3, what='it serving')
    assert request(server.port, 'GET', '/healthcheck')[0] == 200
    assert server.stop() == 0


def test_a_handler_busy_longer_than_worker_timeout_is_not_a_hung_worker(start_server):
    """A handler computing for 3 s with WORKER_TIMEOUT=1: answered, its worker left alone."""
    server = start_with_workers(start_server, 1, WORKER_TIMEOUT='1')
    [worker] = children(server.proc.pid)
    status, _, body = request(server.port, 'GET', '/busy?seconds=3')
    assert status == 200
    assert int(body) > 0
    assert children(server.proc.pid) == [worker]
    assert 'showed no sign of life' not in server.stderr()


def test_sighup_replaces_the_workers_and_serving_goes_on(start_server):
    """SIGHUP: new workers start, then the old ones stop; probes answer throughout."""
    server = start_with_workers(start_server, 1)
    [old] = children(server.proc.pid)
    prober = Prober(server.port)
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: children(server.proc.pid) not in ([old], []), deadline=15,
               what='new workers')
    wait_until(lambda: 'Stopped old worker-1' in server.stderr(), deadline=15,
               what='the old worker stopped')
    assert prober.stop() == []
    assert server.stop() == 0


def test_leftover_metrics_folders_of_dead_processes_go_at_start(start_server, tmp_path):
    """A landing-metrics-<pid> folder of a process that is gone is removed when a server starts."""
    gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True)
    parent = '/dev/shm' if os.access('/dev/shm', os.W_OK) else str(tmp_path)  # noqa: S108
    leftover = os.path.join(parent, f'landing-metrics-{int(gone.stdout)}')
    mine = os.path.join(parent, f'landing-metrics-{os.getpid()}')
    os.makedirs(leftover, exist_ok=True)
    os.makedirs(mine, exist_ok=True)
    try:
        start_server(env={'TMPDIR': str(tmp_path)}).wait_ready()
        assert not os.path.exists(leftover)
        assert os.path.exists(mine)  # this test's own process is alive
    finally:
        for folder in (leftover, mine):
            if os.path.isdir(folder):
                os.rmdir(folder)


def run_once(argv, env, timeout=10):
    """Run `argv` to its end with `env` added; return the result."""
    return subprocess.run(argv, env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=timeout)


def test_metrics_port_equal_to_port_is_one_line_and_exit_1():
    """METRICS_PORT == PORT: exit 1 with one line, not a Rust panic."""
    port = str(free_port())
    done = run_once([sys.executable, os.path.join(ROOT, 'landing.py')],
                    {'HOST': '127.0.0.1', 'PORT': port, 'METRICS_PORT': port})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f'landing: METRICS_PORT must differ from PORT ({port})']


def test_a_read_only_dev_shm_still_serves_and_counts(tmp_path):
    """/dev/shm mounted read-only (hardened runtimes): the server starts, serves and scrapes."""
    port, metrics_port = free_port(), free_port()
    script = ('mount -o remount,bind,ro /dev/shm && exec "$0" "$1"')
    proc = subprocess.Popen(
        ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script,
         sys.executable, os.path.join(ROOT, 'landing.py')],
        env=dict(os.environ, HOST='127.0.0.1', PORT=str(port), METRICS_PORT=str(metrics_port),
                 TMPDIR=str(tmp_path)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: proc.poll() is None
                   and request(port, 'GET', '/healthcheck', timeout=1)[0] == 200
                   or proc.poll() is not None, what='the server answering')
        assert proc.poll() is None, proc.stderr.read()
        request(port, 'GET', '/')
        body = wait_until(lambda: b'route="Landing.index"' in request(
            metrics_port, 'GET', '/metrics')[2] and request(metrics_port, 'GET', '/metrics')[2],
            what='the visit counted')
        assert b'landing_http_requests_total' in body
        assert os.listdir(tmp_path)  # the metrics folder fell back to TMPDIR
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        proc.stderr.close()


def test_a_half_closed_client_gets_no_answer_today(start_server):
    """A full request, then shutdown(SHUT_WR) (`nc -N`): hyper closes without answering.

    Pins granian 2.8.7's behaviour (docs/load-balancer.md names who is affected): when a
    release answers such clients, this fails and the docs change with it.
    """
    server = start_server().wait_ready()
    with socket.create_connection(('127.0.0.1', server.port), timeout=5) as conn:
        conn.sendall(b'GET / HTTP/1.0\r\nHost: x\r\n\r\n')
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(65536) == b''
    # The same request without the half-close is answered.
    with socket.create_connection(('127.0.0.1', server.port), timeout=5) as conn:
        conn.sendall(b'GET / HTTP/1.0\r\nHost: x\r\n\r\n')
        assert conn.recv(12).startswith(b'HTTP/1.')
