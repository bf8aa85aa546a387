"""The server as a real process: `python landing.py` started from elsewhere, logging, SIGTERM."""
import os
import re
import subprocess
import sys
import threading

import landing
from conftest import ROOT, request, wait_until

SLOW_APP = os.path.join(ROOT, 'tests', 'slow_landing.py')


def test_serves_page_health_and_logo_from_another_directory(start_server):
    """Started outside the repository, the app still finds prod.conf and static/."""
    server = start_server().wait_ready()
    assert request(server.port, 'GET', '/')[2] == landing.PAGE.encode()
    assert request(server.port, 'GET', '/healthcheck')[2] == b'Yay'
    status, headers, _ = request(server.port, 'GET', '/logo.png')
    assert (status, headers.get_content_type()) == (200, 'image/png')


def test_access_log_has_visits_on_stdout_and_no_probes(start_server):
    """One access-log line per visit goes to stdout; /healthcheck never appears there."""
    server = start_server().wait_ready()
    for path in ('/healthcheck', '/', '/healthcheck/', '/logo.png', '/healthcheck'):
        request(server.port, 'GET', path)
    log = wait_until(lambda: '/logo.png' in server.stdout() and server.stdout(),
                     what='access-log lines')
    assert server.stop() == 0
    lines = server.stdout().splitlines()
    assert len([line for line in lines if '"GET / HTTP/1.1" 200' in line]) == 1
    assert len([line for line in lines if '"GET /logo.png HTTP/1.1" 200' in line]) == 1
    assert 'healthcheck' not in log
    assert 'healthcheck' not in server.stdout()


def test_errors_and_engine_messages_go_to_stderr(start_server):
    """Engine messages are on stderr, keeping stdout for the access log alone."""
    server = start_server().wait_ready()
    request(server.port, 'GET', '/')
    server.stop()
    assert 'ENGINE' in server.stderr()
    assert 'ENGINE' not in server.stdout()


def test_effective_settings_are_logged_once_at_start(start_server):
    """Host, port and thread count are logged once, as the server will use them."""
    server = start_server(env={'THREADS': '7'}).wait_ready()
    server.stop()
    found = re.findall(r'host=(\S+) port=(\d+) threads=(\d+)', server.stderr())
    assert found == [('127.0.0.1', str(server.port), '7')]


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(start_server):
    """SIGTERM during a slow request: the request completes with 200, the process exits 0."""
    server = start_server(script=SLOW_APP).wait_ready()
    answers = []

    def slow_visit():
        answers.append(request(server.port, 'GET', '/slow?seconds=1.5'))

    visitor = threading.Thread(target=slow_visit)
    visitor.start()
    wait_until(lambda: 'slow request started' in server.stderr(), what='request in flight')
    assert server.stop() == 0
    visitor.join(timeout=10)
    [(status, _, body)] = answers
    assert (status, body) == (200, b'done')
    assert 'Bus EXITED' in server.stderr()


def test_bad_variable_stops_start_up_with_one_clear_line(tmp_path):
    """PORT=eighty: exit non-zero with one line naming PORT, and no traceback."""
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'landing.py')], cwd=tmp_path,
        env=dict(os.environ, PORT='eighty'), capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "landing: PORT must be a whole number from 1 to 65535, got 'eighty'"]
    assert 'Traceback' not in done.stderr
