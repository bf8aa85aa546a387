"""Start-up: configure CherryPy, mount the app, check the addresses, and serve until stopped."""
import functools
import importlib
import importlib.machinery
import logging
import multiprocessing
import os
import resource
import signal
import socket
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import cast
from wsgiref.types import WSGIApplication

import cherrypy

from serving import handlers, stop_early
from serving.access_log import AccessLogs
from serving.app_config import check_app_config
from serving.bodies import max_body
from serving.guard import Guard
from serving.health import draining
from serving.proxies import Proxies
from serving.request import GuardedRequest, GuardedResponse, error_page
from serving.settings import CHERRYPY_DEFAULTS, ConfigError, Settings
from serving.static_files import StaticFiles
from serving.supervisor import Server, build_server, log
from serving.workers import begin_worker, run_worker, start_engine, traced_in_every_thread

# This package's own folder: its frames are not the app's, in a load error's traceback.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def stop_if_signalled_early(server: Server) -> None:
    """Stop `server` as soon as it can, if SIGTERM or Ctrl-C came during start-up."""
    if stop_early.signals:
        server.signal_handler_interrupt()


def raise_open_files_limit() -> None:
    """Raise the soft open-files limit to the hard one: every connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def bindable_address(host: str, port: int, name: str = 'HOST') -> str:
    """Return the IP address to listen on for `host`, or raise ConfigError naming the problem.

    granian binds with SO_REUSEPORT, so a second server on a port in use would start and
    share it silently; a plain bind first fails as it should.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigError(f'{name} {host!r} is not an address this machine has: {error}') from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Connections of an earlier run still in TIME_WAIT must not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ConfigError(f'cannot listen on {host}:{port}: {error.strerror}') from None
    return str(address[0])


def configure(environ: Mapping[str, str]) -> Settings:
    """Configure CherryPy for serving and return the Settings (landing.py's seed, then environ)."""
    settings = Settings.from_environ(environ)
    # CherryPy's log lines print none of these; looking them up cost a getpid() per request.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    # CherryPy's defaults go under the seed. Its server.* keys are not applied again (they
    # set cherrypy.server, which granian never reads); they stay in cherrypy.config, where a
    # handler reads them as it would on cheroot.
    merged = {**CHERRYPY_DEFAULTS, **cherrypy.config}
    cherrypy.config.update({key: value for key, value in merged.items()
                            if not key.startswith('server.')})
    cherrypy.tools.handler = handlers.TOOL
    cherrypy.config.update({
        'error_page.default': error_page,
        # Unused query parameters dropped, str answers sent as UTF-8 (prepare_handler).
        'tools.encode.on': False,
        'tools.handler.on': True,
        # 0 is CherryPy's "no limit", which request.body.maxbytes spells None.
        'request.body.maxbytes': max_body(),
    })
    # granian serves the app; CherryPy's own HTTP server (cheroot) stays off.
    cherrypy.server.unsubscribe()
    cherrypy.engine.subscribe('start', AccessLogs(json=settings.log_format == 'json'),
                              priority=10)
    return settings


# The HSTS policy of a site served with TLS_CERT: a year, this host only (subdomains may
# be other sites). landing.py's HEADERS may name its own.
HSTS = 'max-age=31536000'


