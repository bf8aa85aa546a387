"""The serving package's process plumbing, one piece at a time: logs, limits and early signals."""
import os
import resource
import signal
from unittest import mock

import cherrypy
import pytest

import serving.access_log
import serving.settings
import serving.startup
import serving.stop_early
import serving.supervisor
import serving.workers


def test_apps_get_the_fast_access_log_once(in_process):
    """AccessLogs gives each app our log manager once; a restart leaves it as it is."""
    serving.access_log.AccessLogs()()
    first = {id(app.log) for app in cherrypy.tree.apps.values()}
    serving.access_log.AccessLogs()()
    assert {id(app.log) for app in cherrypy.tree.apps.values()} == first
    assert {type(app.log) for app in cherrypy.tree.apps.values()} == {serving.access_log.AccessLog}


@pytest.mark.parametrize('soft, hard, raised', [(256, 4096, True), (4096, 4096, False)])
def test_the_open_files_limit_is_raised_to_the_hard_limit(soft, hard, raised):
    """Every connection is a descriptor: the soft limit goes up to the hard one at start."""
    with mock.patch.object(resource, 'getrlimit', return_value=(soft, hard)), \
            mock.patch.object(resource, 'setrlimit') as setrlimit:
        serving.startup.raise_open_files_limit()
    assert setrlimit.call_args_list == ([mock.call(resource.RLIMIT_NOFILE, (hard, hard))]
                                        if raised else [])


@pytest.mark.parametrize('files, workers, wanted, expected', [
    (1_048_576, 1, 4096, 4096),  # a container's usual limit: MAX_CONNECTIONS decides
    (256, 1, 4096, 192),         # a low limit: stay under it, never run out of descriptors
    (256, 2, 4096, 96),          # shared between workers
    (10, 1, 4096, 16),           # absurdly low: still a few
])
def test_connections_per_worker_stay_under_the_open_files_limit(files, workers, wanted, expected):
    """Each granian worker holds at most this many connections; the rest wait in the backlog."""
    settings = serving.settings.Settings(workers=workers, max_connections=wanted)
    with mock.patch.object(resource, 'getrlimit', return_value=(files, files)):
        assert serving.supervisor.connections_per_worker(settings) == expected


@pytest.fixture
def own_signal_handlers():
    """Restore this process's SIGTERM, SIGINT and SIGQUIT handlers after a test replaces them."""
    saved = {signum: signal.getsignal(signum)
             for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    serving.workers.worker_signals.clear()


def test_a_signal_during_worker_loading_is_kept_for_run_worker(own_signal_handlers):
    """SIGTERM while a worker loads is noted for run_worker; Ctrl-C and Ctrl-backslash are not.

    The supervisor gets those too, and stops the workers itself.
    """
    serving.workers.note_early_signals()
    signal.raise_signal(signal.SIGTERM)  # while the worker is "loading"
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGQUIT)
    assert serving.workers.worker_signals == [signal.SIGTERM]


def test_a_worker_keeps_the_supervisors_inherited_handler_from_acting(own_signal_handlers):
    """In a forked worker the supervisor's handler only notes the signal for granian's."""
    supervisor = serving.supervisor.Server.__new__(serving.supervisor.Server)
    supervisor.pid = -1  # not this process
    supervisor.signal_handler_interrupt(signal.SIGINT)
    assert serving.workers.worker_signals == [signal.SIGINT]


@pytest.mark.parametrize('signalled', [True, False])
def test_start_up_stops_at_once_if_signalled_early(signalled):
    """A SIGTERM noted during start-up interrupts the server as soon as it has started."""
    supervisor = mock.Mock()
    with mock.patch.object(serving.stop_early, 'signals', [signal.SIGTERM] if signalled else []):
        serving.startup.stop_if_signalled_early(supervisor)
    assert supervisor.signal_handler_interrupt.called is signalled


@pytest.mark.parametrize('parent_alive', [True, False])
def test_a_worker_asks_to_die_with_its_supervisor(parent_alive):
    """prctl(PR_SET_PDEATHSIG, SIGKILL); a supervisor already gone means stopping at once."""
    libc = mock.Mock()
    supervisor = os.getppid() if parent_alive else -1
    with mock.patch.object(serving.workers.ctypes, 'CDLL', return_value=libc), \
            mock.patch.object(serving.workers.os, 'kill') as kill:
        serving.workers.die_with_supervisor(supervisor)
    libc.prctl.assert_called_once_with(serving.workers.PR_SET_PDEATHSIG, signal.SIGKILL)
    assert kill.called is not parent_alive
