"""The server's settings: defaults, then the seed's config (landing.py), then the environment."""
import cherrypy

# How the server runs, beside the seed's host, port, threads and trailing-slash settings.
DEFAULTS = {
    'environment': 'production',
    # production turns screen logging off; a container must log to stdout/stderr.
    'log.screen': True,
    'server.workers': 1,
    # Connections held open per worker (idle keep-alive, pre-opened, slow); more wait in the
    # backlog. Silent connections cost memory only, never a thread: at worst ~48 KiB each
    # (15 KB of unfinished headers), so 768 fit the 128 MiB pod of deploy/kubernetes beside
    # the server itself (the arithmetic: docs/load-balancer.md, "A memory budget").
    'server.max_connections': 768,
    # A burst of load-balancer connections must queue, not be refused.
    'server.socket_queue_size': 1024,
    # Idle keep-alive connections (and headers still arriving) are kept this long: AWS load
    # balancers keep idle connections 60 s and expect the backend to outlast them.
    'server.keepalive_timeout': 75,
    'server.shutdown_timeout': 10,
    # Seconds between SIGTERM and stopping, failing health checks meanwhile.
    'server.drain_seconds': 0,
    # Access-log lines: Apache's Combined Log Format, or one JSON object each (LOG_FORMAT).
    'server.log_format': 'combined',
    # RELOAD=1: restart the workers when a file of the app changes (development only).
    'server.reload': 0,
    # Prometheus metrics on a port of their own, never the public one (serving/metrics.py); 0: off.
    # 9464 is the customary port of a Prometheus exporter beside an app (OpenTelemetry's).
    'server.metrics_port': 9464,
    # Where /metrics listens: loopback unless set (the Kubernetes Deployment sets 0.0.0.0), so
    # a host port published for the site never publishes the metrics with it.
    'server.metrics_host': '127.0.0.1',
    # Seconds a worker may show no sign of life before it is killed and replaced (0: never).
    # A thread of its own beats every 0.1 s, so a handler busy in its thread never counts:
    # only a process that runs no Python at all (stopped, deadlocked, stuck in C) misses them.
    # 10 s: well past any pause of a healthy process (a GC pass, a CPU-starved node), and a
    # third of the 30 s Kubernetes' default liveness probe (3 x 10 s) takes to notice.
    'server.worker_timeout': 10,
    # A landing page takes no uploads: bigger bodies get 413.
    'server.max_request_body_size': 64 * 1024,
    # Seconds a handler that reads a body waits for all of it; a slower upload gets 408.
    'server.body_timeout': 10,
}


# LOG_FORMAT: the access log's line format.
LOG_FORMATS = ('combined', 'json')


# Folders under the app's that RELOAD=1 does not watch.
RELOAD_IGNORED = ['.venv', '.git', 'tests', 'bench', 'test-output', 'docs', 'deploy']


# Environment variable -> (setting, lowest and highest whole number it accepts).
WHOLE_NUMBER_VARIABLES = {
    'PORT': ('server.socket_port', 1, 65535),
    'THREADS': ('server.thread_pool', 1, 10000),
    'WORKERS': ('server.workers', 1, 64),
    'BACKLOG': ('server.socket_queue_size', 1, 65535),
    'MAX_CONNECTIONS': ('server.max_connections', 1, 1000000),
    'KEEPALIVE_TIMEOUT': ('server.keepalive_timeout', 1, 86400),
    'SHUTDOWN_TIMEOUT': ('server.shutdown_timeout', 1, 3600),
    'DRAIN_SECONDS': ('server.drain_seconds', 0, 3600),
    'RELOAD': ('server.reload', 0, 1),
    'METRICS_PORT': ('server.metrics_port', 0, 65535),
    'WORKER_TIMEOUT': ('server.worker_timeout', 0, 3600),
    'BODY_TIMEOUT': ('server.body_timeout', 1, 3600),
}


# Environment variable -> setting, for addresses to bind.
ADDRESS_VARIABLES = {'HOST': 'server.socket_host', 'METRICS_HOST': 'server.metrics_host'}


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot run with."""


def _whole_number(environ, name, low, high):
    """Read environment variable `name` as ASCII digits making a number in [low, high]."""
    raw = environ[name]
    # int() also takes '+8080', '3_4829', ' 80 ' and Arabic-Indic digits: none is a port.
    if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
        raise ConfigError(f'{name} must be a whole number from {low} to {high}, got {raw!r}')
    return int(raw)


def settings_from(environ, seed=None):
    """Return the settings: DEFAULTS, then the seed's config (landing.py), then the environment."""
    settings = dict(DEFAULTS)
    settings.update(cherrypy.config if seed is None else seed)
    if 'LOG_FORMAT' in environ:
        value = environ['LOG_FORMAT']
        if value not in LOG_FORMATS:
            raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
        settings['server.log_format'] = value
    for name, key in ADDRESS_VARIABLES.items():
        if name in environ:
            host = environ[name].strip()
            if not host or not host.isascii() or any(c.isspace() for c in host):
                raise ConfigError(f'{name} must be an address to bind, got {environ[name]!r}')
            settings[key] = host
    for name, (key, low, high) in WHOLE_NUMBER_VARIABLES.items():
        if name in environ:
            settings[key] = _whole_number(environ, name, low, high)
    if settings['server.metrics_port'] == settings.get('server.socket_port'):
        raise ConfigError(f"METRICS_PORT must differ from PORT ({settings['server.socket_port']})")
    return settings
