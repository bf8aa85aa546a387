"""What one request and one connection cost each checkout: CPU, the probe under attack, memory.

usage: python bench/costs.py [--app DIR ...] [--python PATH] [--connections N]

Each DIR (default: this repository) is started as `python DIR/landing.py` on a free 127.0.0.1
port at the default settings (THREADS=100, one worker), using DIR/.venv/bin/python when it
exists. Printed per app, in one run so before and after compare:
- server CPU (ms, least of 3 tries) of each worst header and body request of
  tests/hostile_corpus.py, and the costliest;
- the median and worst fresh /healthcheck while 4 clients repeat the costliest request (6 s);
- worker-tree RSS (kB) per connection for N connections each: 15 KB of unfinished headers,
  not reading the page, not reading the logo (the largest shipped file), not reading a 4 MB
  static file (in a copy of the app), and a slow upload to a 404. MAX_CONNECTIONS is 4096
  here (the corpus servers'), so every connection is taken in. Socket buffers are the
  kernel's and not in RSS: the send queue a non-reader leaves is printed beside it.
It is a report: it exits 0 whatever the servers do. Servers are stopped by their PIDs.
"""
import argparse
import os
import sys
import tempfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(REPO, 'tests'))

from hostile import interpreter, labels_for  # noqa: E402

import hostile_corpus as corpus  # noqa: E402  (needs tests/ on sys.path)


def parse_args(argv):
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--app', action='append', metavar='DIR',
                        help='a checkout holding landing.py (repeatable; default: this repo)')
    parser.add_argument('--python', help='interpreter for every app (default: DIR/.venv or this)')
    parser.add_argument('--connections', type=int, default=1000,
                        help='connections per memory measurement (default 1000)')
    return parser.parse_args(argv)


def send_queue_kb(port):
    """The kernel's send queue (kB) summed over the server's sockets to `port` (ss -tn)."""
    import subprocess  # only this figure needs it
    try:
        listing = subprocess.run(['ss', '-tnH', f'sport = :{port}'], capture_output=True,
                                 text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sum(int(line.split()[2]) for line in listing.splitlines() if line.split()) / 1024


def memory(server, make, count):
    """(RSS kB per connection, send queue kB per connection) for `count` made by make(port)."""
    corpus.wait_for(server.healthy, 20)
    before = corpus.tree_kb(server.pid, 'VmRSS')
    with corpus.Sockets() as held:
        corpus.open_many(count, lambda: make(server.port), held)
        last = -1
        for _ in range(60):
            corpus.time.sleep(0.25)
            grown = corpus.tree_kb(server.pid, 'VmRSS') - before
            if grown == last:
                break
            last = grown
        queued = send_queue_kb(server.port)
        opened = max(len(held), 1)
    corpus.wait_for(server.healthy, 30)
    return grown / opened, (queued or 0) / opened, opened


def measure(app, python, workdir, count):
    """Every figure for one app, as (label, text) rows."""
    rows = []
    server = corpus.AppProcess(app, workdir, python=python, env={'THREADS': '100'})
    try:
        server.wait_ready()
        worst, costs = corpus.costliest(server)
        rows += [(f'CPU ms: {label}', f'{spent * 1000:.1f}') for label, spent in costs.items()]
        rows.append(('costliest request', worst))
        outcome = corpus.probe_median_under_attack(
            server, {**corpus.WORST_HEADERS, **corpus.WORST_BODIES}[worst])
        rows.append(('probe under 4 attackers', outcome.detail.split(': ', 1)[1]))
        for label, make in (
                ('unfinished 15 KB headers', corpus.held_headers),
                ('not reading the page', lambda port: corpus.non_reader(port, '/', pipelined=1)),
                ('not reading the logo (largest shipped file)',
                 lambda port: corpus.non_reader(port, corpus.LOGO_PATH, pipelined=1)),
                ('slow upload to a 404', lambda port: corpus.slow_uploader(port, '/nope'))):
            rss, queued, opened = memory(server, make, count)
            rows.append((f'kB/conn: {label}', f'{rss:.1f} RSS + {queued:.1f} queued ({opened})'))
        copy = corpus.decorated_copy(server)
        rss, queued, opened = memory(
            copy, lambda port: corpus.slow_reader(port, '/static/big.bin'), min(count, 100))
        rows.append(('kB/conn: not reading a 4 MB file',
                     f'{rss:.1f} RSS + {queued:.1f} queued ({opened})'))
    except RuntimeError as error:
        rows.append(('error', str(error)[:200]))
    finally:
        server.stop()
        corpus.stop_copies()
    return rows


def main(argv=None):
    """Measure each app and print one table, a row per figure and a column per app."""
    args = parse_args(argv)
    apps = [os.path.abspath(app) for app in (args.app or [REPO])]
    labels = labels_for(apps)
    corpus.raise_open_files()
    results = {}
    with tempfile.TemporaryDirectory(prefix='costs-') as scratch:
        for index, (label, app) in enumerate(zip(labels, apps, strict=True)):
            print(f'{label}: measuring {app}', file=sys.stderr)
            workdir = os.path.join(scratch, str(index))
            os.makedirs(workdir)
            results[label] = dict(measure(app, interpreter(app, args.python), workdir,
                                          args.connections))
    names = list(dict.fromkeys(name for rows in results.values() for name in rows))
    width = max(len(name) for name in names) + 2
    print('figure'.ljust(width) + ' | '.join(labels))
    for name in names:
        print(name.ljust(width) + ' | '.join(results[label].get(name, '-') for label in labels))
    return 0


if __name__ == '__main__':
    sys.exit(main())
