"""What scraping /metrics costs the page: req/s of / with and without a scrape every second.

usage: bench/.venv/bin/python bench/scrape_cost.py [--duration S] [--rounds N] [--app DIR]
(./bench/run.sh sets up bench/.venv; run this with that interpreter afterwards)

One landing server on the server core, wrk -c100 on the other, in alternating rounds: plain,
then with a scraper fetching /metrics once a second, then plain again, and so on. Prints the
median req/s and p99 of each mode, their ratio, and the /metrics latency the scraper saw.
Every process started is stopped by its PID; every loop has a deadline.
"""
import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)

import load  # noqa: E402  (bench/ modules, beside this file)
from servers import HOST, Server  # noqa: E402

SCRAPE_INTERVAL = 1.0


def parse_args(argv):
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--duration', type=int, default=10, help='seconds per wrk run')
    parser.add_argument('--rounds', type=int, default=3, help='rounds of each mode')
    parser.add_argument('--app', default=os.path.dirname(BENCH_DIR), help='folder of landing.py')
    parser.add_argument('--connections', type=int, default=100)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--server-core', type=int, default=0)
    parser.add_argument('--load-core', type=int, default=1)
    return parser.parse_args(argv)


class Scraper(threading.Thread):
    """Fetch /metrics once a second until stopped; keep each fetch's latency in ms."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stopped, self.latencies = port, threading.Event(), []

    def run(self):
        """Scrape on the interval until stop() or an hour passes."""
        end = time.monotonic() + 3600
        while not self.stopped.is_set() and time.monotonic() < end:
            started = time.perf_counter()
            conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            try:
                conn.request('GET', '/metrics')
                answer = conn.getresponse()
                answer.read()
                if answer.status == 200:
                    self.latencies.append((time.perf_counter() - started) * 1e3)
            finally:
                conn.close()
            self.stopped.wait(SCRAPE_INTERVAL)

    def stop(self):
        """Stop scraping and wait for the thread."""
        self.stopped.set()
        self.join(timeout=15)


def percentile(values, pct):
    """Return the pct-th percentile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main(argv=None):
    """Measure both modes in alternating rounds and print the comparison."""
    args = parse_args(argv)
    results = {'plain': [], 'scraped': []}
    latencies = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {'HOST': HOST, 'PORT': '{port}', 'METRICS_PORT': '{metrics_port}',
               'PYTHONUNBUFFERED': '1'}
        server = Server('landing', [sys.executable, 'landing.py'], tmp, args.server_core, env,
                        cwd=os.path.abspath(args.app))
        try:
            server.start()
            server.settle()
            load.run_wrk(args, server, '/', duration=2)  # warm up
            for _ in range(args.rounds):
                for mode in ('plain', 'scraped'):
                    scraper = Scraper(server.metrics_port) if mode == 'scraped' else None
                    if scraper:
                        scraper.start()
                    try:
                        results[mode].append(load.run_wrk(args, server, '/'))
                    finally:
                        if scraper:
                            scraper.stop()
                            latencies.extend(scraper.latencies)
        finally:
            server.stop()
    print(f'/ at c{args.connections}, {args.rounds} alternating rounds of {args.duration:g} s')
    medians = {}
    for mode, runs in results.items():
        medians[mode] = statistics.median(run['rps'] for run in runs)
        p99 = statistics.median(run['p99_ms'] for run in runs)
        rounds = ', '.join(f"{run['rps']:,.0f}" for run in runs)
        print(f'  {mode:<8} {medians[mode]:9,.0f} req/s   p99 {p99:6.1f} ms   (rounds: {rounds})')
    print(f'  scraped / plain: {medians["scraped"] / medians["plain"]:.3f}')
    if latencies:
        print(f'/metrics under that load: {len(latencies)} scrapes, p50 '
              f'{percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, '
              f'max {max(latencies):.1f} ms')
    return 0


if __name__ == '__main__':
    sys.exit(main())
