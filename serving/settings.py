"""The server's settings: one typed object, from landing.py's seed, then the environment.

The seed (`cherrypy.config.update` in landing.py) names the host, port and threads with
CherryPy's own keys; every other setting has its default here. `VARIABLES` is the one table
of environment variables: what `Settings.from_environ` reads, and what the README's
configuration table is checked against.
"""
import dataclasses
import ssl
from collections.abc import Mapping
from typing import Any

import cherrypy

from serving.proxies import Network, parse_networks
from serving.redirects import parse_hosts


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot run with."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the server runs. Each field is one environment variable's (VARIABLES)."""

    host: str = '0.0.0.0'
    port: int = 80
    threads: int = 100
    workers: int = 1
    # A burst of load-balancer connections must queue, not be refused.
    backlog: int = 1024
    # Connections held open per worker (idle keep-alive, pre-opened, slow); more wait in the
    # backlog. Silent connections cost memory only, never a thread: at worst ~48 KiB each
    # (15 KB of unfinished headers), so 768 fit the 128 MiB pod of deploy/kubernetes beside
    # the server itself (the arithmetic: docs/load-balancer.md, "A memory budget").
    max_connections: int = 768
    # Idle keep-alive connections (and headers still arriving) are kept this long: AWS load
    # balancers keep idle connections 60 s and expect the backend to outlast them.
    keepalive_timeout: int = 75
    shutdown_timeout: int = 10
    # Seconds between SIGTERM and stopping, failing health checks meanwhile.
    drain_seconds: int = 0
    # Access-log lines: Apache's Combined Log Format, or one JSON object each.
    log_format: str = 'combined'
    # Restart the workers when a file of the app changes (./run.sh --dev; development only).
    reload: bool = False
    # Prometheus metrics on a port of their own, never the public one (serving/metrics.py);
    # 0: off. 9464 is the customary port of an exporter beside an app (OpenTelemetry's).
    metrics_port: int = 9464
    # Where /metrics listens: loopback unless set (the Kubernetes Deployment sets 0.0.0.0), so
    # a host port published for the site never publishes the metrics with it.
    metrics_host: str = '127.0.0.1'
    # Seconds a worker may show no sign of life before it is killed and replaced (0: never).
    # A thread of its own beats every 0.1 s, so a handler busy in its thread never counts:
    # only a process that runs no Python at all (stopped, deadlocked, stuck in C) misses them.
    # 10 s: well past any pause of a healthy process (a GC pass, a CPU-starved node), and a
    # third of the 30 s Kubernetes' default liveness probe (3 x 10 s) takes to notice.
    worker_timeout: int = 10
    # Seconds a handler that reads a body waits for all of it; a slower upload gets 408.
    body_timeout: int = 10
    # Peers whose X-Forwarded-For / X-Forwarded-Proto (or Forwarded) name the client: none
    # unless set, since anyone can send those headers (serving/proxies.py).
    trusted_proxies: tuple[Network, ...] = ()
    # The one header those peers name the client in: the one they write, never the other.
    forwarded_header: str = 'x-forwarded-for'
    # The site's own host names, whose redirects keep CherryPy's absolute Location; any other
    # Host's go out relative, so a forged Host never reaches a Location (serving/redirects.py).
    # None listed: every redirect on the site goes out relative.
    allowed_hosts: tuple[str, ...] = ()
    # HTTPS on PORT with this certificate chain and key (PEM files); both or neither.
    tls_cert: str = ''
    tls_key: str = ''

    @property
    def tls(self) -> bool:
        """Tell whether the site is served over HTTPS."""
        return bool(self.tls_cert)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str],
                     seed: Mapping[str, Any] | None = None) -> 'Settings':
        """Return the defaults, then the seed's config (landing.py), then the environment."""
        seed = cherrypy.config if seed is None else seed
        values: dict[str, Any] = {field: seed[key] for key, field in SEED_KEYS.items()
                                  if key in seed}
        for variable in VARIABLES:
            if variable.name in environ:
                values[variable.field] = variable.read(environ[variable.name])
        settings = cls(**values)
        if settings.metrics_port == settings.port:
            raise ConfigError(f'METRICS_PORT must differ from PORT ({settings.port})')
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise ConfigError('TLS_CERT and TLS_KEY go together: set both, or neither')
        if settings.tls:
            check_tls(settings.tls_cert, settings.tls_key)
        return settings


