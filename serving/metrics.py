"""Prometheus metrics for the landing app, on a port of its own (METRICS_PORT; 0 turns them off).

One scrape target per container, served by the supervisor process, holding:
- landing_http_requests_total{method, route, status} and
  landing_http_request_duration_seconds{route}: counted by the guard in every worker. The
  route is the handler (`Landing.index`, `static`, `unmatched`, `refused`), never the raw
  path, so query strings and random 404 paths cannot explode the label set.
- landing_threads_busy / landing_threads_total: Python threads holding a request, and the
  pool (THREADS x WORKERS): busy at the pool size is saturation; landing_http_requests_in_flight
  counts the requests being answered.
- process_* for the supervisor and each worker, labelled by process (serving/exporter.py,
  which serves them all from the supervisor).
granian's own exporter stays off (serving/supervisor.py says why), so its figures are not passed on.
Workers are separate processes, so their figures go through prometheus_client's
multiprocess mode: files in a folder under /dev/shm (a tmpfs even in a read-only container).
"""
from __future__ import annotations  # annotations name prometheus_client, imported only when used

import bisect
import collections
import glob
import os
import shutil
import tempfile
import threading
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:

    from prometheus_client.registry import CollectorRegistry

    class _Registry(TypedDict, total=False):
        """The metrics' registry argument: left out, prometheus_client's default one."""

        registry: CollectorRegistry

MULTIPROC_ENV = 'PROMETHEUS_MULTIPROC_DIR'
# Latency of a landing page: from a cached answer (1 ms) to a stuck upstream (5 s).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = frozenset({'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'})
# Seconds between two publications of a worker's busy threads.
SAMPLE_EVERY = 0.25


def prepare_directory(environ: MutableMapping[str, str] = os.environ) -> str:
    """Point prometheus_client's multiprocess mode at a fresh folder; return its path.

    Must run before prometheus_client is imported: it picks its storage at import.
    """
    # /dev/shm: a tmpfs even in a read-only container; the folder is ours alone (our PID).
    shm = '/dev/shm'  # noqa: S108
    parent = shm if os.access(shm, os.W_OK) else tempfile.gettempdir()
    remove_leftovers(parent)
    folder = os.path.join(parent, f'landing-metrics-{os.getpid()}')
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    environ[MULTIPROC_ENV] = folder
    return folder


def remove_leftovers(parent: str) -> None:
    """Remove the folders in `parent` of servers that are gone (killed, so never tidied up)."""
    for folder in glob.glob(os.path.join(parent, 'landing-metrics-*')):
        pid = folder.rsplit('-', 1)[1]
        if pid.isdigit() and not os.path.exists(f'/proc/{pid}'):
            shutil.rmtree(folder, ignore_errors=True)


def remove_directory(folder: str) -> None:
    """Remove the multiprocess folder at exit: it holds nothing worth keeping."""
    shutil.rmtree(folder, ignore_errors=True)


class RequestMetrics:
    """The figures one worker process records per request, written to the shared folder.

    A request only appends to a deque and adds or discards its thread in a set (atomic under
    the GIL, no lock); a sampler thread writes the counts, durations and busy threads to the
    shared files every SAMPLE_EVERY seconds. Written by each of 100 threads through
    prometheus_client's one lock, the same figures cost a tenth of the page's req/s.
    """

    def __init__(self, threads: int, registry: CollectorRegistry | None = None,
                 sample_every: float | None = None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        kwargs: _Registry = {} if registry is None else {'registry': registry}
        self.requests = Counter(
            'landing_http_requests', 'Requests answered, by method, route and status class.',
            ['method', 'route', 'status'], **kwargs)
        self.duration = Histogram(
            'landing_http_request_duration_seconds',
            'Time from the request reaching a thread to its answer being ready, by route.',
            ['route'], buckets=BUCKETS, **kwargs)
        self.busy = Gauge('landing_threads_busy', 'Python threads holding a request.',
                          multiprocess_mode='livesum', **kwargs)
        self.total = Gauge('landing_threads_total', 'Python threads in the pools (THREADS).',
                           multiprocess_mode='livesum', **kwargs)
        self.total.set(threads)
        self.active: set[int] = set()
        # (method, route, status, seconds) of each request answered since the last publish().
        self.answered: collections.deque[tuple[str, str, int, float]] = collections.deque()
        if sample_every:
            threading.Thread(target=self.sample, args=(sample_every,), name='metrics-sampler',
                             daemon=True).start()

    def started(self) -> float:
        """Note a request taking this thread; return when it started."""
        self.active.add(threading.get_ident())
        return time.perf_counter()

    def finished(self, started: float, method: str, route: str, status: int) -> None:
        """Note a request answered: its method, route, status code and duration."""
        self.answered.append((method, route, status, time.perf_counter() - started))
        self.active.discard(threading.get_ident())

    def publish(self) -> None:
        """Write what was answered since the last call, and the busy threads, to the files."""
        counters: dict[tuple[str, str, str], int] = {}
        timers: dict[str, list[float]] = {}
        while self.answered:
            method, route, status, elapsed = self.answered.popleft()
            key = (method if method in METHODS else 'other', route, f'{status // 100}xx')
            counters[key] = counters.get(key, 0) + 1
            timers.setdefault(route, []).append(elapsed)
        for key, count in counters.items():
            self.requests.labels(*key).inc(count)
        for route, durations in timers.items():
            observe_all(self.duration.labels(route), durations)
        self.busy.set(len(self.active))

    def sample(self, every: float) -> None:
        """Publish every `every` seconds, for the life of the worker."""
        while True:
            self.publish()
            time.sleep(every)


def observe_all(histogram: Any, durations: list[float]) -> None:
    """Observe each of `durations` in `histogram` (a labelled child), as observe() each would.

    Counted into buckets here, then written once a bucket: prometheus_client's observe()
    takes its lock and writes the shared file twice a request, a twentieth of a request's
    CPU under load. Without the fields that takes (another prometheus_client), observe() each.
    """
    bounds = getattr(histogram, '_upper_bounds', None)
    buckets = getattr(histogram, '_buckets', None)
    total = getattr(histogram, '_sum', None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for elapsed in durations:
            histogram.observe(elapsed)
        return
    counts = [0] * len(bounds)
    for elapsed in durations:
        # observe() counts a value in the first bucket whose bound is at least the value;
        # the last bound is +Inf.
        counts[bisect.bisect_left(bounds, elapsed)] += 1
    total.inc(sum(durations))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def route_of(request: object) -> str:
    """Return the route label for a CherryPy request: its handler, 'static' or 'unmatched'."""
    handler = getattr(request, 'handler', None)
    handler = getattr(handler, 'oldhandler', handler)  # server.Utf8Handler wraps the page handler
    callable_ = getattr(handler, 'callable', None)
    if callable_ is not None:
        name: str = getattr(callable_, '__qualname__', 'handler')
        return name
    config = getattr(request, 'config', None) or {}
    if handler is None and (config.get('tools.staticdir.on') or config.get('tools.staticfile.on')):
        return 'static'
    return 'unmatched'
