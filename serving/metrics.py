"""Prometheus metrics for the landing app, on a port of its own (METRICS_PORT; 0 turns them off).

One scrape target per container, served by the supervisor process, holding:
- landing_http_requests_total{method, route, status} and
  landing_http_request_duration_seconds{route}: counted by the guard in every worker. The
  route is the handler (`Landing.index`, `static`, `unmatched`, `refused`), never the raw
  path, so query strings and random 404 paths cannot explode the label set.
- landing_threads_busy / landing_threads_total: Python threads holding a request, and the
  pool (THREADS x WORKERS): busy at the pool size is saturation; landing_http_requests_in_flight
  counts the requests being answered.
- process_* for the supervisor and each worker, labelled by process.
granian's own exporter stays off (serving/supervisor.py says why), so its figures are not passed on.
Workers are separate processes, so their figures go through prometheus_client's
multiprocess mode: files in a folder under /dev/shm (a tmpfs even in a read-only container).
"""
from __future__ import annotations  # annotations name prometheus_client, imported only when used

import collections
import functools
import glob
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, TypedDict, cast

if TYPE_CHECKING:
    import asyncio
    import socket

    from prometheus_client.core import Metric
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
            timer = self.duration.labels(route)
            for elapsed in durations:
                timer.observe(elapsed)
        self.busy.set(len(self.active))

    def sample(self, every: float) -> None:
        """Publish every `every` seconds, for the life of the worker."""
        while True:
            self.publish()
            time.sleep(every)


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


_CHILDREN = '/proc/{pid}/task/{pid}/children'
_LIVE_FILE = re.compile(r'gauge_live\w+_(\d+)\.db$')


def child_pids(pid: int) -> list[int]:
    """Return the PIDs of `pid`'s child processes (granian's workers), from /proc."""
    try:
        with open(_CHILDREN.format(pid=pid)) as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


class ProcessTree:
    """process_* figures for the supervisor and each worker, labelled by process."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid or os.getpid()

    def collect(self) -> Iterator[Metric]:
        """Yield prometheus_client's process metrics for every process of the server."""
        from prometheus_client import ProcessCollector
        from prometheus_client.core import Metric

        merged: dict[str, Metric] = {}
        names = [(self.pid, 'supervisor')] + [
            (child, f'worker-{index}') for index, child in enumerate(child_pids(self.pid), 1)]
        for pid, name in names:
            collector = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in collector.collect():
                into = merged.setdefault(family.name, Metric(
                    family.name, family.documentation, family.type))
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, 'process': name}, sample.value)
        yield from merged.values()


class MultiProcess:
    """The workers' figures from the multiprocess folder, forgetting workers that are gone."""

    def __init__(self, folder: str) -> None:
        from prometheus_client import multiprocess
        from prometheus_client.registry import CollectorRegistry

        self.folder = folder
        self.multiprocess = multiprocess
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=folder)

    def collect(self) -> Iterator[Metric]:
        """Yield the workers' metric families, and the requests in flight."""
        from prometheus_client.core import GaugeMetricFamily

        for path in glob.glob(os.path.join(self.folder, 'gauge_live*.db')):
            # The glob finds prometheus_client's live gauge files, all named as _LIVE_FILE says.
            pid = int(cast(re.Match[str], _LIVE_FILE.search(path)).group(1))
            if not os.path.exists(f'/proc/{pid}'):
                self.multiprocess.mark_process_dead(pid, self.folder)
        families = list(self.registry.collect())
        yield from families
        in_flight = GaugeMetricFamily(
            'landing_http_requests_in_flight',
            'Requests being answered: one per busy thread (granian does not report the ones '
            'still waiting for a thread).')
        in_flight.add_metric([], sum(sample.value for family in families
                                     if family.name == 'landing_threads_busy'
                                     for sample in family.samples))
        yield in_flight