def check_tls(cert: str, key: str) -> None:
    """Raise ConfigError unless `cert` and `key` are a PEM certificate chain and its key."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        reason = (error.reason if isinstance(error, ssl.SSLError) else error.strerror) \
            or str(error)
        raise ConfigError(f'TLS_CERT {cert!r} and TLS_KEY {key!r} are not a certificate '
                          f'and its key: {reason}') from None


# The seed's CherryPy keys (landing.py's cherrypy.config.update) and the settings they give.
SEED_KEYS = {'server.socket_host': 'host', 'server.socket_port': 'port',
             'server.thread_pool': 'threads'}


@dataclasses.dataclass(frozen=True)
class Variable:
    """One environment variable: the setting it gives and the values it accepts."""

    name: str
    field: str
    # Whole numbers from low to high; an address to bind; addresses and CIDR ranges; host
    # names; or one of the choices.
    low: int = 0
    high: int = 0
    address: bool = False
    networks: bool = False
    hosts: bool = False
    choices: tuple[str, ...] = ()
    # What the README shows as the default of a list left empty.
    unset: str = 'none'
    # A file the server reads (checked once all are read: check_tls).
    path: bool = False

    def read(self, raw: str) -> str | int | bool | tuple[Network, ...] | tuple[str, ...]:
        """Return the setting's value for `raw`, or raise ConfigError naming the variable."""
        if self.choices:
            if raw not in self.choices:
                raise ConfigError(f"{self.name} must be one of {', '.join(self.choices)}, "
                                  f'got {raw!r}')
            return raw
        if self.path:
            if not raw.strip():
                raise ConfigError(f'{self.name} must name a file, got {raw!r}')
            return raw
        if self.address:
            host = raw.strip()
            if not host or not host.isascii() or any(c.isspace() for c in host):
                raise ConfigError(f'{self.name} must be an address to bind, got {raw!r}')
            return host
        if self.networks or self.hosts:
            parse, what = ((parse_networks, 'addresses and CIDR ranges') if self.networks
                           else (parse_hosts, 'host names'))
            try:
                return parse(raw)
            except ValueError as error:
                raise ConfigError(f'{self.name} must be {what} separated by commas: '
                                  f'{error}') from None
        # int() also takes '+8080', '3_4829', ' 80 ' and Arabic-Indic digits: none is a port.
        if not (raw.isascii() and raw.isdigit() and self.low <= int(raw) <= self.high):
            raise ConfigError(f'{self.name} must be a whole number from {self.low} to '
                              f'{self.high}, got {raw!r}')
        value = int(raw)
        return bool(value) if self.field == 'reload' else value


# Every environment variable the server reads, in the README's order.
VARIABLES = (
    Variable('HOST', 'host', address=True),
    Variable('PORT', 'port', 1, 65535),
    Variable('THREADS', 'threads', 1, 10000),
    Variable('WORKERS', 'workers', 1, 64),
    Variable('BACKLOG', 'backlog', 1, 65535),
    Variable('MAX_CONNECTIONS', 'max_connections', 1, 1000000),
    Variable('KEEPALIVE_TIMEOUT', 'keepalive_timeout', 1, 86400),
    Variable('SHUTDOWN_TIMEOUT', 'shutdown_timeout', 1, 3600),
    Variable('DRAIN_SECONDS', 'drain_seconds', 0, 3600),
    Variable('LOG_FORMAT', 'log_format', choices=('combined', 'json')),
    Variable('RELOAD', 'reload', 0, 1),
    Variable('METRICS_PORT', 'metrics_port', 0, 65535),
    Variable('METRICS_HOST', 'metrics_host', address=True),
    Variable('WORKER_TIMEOUT', 'worker_timeout', 0, 3600),
    Variable('BODY_TIMEOUT', 'body_timeout', 1, 3600),
    Variable('TRUSTED_PROXIES', 'trusted_proxies', networks=True),
    Variable('FORWARDED_HEADER', 'forwarded_header', choices=('x-forwarded-for', 'forwarded')),
    Variable('ALLOWED_HOSTS', 'allowed_hosts', hosts=True),
    Variable('TLS_CERT', 'tls_cert', path=True),
    Variable('TLS_KEY', 'tls_key', path=True),
)
# The most workers a server can have (the shared heartbeat table is sized for it).
MAX_WORKERS = next(variable.high for variable in VARIABLES if variable.name == 'WORKERS')

# CherryPy's own settings for the app, beside the seed's: production, logging to the screen.
CHERRYPY_DEFAULTS = {
    'environment': 'production',
    # production turns screen logging off; a container must log to stdout/stderr.
    'log.screen': True,
}
