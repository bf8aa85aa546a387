"""The supervisor's /metrics: every process's figures, one scrape target per container.

The workers count (serving/metrics.py) into prometheus_client's multiprocess files; this
serves them, with process_* figures for the supervisor and each worker, on METRICS_PORT from
the supervisor, away from the request threads.
"""
from __future__ import annotations  # annotations name prometheus_client, imported only when used

import functools
import glob
import os
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import asyncio
    import socket

    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry



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


def preload() -> None:
    """Import what the exporter and the workers' counters run, before the workers are forked.

    Imported after the fork, the same modules would be built twice, once in each process, and
    their objects would land in the free slots of pages the processes still share, copying those
    too (measured: 2-3 MB more for the process tree).
    """
    import concurrent.futures.thread  # noqa: F401  # the render pool

    import prometheus_client.core  # noqa: F401  # the package too: the workers' counters
    import prometheus_client.exposition  # noqa: F401
    import prometheus_client.multiprocess  # noqa: F401


def serve(listener: socket.socket, folder: str) -> Exporter:
    """Serve /metrics on the bound `listener` from this (the supervisor) process; return it."""
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MultiProcess(folder))
    registry.register(ProcessTree())
    exporter = Exporter(registry, listener)
    threading.Thread(target=exporter.run, name='metrics', daemon=True).start()
    return exporter
