"""A quiet, quick stop on every Python the project supports (the image's 3.13 included).

The image's test stage runs this file too, so the stop is proven on the image's Python.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, copy_app, free_port, wait_until

# Ctrl-C at any moment after start must end the server within this many seconds.
STOP_DEADLINE = 2


def engine_stops(log):
    """Return how many times the log shows a CherryPy engine stopping."""
    return log.count('ENGINE Bus STOPPING')


@pytest.mark.parametrize('workers', ['1', '2'])
def test_a_stop_prints_each_engine_stop_once_and_no_warning(start_server, workers):
    """SIGTERM: each worker's engine stops once, quietly: no warning, no line twice, exit 0."""
    server = start_server(env={'WORKERS': workers}).wait_ready()
    assert server.stop() == 0
    log = server.stderr()
    assert engine_stops(log) == int(workers)
    assert log.count('ENGINE Bus EXITED') == int(workers)
    assert 'Warning' not in log
    assert 'Traceback' not in log


@pytest.fixture
def app_copy(tmp_path):
    """A copy of the app in a folder of its own (RELOAD=1 watches the app's folder)."""
    return copy_app(tmp_path / 'app')


def test_a_reload_and_a_stop_are_quiet(start_server, app_copy):
    """RELOAD=1: an edit restarts the worker, then SIGTERM; two engine stops, no warning."""
    server = start_server(env={'RELOAD': '1'}, script=str(app_copy / 'landing.py')).wait_ready()
    with open(app_copy / 'landing.py', 'a') as module:
        module.write('\n# edited\n')
    wait_until(lambda: server.stderr().count('ENGINE Bus STARTED') == 2, what='the reload')
    server.wait_ready()
    assert server.stop() == 0
    log = server.stderr()
    assert engine_stops(log) == 2
    assert 'Warning' not in log
    assert 'Traceback' not in log


def catches(pid, signum):
    """Tell whether process `pid` has a handler for `signum` (its SigCgt mask in /proc)."""
    with open(f'/proc/{pid}/status') as status:
        caught = next(line for line in status if line.startswith('SigCgt:'))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)


def ctrl_c_after(delay, workdir):
    """Start the server, Ctrl-C its process group after `delay` s; return time, code, stderr.

    The time is from Ctrl-C to the process's end. A terminal's Ctrl-C signals every process
    of its foreground group: the supervisor and its workers at once, as here.
    """
    err_path = workdir / f'stderr-{delay}.log'
    with open(err_path, 'wb') as err:
        proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, 'landing.py')], cwd=workdir,
            env=dict(os.environ, HOST='127.0.0.1', PORT=str(free_port()),
                     METRICS_PORT=str(free_port())),
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        # From when serving's handlers are in place: Python's own SIGINT handler (in place
        # from the interpreter's start) raises KeyboardInterrupt wherever the import is.
        wait_until(lambda: catches(proc.pid, signal.SIGTERM), what='the stop handlers')
        time.sleep(delay)  # the moment under test
        os.killpg(proc.pid, signal.SIGINT)
        signalled = time.monotonic()
        code = proc.wait(timeout=15)
        return time.monotonic() - signalled, code, err_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_ctrl_c_at_any_moment_after_start_stops_within_2_s(tmp_path):
    """40 starts, each Ctrl-C'd 0 to 1.2 s after serving takes the signals: each ends < 2 s.

    Each with exit 0 and no traceback.
    """
    results = []
    for index in range(40):
        delay = index * 0.03
        seconds, code, log = ctrl_c_after(delay, tmp_path)
        results.append((delay, round(seconds, 2), code))
        assert 'Traceback' not in log, log
    slow = [result for result in results if result[1] >= STOP_DEADLINE or result[2] != 0]
    print('slowest stops (delay, seconds, exit):', sorted(results, key=lambda r: -r[1])[:3])
    assert slow == []
