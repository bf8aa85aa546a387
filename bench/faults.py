"""Print what each fault costs a running server: requests failed, time to recover.

usage: .venv/bin/python bench/faults.py [seconds of load per fault, default 6]
Starts tests/faulty_landing.py on free loopback ports (WORKERS=2, WORKER_TIMEOUT=2) for each
fault, loads it from 4 keep-alive clients, applies the fault after 1 s, and prints the
requests sent, those that failed (reset, refused, timed out > 1 s or not 200), and how
long after the fault the last failure came.
"""
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, 'tests', 'faulty_landing.py')


def free_port():
    """Return a free loopback port."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def children(pid):
    """Return the worker PIDs of `pid`."""
    with open(f'/proc/{pid}/task/{pid}/children') as found:
        return [int(child) for child in found.read().split()]


def client(port, end, results):
    """Send GET /healthcheck on a keep-alive connection until `end`; note each outcome."""
    conn = None
    while time.monotonic() < end:
        sent = time.monotonic()
        try:
            conn = conn or http.client.HTTPConnection('127.0.0.1', port, timeout=1)
            conn.request('GET', '/healthcheck')
            answer = conn.getresponse()
            answer.read()
            results.append((sent, answer.status == 200))
            if answer.getheader('Connection', '').lower() == 'close':
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            results.append((sent, False))
            if conn:
                conn.close()
            conn = None


def run(name, fault, seconds):
    """Start a server, load it, apply `fault(server pid)` after 1 s; print the figures."""
    port = free_port()
    env = dict(os.environ, HOST='127.0.0.1', PORT=str(port), METRICS_PORT='0', WORKERS='2',
               WORKER_TIMEOUT='2')
    proc = subprocess.Popen([sys.executable, APP], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                if len(children(proc.pid)) == 2:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        time.sleep(0.5)
        results, end = [], time.monotonic() + seconds
        threads = [threading.Thread(target=client, args=(port, end, results)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        applied = time.monotonic()
        fault(proc.pid)
        for thread in threads:
            thread.join()
        failed = [sent for sent, ok in results if not ok]
        last = f'{max(failed) - applied:.2f} s' if failed else '-'
        print(f'{name:<28} {len(results):>7} sent {len(failed):>5} failed   last failure {last}')
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


FAULTS = {
    'kill -9 of one worker': lambda pid: os.kill(children(pid)[0], signal.SIGKILL),
    'SIGSTOP of one worker': lambda pid: os.kill(children(pid)[0], signal.SIGSTOP),
    'SIGHUP (reload)': lambda pid: os.kill(pid, signal.SIGHUP),
    'none': lambda pid: None,
}

if __name__ == '__main__':
    load_seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 6
    for fault_name, apply in FAULTS.items():
        run(fault_name, apply, load_seconds)
