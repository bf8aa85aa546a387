"""Start-up to the first 200 and idle memory (PSS) of the app's process tree, per process.

usage: python bench/idle_memory.py [--app DIR ...] [--env KEY=VALUE ...] [--repeats N]
                                   [--requests N [--connections N]] [--collect]
                                   [--python PATH]

Each repeat starts `python landing.py` in every app folder in turn (interleaved: this machine's
noise falls on all of them alike), times it to the first 200 on /, waits for the tree to go idle,
then reads each process's PSS from /proc/PID/smaps_rollup. Standard library only.
"""
import argparse
import http.client
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HOST = '127.0.0.1'
START_DEADLINE = 20.0   # s for the first 200
SETTLE_DEADLINE = 5.0   # s for the tree to go idle after its first 200
STOP_DEADLINE = 10.0    # s for the tree to exit after SIGTERM
PAGE = os.sysconf('SC_PAGE_SIZE')
PFN_MASK = (1 << 55) - 1  # /proc/PID/pagemap: bits 0-54 name the page frame


# --collect: the app run so that its supervisor and each worker make one full garbage collection
# COLLECT_AFTER s after they start, as any long-running process does sooner or later.
COLLECT_AFTER = 1.0
COLLECTING = f"""
import gc, os, runpy, sys, threading
def collect_later():
    timer = threading.Timer({COLLECT_AFTER}, gc.collect)
    timer.daemon = True
    timer.start()
os.register_at_fork(after_in_child=collect_later)
collect_later()
sys.argv = ['landing.py']
runpy.run_path('landing.py', run_name='__main__')
"""


def free_port():
    """Return a loopback port free at the moment."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def children(pid):
    """Return the PIDs of `pid`'s children, from /proc."""
    try:
        with open(f'/proc/{pid}/task/{pid}/children') as file:
            return [int(child) for child in file.read().split()]
    except OSError:
        return []


def tree(pid):
    """Return `pid` and its descendants, parents first."""
    pids = [pid]
    for pid_ in pids:
        pids.extend(children(pid_))
    return pids


def pss_kib(pid):
    """Return the process's PSS in KiB (0 once it is gone)."""
    try:
        with open(f'/proc/{pid}/smaps_rollup') as file:
            for line in file:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_alone_kib(pids):
    """Return the KiB of distinct physical pages `pids` map: their PSS summed were they alone.

    The PSS sum also splits pages (libpython's, say) with every other process on the machine
    that maps them, so it falls as the machine gets busier; in a container only the tree
    shares them. Needs root to read page frame numbers; None without.
    """
    frames = set()
    for pid in pids:
        try:
            with open(f'/proc/{pid}/maps') as maps, open(f'/proc/{pid}/pagemap', 'rb') as pagemap:
                for line in maps:
                    start, end = (int(x, 16) for x in line.split(None, 1)[0].split('-'))
                    pagemap.seek(start // PAGE * 8)
                    data = pagemap.read((end - start) // PAGE * 8)
                    for (entry,) in struct.iter_unpack('Q', data):
                        if entry >> 63:  # present in memory
                            frames.add(entry & PFN_MASK)
        except OSError:
            continue
    if frames <= {0}:
        return None
    return len(frames) * PAGE // 1024


def cpu_ticks(pids):
    """Return the user + system clock ticks `pids` used so far."""
    total = 0
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat') as file:
                fields = file.read().rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def answers(port):
    """Return True once GET / answers 200."""
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request('GET', '/')
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def cpu_ms(pids):
    """Return the CPU time the live threads of `pids` used so far, in ms (/proc schedstat).

    Less noisy than the wall time on a busy machine: what start-up costs, not what it waited.
    """
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f'/proc/{pid}/task')
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f'/proc/{pid}/task/{task}/schedstat') as file:
                    total += int(file.read().split()[0])
            except OSError:
                pass
    return total / 1e6


