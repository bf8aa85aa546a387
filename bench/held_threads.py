"""What slow bodies and slow readers of a big file hold, per checkout: threads, time, memory.

usage: python bench/held_threads.py [--app DIR ...] [--python PATH]

For each DIR (default: this repository), in one run so before and after compare:
- silent uploaders: DIR/tests/slow_landing.py with THREADS=2 and BODY_TIMEOUT=2; 4 clients
  send the head of a POST /upload and 10 of its 60,000 bytes, then stay silent and open.
  Printed: when each got its answer (408) or close, a fresh /healthcheck after them, two
  concurrent /slow?seconds=1 pages, and whether the worker was replaced as silent. Then, with
  THREADS=10 and the default BODY_TIMEOUT (10), 20 such uploaders: the slowest of fresh
  /healthcheck probes made every 2 s for 8 s while they hold;
- slow readers of a big file: a copy of DIR with a 64 MiB + 1 byte static/big.bin, THREADS=2;
  20 clients ask for it with a 1 KB receive window and never read. Printed: worker-tree RSS
  and kernel send queue per client, and a fresh /healthcheck while they hold.
It is a report: it exits 0 whatever the servers do. Servers are stopped by their PIDs.
"""
import argparse
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(REPO, 'tests'))

from costs import memory  # noqa: E402
from hostile import interpreter, labels_for  # noqa: E402

import hostile_corpus as corpus  # noqa: E402  (needs tests/ on sys.path)

UPLOADERS = 4
READERS = 20
BIG = 64 * 1024 * 1024 + 1


def parse_args(argv):
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--app', action='append', metavar='DIR',
                        help='a checkout holding landing.py (repeatable; default: this repo)')
    parser.add_argument('--python', help='interpreter for every app (default: DIR/.venv or this)')
    return parser.parse_args(argv)


class SlowApp(corpus.AppProcess):
    """DIR/tests/slow_landing.py (it has /upload and /slow) instead of DIR/landing.py."""

    def __init__(self, app_dir, workdir, python, env):
        self.app_dir, self.workdir, self.python = app_dir, str(workdir), python
        self.port = corpus.free_port()
        self.stderr_path = os.path.join(self.workdir, 'stderr.log')
        environment = dict(os.environ, HOST='127.0.0.1', PORT=str(self.port),
                           METRICS_PORT=str(corpus.free_port()), **env)
        with open(os.path.join(self.workdir, 'stdout.log'), 'wb') as out, \
                open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(
                [python, os.path.join(app_dir, 'tests', 'slow_landing.py')], cwd=self.workdir,
                env=environment, stdout=out, stderr=err)
        self.pid = self.proc.pid


def answers_or_closes(socks, deadline):
    """For each socket: (seconds until the server answered or closed it, or None; first line)."""
    started = time.monotonic()
    found = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while len(found) < len(socks):
            left = deadline - (time.monotonic() - started)
            ready = selector.select(timeout=max(left, 0)) if left > 0 else []
            if not ready:
                break
            for key, _ in ready:
                try:
                    data = key.fileobj.recv(64)
                except OSError:
                    data = b''
                found[key.fileobj] = (time.monotonic() - started, data.split(b'\r\n', 1)[0])
                selector.unregister(key.fileobj)
    return [found.get(sock, (None, b'')) for sock in socks]


def timed_get(port, path, timeout):
    """(status or error name, seconds) of one GET on a new connection."""
    started = time.monotonic()
    try:
        reply = corpus.talk(port, corpus.get(path), timeout=timeout, settle=0)
        first = reply.first()
        status = first.status if first else 'no answer'
    except OSError as error:
        status = type(error).__name__
    return status, time.monotonic() - started