def mount(root: object, config_path: str, settings: Settings,
          headers: Mapping[str, str] | None = None) -> Guard:
    """Mount `root` at / with the app config in `config_path`; return the WSGI app to serve.

    `headers` (name to value) go on every answer, errors and refusals included, unless the
    answer sets its own.
    """
    check_app_config(config_path)
    if settings.tls:
        # Browsers that reached the site over HTTPS keep to it for a year (RFC 6797).
        headers = {'Strict-Transport-Security': HSTS, **(headers or {})}
    app_dir = os.path.dirname(os.path.abspath(config_path))
    # prod.conf names static files relative to the app folder, not the working directory.
    app = cherrypy.tree.mount(root, '', {'/': {
        'tools.staticdir.root': app_dir, 'tools.staticfile.root': app_dir}})
    app.merge(config_path)
    app.request_class = GuardedRequest
    app.response_class = GuardedResponse
    # At most half the pool waits for request bodies at once. With no trusted proxies (the
    # default) the guard reads no forwarded header at all.
    proxies = (Proxies(settings.trusted_proxies, settings.forwarded_header)
               if settings.trusted_proxies else None)
    return Guard(cherrypy.tree, draining, headers, max_body(), settings.body_timeout,
                 max(1, settings.threads // 2), proxies=proxies,
                 allowed_hosts=frozenset(settings.allowed_hosts) or None,
                 static=StaticFiles(app))


def load_fresh_app(root: tuple[str, str], config_path: str, supervisor: int,
                   headers: Mapping[str, str] | None, _target: str) -> WSGIApplication:
    """Build the app anew in a spawned worker (RELOAD=1): the edited code, imported afresh.

    `root` names the root class as (module, name); `headers` are serve()'s, as it started. An
    app that cannot load (a syntax error,
    a prod.conf mistake) is reported in one block and ends this worker with exit 1; the
    supervisor keeps watching, and the next save starts a new one.
    """
    begin_worker(supervisor)
    try:
        root_class = getattr(importlib.import_module(root[0]), root[1])
        app = mount(root_class(), config_path, configure(os.environ), headers)
    except ConfigError as error:
        sys.exit(f'landing: {error}\nlanding: fix it and save: the server is still watching')
    except Exception as error:
        sys.exit(load_error(error, os.path.dirname(os.path.abspath(config_path))))
    start_engine()
    return traced_in_every_thread(app)


def load_error(error: BaseException, app_dir: str) -> str:
    """Return `error` as one block: the app's own lines of its traceback, then what went wrong."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if frame.filename.startswith(app_dir + os.sep)
              and not frame.filename.startswith(PACKAGE_DIR)]
    lines = traceback.format_list(frames) + traceback.format_exception_only(error)
    return ('landing: the app failed to load:\n' + ''.join(lines)
            + 'landing: fix it and save: the server is still watching')


def root_name(root: object) -> tuple[str, str]:
    """Return (module, class name) of `root`, importable by a spawned worker.

    Run as a script, the app's module is __main__: its name is then the script's own.
    """
    module = type(root).__module__
    if module == '__main__':
        # A script run as __main__ has a __file__.
        module = Path(cast(str, sys.modules['__main__'].__file__)).stem
    return module, type(root).__qualname__


def keep_main_out_of_spawned_workers() -> None:
    """Have spawned workers skip re-running the script that started the server (landing.py).

    multiprocessing runs the parent's main script again in each spawned process, before any
    code of ours: a syntax error saved there would end the worker with multiprocessing's own
    traceback. A main module whose spec is named __main__ is left alone (as for `python -m
    pkg`); load_fresh_app imports the app by name instead, and reports what fails.
    """
    main = sys.modules['__main__']
    if getattr(main, '__spec__', None) is None:
        main.__spec__ = importlib.machinery.ModuleSpec('__main__', None)


def open_metrics_listener(settings: Settings) -> socket.socket:
    """Bind the metrics port now, before any worker starts, or raise ConfigError naming it."""
    host, port = settings.metrics_host, settings.metrics_port
    address = bindable_address(host, port, 'METRICS_HOST')  # names a port in use in one line
    return socket.create_server((address, port), backlog=128,
                                family=socket.AF_INET6 if ':' in address else socket.AF_INET)


def serve(root: object, config_path: str, headers: Mapping[str, str] | None = None,
          environ: Mapping[str, str] = os.environ) -> None:
    """Mount `root` with `config_path` and serve it until SIGTERM or Ctrl-C; exit on bad config.

    `headers` (name to value: landing.py's page policy) go on every answer, errors included,
    unless the answer sets its own.
    """
    # Until granian installs its own, a signal during start-up is noted, then acted on.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, lambda *_: stop_early.signals.append(True))
    if stop_early.signals:
        return  # stopped before anything started
    metrics_listener = None
    try:
        settings = configure(environ)
        address = bindable_address(settings.host, settings.port)
        app = mount(root, config_path, settings, headers)
        if settings.metrics_port and not settings.reload:
            metrics_listener = open_metrics_listener(settings)
    except ConfigError as error:
        sys.exit(f'landing: {error}')
    raise_open_files_limit()
    if stop_early.late and stop_early.running_the_app:
        log('cherrypy was imported before serving (by landing.py or a module it imports): '
            'a SIGTERM or Ctrl-C in the first moments of start-up would kill the process; '
            'import serving first in landing.py', 'SETTINGS')
    log(f'host={settings.host} port={settings.port} threads={settings.threads} '
        f'workers={settings.workers}' + (' reload=on' if settings.reload else ''), 'SETTINGS')
    server = build_server(settings, app, address,
                          os.path.dirname(os.path.abspath(config_path)), metrics_listener)
    server.on_startup(functools.partial(stop_if_signalled_early, server))
    try:
        if settings.reload:
            # Spawned workers import the app's files afresh, edits included; forked ones
            # would inherit the code this process imported at start.
            multiprocessing.set_start_method('spawn', force=True)
            keep_main_out_of_spawned_workers()
            server.serve(spawn_target=run_worker, target_loader=functools.partial(
                load_fresh_app, root_name(root), config_path, os.getpid(), headers))
        else:
            # Forked workers inherit the mounted app instead of importing it again: a faster
            # start, and memory pages shared with this process.
            multiprocessing.set_start_method('fork', force=True)
            server.serve(spawn_target=run_worker, target_loader=server.load_app)
    finally:
        ignore_stop_signals()


def ignore_stop_signals() -> None:
    """Ignore further stop signals: the server has stopped, the process is ending.

    Python puts back the default action of every signal it handled as it finalizes, and a
    second SIGTERM or Ctrl-C then would kill the process (exit -15 or -2) instead of
    letting it end with its own code.
    """
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