# A scrape's request must arrive, and its answer be taken, within this many seconds each: a
# silent or slow connection is closed, never waited on.
IO_TIMEOUT = 5
# Connections held at once (Prometheus keeps one): a new one past it closes the oldest still
# waiting for its request, so a flood of silent connections never shuts a scrape out.
MAX_CONNECTIONS = 64
# Longest request head read; a longer one is refused.
MAX_HEAD = 8192


class Exporter:
    """/metrics over HTTP/1.1 from one asyncio thread, rendered by one more.

    prometheus_client's own server (wsgiref) spends a thread per connection with no timeout:
    silent connections pile up threads. Here a connection costs a coroutine, is closed after
    IO_TIMEOUT seconds of silence, and at most MAX_CONNECTIONS wait at once; answers carry
    `Server: Landing` and no version.
    """

    def __init__(self, registry: CollectorRegistry, listener: socket.socket) -> None:
        import asyncio
        import concurrent.futures

        self.asyncio = asyncio
        self.registry = registry
        self.listener = listener
        # Connections whose request has not arrived yet, oldest first.
        self.waiting: dict[asyncio.StreamWriter, asyncio.WriteTransport] = {}
        self.render_pool = concurrent.futures.ThreadPoolExecutor(1, 'metrics-render')

    def run(self) -> None:
        """Serve until the process ends (the thread's target)."""
        self.asyncio.run(self.main())

    async def main(self) -> None:
        """Accept connections on the listener forever."""
        served = await self.asyncio.start_server(self.handle, sock=self.listener, limit=MAX_HEAD)
        async with served:
            await served.serve_forever()

    def render(self, accept: str) -> tuple[bytes, str]:
        """Return the metrics in the format `accept` asks for, and its content type."""
        from prometheus_client import exposition

        encoder, content_type = exposition.choose_encoder(accept)
        return encoder(self.registry), content_type

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request on a connection, then close it."""
        if len(self.waiting) >= MAX_CONNECTIONS:
            oldest = next(iter(self.waiting))
            self.waiting.pop(oldest).close()
        self.waiting[writer] = writer.transport
        try:
            await self.answer(reader, writer)
        except (OSError, EOFError, ValueError, self.asyncio.TimeoutError):
            pass  # gone, silent, slow or garbled: nothing to answer
        finally:
            self.waiting.pop(writer, None)
            writer.close()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read a request head; write the metrics for GET (and HEAD), 405 for other methods.

        Reading the head and sending the answer have IO_TIMEOUT each; rendering has none
        (Prometheus' own scrape timeout bounds it).
        """
        head = await self.asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), IO_TIMEOUT)
        self.waiting.pop(writer, None)
        lines = head.decode('latin-1').split('\r\n')
        method = lines[0].split(' ', 1)[0]
        accept = next((line.split(':', 1)[1].strip() for line in lines[1:]
                       if line.lower().startswith('accept:')), '')
        if method in ('GET', 'HEAD'):
            loop = self.asyncio.get_running_loop()
            body, content_type = await loop.run_in_executor(self.render_pool, self.render, accept)
            status = '200 OK'
        else:
            body, content_type = b'Method Not Allowed\n', 'text/plain'
            status = '405 Method Not Allowed'
        writer.write(f'HTTP/1.1 {status}\r\nServer: Landing\r\nContent-Type: {content_type}\r\n'
                     f'Content-Length: {len(body)}\r\nConnection: close\r\n\r\n'.encode())
        if method != 'HEAD':
            writer.write(body)
        await self.asyncio.wait_for(writer.drain(), IO_TIMEOUT)


def serve(listener: socket.socket, folder: str) -> Exporter:
    """Serve /metrics on the bound `listener` from this (the supervisor) process; return it."""
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MultiProcess(folder))
    registry.register(ProcessTree())
    exporter = Exporter(registry, listener)
    threading.Thread(target=exporter.run, name='metrics', daemon=True).start()
    return exporter
