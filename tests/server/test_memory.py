"""Memory the process tree shares: what the supervisor built before forking stays shared.

bench/idle_memory.py measures the figures (docs/performance.md); these tests pin the means.
"""
import os

from conftest import ROOT, request

GC_APP = os.path.join(ROOT, 'tests', 'gc_landing.py')


def test_a_worker_leaves_what_it_inherited_out_of_garbage_collections(start_server):
    """The app, CherryPy and granian, built before the fork, are frozen in the worker.

    A full collection would write to each of those objects, copying every page the worker
    shares with the supervisor.
    """
    server = start_server(script=GC_APP).wait_ready()
    status, _, body = request(server.port, 'GET', '/frozen')
    assert status == 200
    # Unfrozen, none are; frozen, the collector-tracked objects of CherryPy, granian and the
    # standard library they import: about 40,000.
    assert int(body) > 20_000
    assert server.stop() == 0