def visit(port, requests, connections=1):
    """Send `requests` GET / in all, over `connections` at once (bounded: 5 s timeouts)."""
    def one_connection(count):
        conn = http.client.HTTPConnection(HOST, port, timeout=5.0)
        try:
            for _ in range(count):
                conn.request('GET', '/')
                conn.getresponse().read()
        finally:
            conn.close()

    threads = [threading.Thread(target=one_connection, args=(requests // connections,))
               for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def settle(pid):
    """Poll until the tree keeps its PIDs and uses under 2 % of a core, or the deadline passes."""
    end, last = time.monotonic() + SETTLE_DEADLINE, None
    while time.monotonic() < end:
        pids = tree(pid)
        now = (pids, cpu_ticks(pids), time.monotonic())
        if last and now[0] == last[0] and (now[1] - last[1]) / 100 < 0.02 * (now[2] - last[2]):
            return
        last = now
        time.sleep(0.2)


def measure(app, env, python=None, requests=0, collect=False, connections=1):
    """Start the app in `app`; return its start-up and idle figures.

    They are: ms to the first 200, CPU ms used by then, [PSS KiB per process], KiB of the tree
    alone (tree_alone_kib).
    """
    port = free_port()
    env = {**os.environ, 'HOST': HOST, 'PORT': str(port), 'METRICS_PORT': str(free_port()),
           'PYTHONUNBUFFERED': '1', **env}
    python = python or os.path.join(app, '.venv', 'bin', 'python')
    started = time.monotonic()
    argv = [python, '-c', COLLECTING] if collect else [python, 'landing.py']
    proc = subprocess.Popen(argv, cwd=app, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not answers(port):
            if proc.poll() is not None or time.monotonic() - started > START_DEADLINE:
                raise RuntimeError(f'{app}: no 200 within {START_DEADLINE} s')
            time.sleep(0.002)
        startup = (time.monotonic() - started) * 1e3
        cpu = cpu_ms(tree(proc.pid))
        visit(port, requests, connections)
        if collect:
            time.sleep(max(0.0, started + 2 * COLLECT_AFTER - time.monotonic()))
        settle(proc.pid)
        pids = tree(proc.pid)
        return startup, cpu, [pss_kib(pid) for pid in pids], tree_alone_kib(pids)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            for pid in reversed(tree(proc.pid)):
                os.kill(pid, signal.SIGKILL)
            proc.wait()


def main():
    """Measure every app `--repeats` times, interleaved; print medians per app."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--app', action='append', help='app folder (default: this checkout)')
    parser.add_argument('--env', action='append', default=[], help='KEY=VALUE for the server')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--requests', type=int, default=0,
                        help='GET / this many times after the first 200, before measuring')
    parser.add_argument('--connections', type=int, default=1,
                        help='spread --requests over this many connections at once')
    parser.add_argument('--collect', action='store_true',
                        help='have each process make one full garbage collection first')
    parser.add_argument('--python', help="the interpreter (default: each app's .venv/bin/python)")
    args = parser.parse_args()
    apps = args.app or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    env = dict(item.split('=', 1) for item in args.env)
    runs = {app: [] for app in apps}
    for _ in range(args.repeats):
        for app in apps:
            runs[app].append(measure(app, env, args.python, args.requests, args.collect,
                                    args.connections))
    for app, results in runs.items():
        startups = [startup for startup, _, _, _ in results]
        cpus = [cpu for _, cpu, _, _ in results]
        totals = [sum(pss) / 1024 for _, _, pss, _ in results]
        per_process = [statistics.median(pss[i] for _, _, pss, _ in results) / 1024
                       for i in range(min(len(pss) for _, _, pss, _ in results))]
        alone = [kib / 1024 for _, _, _, kib in results if kib is not None]
        print(f'{app}: start-up median {statistics.median(startups):.0f} ms '
              f'(min {min(startups):.0f}, max {max(startups):.0f}), CPU by then median '
              f'{statistics.median(cpus):.0f} ms (min {min(cpus):.0f}); '
              f'PSS of the tree median {statistics.median(totals):.1f} MB '
              f'(min {min(totals):.1f}, max {max(totals):.1f}); per process (supervisor first) '
              + ', '.join(f'{mb:.1f}' for mb in per_process) + ' MB'
              + (f'; the tree alone median {statistics.median(alone):.1f} MB '
                 f'(min {min(alone):.1f}, max {max(alone):.1f})' if alone else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
