"""Behind a load balancer: pre-opened and idle connections, bursts, keep-alive, SIGTERM, kill -9.

Every load here goes to 127.0.0.1, is bounded in count and time, and stops by itself.
"""
import http.client
import os
import resource
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import landing
from conftest import ROOT, children, request, wait_until
from rawhttp import connect, get, read_response

STOCK_APP = os.path.join(ROOT, 'tests', 'stock_landing.py')
SLOW_APP = os.path.join(ROOT, 'tests', 'slow_landing.py')


@pytest.fixture
def many_files():
    """Raise this process's open-files limit (inherited by servers it starts) for 2,000+ sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if wanted < 4500:
        pytest.fail(f'open-files hard limit {hard} is too low for this test')
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def held_sockets():
    """A list for sockets a test holds open; all are closed when the test ends."""
    sockets = []
    yield sockets
    for sock in sockets:
        sock.close()


def hold_silent(port, count, sockets):
    """Open `count` connections that never send a byte, as a load balancer pre-opens them."""
    for _ in range(count):
        sockets.append(connect(port))


def hold_idle_keepalive(port, count, sockets):
    """Open `count` connections that each send one request, read the answer and go idle."""
    for _ in range(count):
        sock = connect(port)
        sock.sendall(get('/healthcheck'))
        assert read_response(sock).status == 200
        sockets.append(sock)


def fresh_probe_seconds(port, timeout):
    """Time a GET /healthcheck on a new connection; None if it takes longer than `timeout`."""
    started = time.monotonic()
    try:
        status, _, body = request(port, 'GET', '/healthcheck', timeout=timeout)
    except TimeoutError:
        return None
    assert (status, body) == (200, b'Yay')
    return time.monotonic() - started


def test_past_max_connections_new_ones_wait_in_the_backlog_and_are_served_once_freed(
        start_server, many_files, held_sockets):
    """MAX_CONNECTIONS=50 and 60 silent connections: a probe waits, then answers once they go."""
    server = start_server(env={'MAX_CONNECTIONS': '50'}).wait_ready()
    hold_silent(server.port, 60, held_sockets)
    assert fresh_probe_seconds(server.port, timeout=1) is None
    for sock in held_sockets:
        sock.close()
    held_sockets.clear()
    assert wait_until(lambda: fresh_probe_seconds(server.port, timeout=1), what='probe answered')


def test_pre_opened_and_idle_connections_cannot_starve_ten_threads(
        start_server, many_files, held_sockets):
    """THREADS=10, 1,000 silent and 1,000 idle keep-alive connections: a probe answers in < 1 s.

    MAX_CONNECTIONS is raised for them: the default (768) is what a 128 MiB pod holds of the
    costliest connections; past it, connections wait in the backlog (the next test).
    """
    server = start_server(env={'THREADS': '10', 'MAX_CONNECTIONS': '4096'}).wait_ready()
    hold_silent(server.port, 1000, held_sockets)
    hold_idle_keepalive(server.port, 1000, held_sockets)
    seconds = fresh_probe_seconds(server.port, timeout=5)
    assert seconds is not None, 'no answer within 5 s'
    assert seconds < 1


@pytest.mark.slow
def test_stock_settings_are_starved_by_pre_opened_connections(start_server, held_sockets):
    """The same measurement fails on CherryPy's stock server, cheroot: 20 silent connections.

    They hold its 10 threads. This shows the test above measures the server, not the machine.
    """
    server = start_server(env={'THREADS': '10'}, script=STOCK_APP).wait_ready()
    hold_silent(server.port, 20, held_sockets)
    assert fresh_probe_seconds(server.port, timeout=2) is None


def test_silent_connection_is_closed_once_idle_past_the_timeout(start_server, held_sockets):
    """A pre-opened connection that never speaks is closed after KEEPALIVE_TIMEOUT."""
    server = start_server(env={'KEEPALIVE_TIMEOUT': '1'}).wait_ready()
    sock = connect(server.port, timeout=10)
    held_sockets.append(sock)
    started = time.monotonic()
    assert sock.recv(1) == b''  # orderly close, no request needed to get it
    assert 0.9 <= time.monotonic() - started < 5


def test_pre_opened_connection_serves_its_request_when_it_comes(start_server, held_sockets):
    """A connection that waited silently is served normally once its request arrives."""
    server = start_server(env={'THREADS': '2'}).wait_ready()
    hold_silent(server.port, 5, held_sockets)
    for sock in held_sockets:
        sock.sendall(get('/'))
    assert {read_response(sock).status for sock in held_sockets} == {200}


@pytest.mark.slow
def test_keepalive_connection_idle_65_seconds_still_serves(start_server, held_sockets):
    """AWS load balancers hold idle connections 60 s; ours outlasts them (KEEPALIVE_TIMEOUT 75)."""
    server = start_server().wait_ready()
    hold_idle_keepalive(server.port, 1, held_sockets)
    [sock] = held_sockets
    time.sleep(65)  # the idleness is what is under test; nothing to poll
    sock.sendall(get('/'))
    response = read_response(sock)
    assert (response.status, response.body) == (200, landing.PAGE.encode())


def test_300_clients_connecting_at_once_are_all_answered(start_server):
    """A burst of 300 new connections: every one answered 200, none waits 1 s to connect."""
    server = start_server().wait_ready()
    barrier = threading.Barrier(300, timeout=30)

    def visit(_):
        barrier.wait()
        started = time.monotonic()
        with connect(server.port, timeout=10) as sock:
            connected = time.monotonic() - started
            sock.sendall(get('/'))
            return connected, read_response(sock).status

    with ThreadPoolExecutor(max_workers=300) as pool:
        results = list(pool.map(visit, range(300)))
    assert [status for _, status in results] == [200] * 300
    assert max(connected for connected, _ in results) < 1


def test_50_keepalive_clients_are_never_told_to_close(start_server):
    """50 load-balancer nodes, each on its own connection: every answer keeps it open."""
    server = start_server().wait_ready()

    def node(_):
        with connect(server.port) as sock:
            answers = []
            for _ in range(5):
                sock.sendall(get('/healthcheck'))
                answers.append(read_response(sock))
            return answers

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = [a for node_answers in pool.map(node, range(50)) for a in node_answers]
    assert {a.status for a in answers} == {200}
    assert [a for a in answers if a.headers.get('connection', '').lower() == 'close'] == []


class LoadBalancerTraffic:
    """Client threads that behave like a load balancer, for at most `deadline` seconds.

    Each thread sends requests over one connection at a time, reconnecting when told to close.
    Once any probe of /healthcheck answers 503 the node is out of rotation: requests on open
    connections go on, but no new connection is opened, as a load balancer would do.
    """

    def __init__(self, port, paths, deadline):
        self.port, self.paths, self.deadline = port, paths, deadline
        self.statuses, self.failures = [], []
        self.out_of_rotation = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(path,)) for path in paths]

    def loop(self, path):
        """Request `path` over and over until out of rotation and closed, or time is up."""
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
        while time.monotonic() < self.deadline:
            if conn.sock is None and self.out_of_rotation.is_set():
                return
            try:
                conn.request('GET', path)
                answer = conn.getresponse()
                answer.read()
            except (OSError, http.client.HTTPException) as error:
                self.failures.append((path, repr(error)))
                conn.close()
                continue
            self.statuses.append((path, answer.status))
            if answer.status == 503:
                self.out_of_rotation.set()
            if answer.will_close:
                conn.close()
        conn.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        for thread in self.threads:
            thread.join()


def test_sigterm_under_load_drains_then_exits_0_losing_nothing(start_server):
    """SIGTERM with DRAIN_SECONDS: probes get 503, every request sent gets 200, exit 0."""
    server = start_server(
        env={'DRAIN_SECONDS': '1', 'SHUTDOWN_TIMEOUT': '5'}, script=SLOW_APP).wait_ready()
    paths = ['/'] * 6 + ['/slow?seconds=0.3'] * 4 + ['/healthcheck'] * 2
    with LoadBalancerTraffic(server.port, paths, deadline=time.monotonic() + 30) as load:
        wait_until(lambda: len(load.statuses) > 200, what='load running')
        before = len(load.statuses)
        stopped_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        exit_code = server.proc.wait(timeout=20)
        stop_seconds = time.monotonic() - stopped_at
    after = load.statuses[before:]
    assert exit_code == 0
    assert load.failures == []
    assert ('/healthcheck', 503) in after
    assert {status for path, status in after if path != '/healthcheck'} == {200}
    assert stop_seconds < 1 + 5 + 2  # drain + shutdown timeout + start-up slack


def test_kill_9_and_restart_serves_the_same_answers(start_server):
    """The app keeps no state: after kill -9 a new process on the same port answers the same."""
    first = start_server().wait_ready()
    paths = ['/', '/healthcheck', '/logo.png', '/static/site.css', '/no-such-page']

    def answers(port):
        return [(request(port, 'GET', p)[0], request(port, 'GET', p)[2]) for p in paths]

    before = answers(first.port)
    workers = children(first.proc.pid)
    assert workers
    first.proc.send_signal(signal.SIGKILL)
    assert first.proc.wait(timeout=10) == -signal.SIGKILL
    # Its workers go too (the kernel tells them), instead of serving on, orphaned, on the port.
    wait_until(lambda: not any(os.path.exists(f'/proc/{pid}') for pid in workers),
               what='the killed server\'s workers to exit')
    second = start_server(port=first.port).wait_ready()
    assert answers(second.port) == before


def test_second_sigterm_ends_the_drain_at_once(start_server):
    """An operator who sends SIGTERM twice does not wait out DRAIN_SECONDS."""
    server = start_server(env={'DRAIN_SECONDS': '60'}).wait_ready()
    server.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: request(server.port, 'GET', '/healthcheck')[0] == 503,
               what='draining')
    assert request(server.port, 'GET', '/')[0] == 200  # still serving while draining
    assert server.stop(timeout=15) == 0
    assert 'draining for 60 s' in server.stderr()


def test_answers_while_draining_close_the_connection(start_server):
    """During the drain every answer says Connection: close, so clients stop reusing the node."""
    server = start_server(env={'DRAIN_SECONDS': '60'}).wait_ready()
    server.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: request(server.port, 'GET', '/healthcheck')[0] == 503, what='draining')
    with connect(server.port) as sock:
        sock.sendall(get('/'))
        assert read_response(sock).headers['connection'].lower() == 'close'