def silent_uploaders(app, python, workdir):
    """Rows for the silent-uploader scenario."""
    server = SlowApp(app, workdir, python, {'THREADS': '2', 'BODY_TIMEOUT': '2'})
    rows = []
    try:
        server.wait_ready()
        socks = []
        for _ in range(UPLOADERS):
            socks.append(corpus.slow_uploader(server.port, '/upload'))
        answers = answers_or_closes(socks, 12)
        rows.append(('uploaders: answer or close after (s)', ', '.join(
            f'{seconds:.2f} {line.decode(errors="replace")[9:12] or "close"}'
            if seconds is not None else 'none in 12' for seconds, line in answers)))
        status, seconds = timed_get(server.port, '/healthcheck', 5)
        rows.append(('uploaders held: fresh /healthcheck', f'{status} in {seconds:.2f} s'))
        results = []
        pages = [threading.Thread(target=lambda: results.append(
            timed_get(server.port, '/slow?seconds=1', 10))) for _ in range(2)]
        for page in pages:
            page.start()
        for page in pages:
            page.join(15)
        rows.append(('uploaders held: two 1 s pages', ', '.join(
            f'{status} in {seconds:.2f} s' for status, seconds in results)))
        for sock in socks:
            sock.close()
        rows.append(('uploaders: worker replaced as silent',
                     'yes' if 'showed no sign of life' in server.stderr() else 'no'))
    except RuntimeError as error:
        rows.append(('error', str(error)[:200]))
    finally:
        server.stop()
    return rows


def many_uploaders(app, python, workdir):
    """Rows for 20 silent uploaders to a handler with THREADS=10."""
    server = SlowApp(app, workdir, python, {'THREADS': '10'})
    rows = []
    try:
        server.wait_ready()
        with corpus.Sockets() as socks:
            corpus.open_many(20, lambda: corpus.slow_uploader(server.port, '/upload'), socks)
            probes = []
            for _ in range(4):
                tick = time.monotonic() + 2
                probes.append(timed_get(server.port, '/healthcheck', 15))
                corpus.wait_for(lambda end=tick: time.monotonic() > end, 3)
        rows.append(('20 uploaders, THREADS=10: probes', ', '.join(
            f'{status} in {seconds:.2f} s' for status, seconds in probes)))
    except RuntimeError as error:
        rows.append(('error', str(error)[:200]))
    finally:
        server.stop()
    return rows


def big_file_readers(app, python, workdir):
    """Rows for the slow readers of a 64 MiB + 1 file."""
    copy = os.path.join(workdir, 'app')
    shutil.copytree(app, copy, ignore=shutil.ignore_patterns(
        '.venv', '.git', 'tests', 'bench', 'docs', 'deploy', '__pycache__', 'test-output'))
    with open(os.path.join(copy, 'static', 'big.bin'), 'wb') as handle:
        handle.truncate(BIG)
    run = os.path.join(workdir, 'run')
    os.makedirs(run)
    server = corpus.AppProcess(copy, run, python=python, env={'THREADS': '2'})
    rows = []
    try:
        server.wait_ready()
        rss, queued, opened = memory(
            server, lambda port: corpus.slow_reader(port, '/static/big.bin'), READERS)
        rows.append((f'{READERS} readers stopped: kB/conn',
                     f'{rss:.0f} RSS + {queued:.0f} queued ({opened})'))
        with corpus.Sockets() as held:
            corpus.open_many(READERS, lambda: corpus.slow_reader(
                server.port, '/static/big.bin'), held)
            time.sleep(1)  # every reader's request taken in before the probe queues
            status, seconds = timed_get(server.port, '/healthcheck', 5)
        rows.append((f'{READERS} readers stopped: fresh /healthcheck',
                     f'{status} in {seconds:.2f} s'))
    except RuntimeError as error:
        rows.append(('error', str(error)[:200]))
    finally:
        server.stop()
    return rows


def main(argv=None):
    """Measure each app and print one table, a row per figure and a column per app."""
    args = parse_args(argv)
    apps = [os.path.abspath(app) for app in (args.app or [REPO])]
    labels = labels_for(apps)
    corpus.raise_open_files()
    results = {}
    with tempfile.TemporaryDirectory(prefix='held-') as scratch:
        for index, (label, app) in enumerate(zip(labels, apps, strict=True)):
            print(f'{label}: measuring {app}', file=sys.stderr)
            python = interpreter(app, args.python)
            folders = [os.path.join(scratch, f'{index}-{name}')
                       for name in ('uploads', 'many', 'readers')]
            for folder in folders:
                os.makedirs(folder)
            results[label] = dict(silent_uploaders(app, python, folders[0])
                                  + many_uploaders(app, python, folders[1])
                                  + big_file_readers(app, python, folders[2]))
    names = list(dict.fromkeys(name for rows in results.values() for name in rows))
    width = max(len(name) for name in names) + 2
    print('figure'.ljust(width) + ' | '.join(labels))
    for name in names:
        print(name.ljust(width) + ' | '.join(results[label].get(name, '-') for label in labels))
    return 0


if __name__ == '__main__':
    sys.exit(main())
