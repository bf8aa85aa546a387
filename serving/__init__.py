"""How the landing app is served. landing.py stays a plain CherryPy app; this package serves it.

The map, one job a module, in the order a request meets them:

- `stop_early`: imported first, before CherryPy; a SIGTERM or Ctrl-C while the app still
  imports is kept and acted on once the server can stop.
- `settings`: the seed's `cherrypy.config.update` in landing.py, then the environment (HOST,
  PORT, THREADS, WORKERS, ...); numbers must be plain ASCII digits in range.
- `app_config`: prod.conf checked at start, each mistake named in one line.
- `startup`: configures CherryPy, mounts the app with its request class and the guard, checks
  the addresses, and starts the supervisor (`serve`).
- `supervisor`: granian's process supervisor. Its Rust (hyper) I/O reads whole requests and
  writes whole answers, so a slow or silent client costs a socket, never a worker thread; its
  parser refuses the smuggling shapes cheroot accepts. Workers that die are replaced, one
  silent for WORKER_TIMEOUT is killed and replaced, a crash loop ends the server (exit 1);
  with DRAIN_SECONDS, SIGTERM first fails the health check, then stops; RELOAD=1 restarts
  the workers on an edit; with METRICS_PORT it serves Prometheus metrics (`exporter`), which
  the workers count (`metrics`).
- `workers`: a worker process: its stop signals, its heartbeat, and granian's WSGI worker
  calling `cherrypy.tree` from a pool of THREADS threads, stopped once and cleanly.
- `guard`: the WSGI layer around `cherrypy.tree`: what `refusals` refuses or mends (Host,
  long targets, multiplying ranges, garbage validators, headers CherryPy parses slowly or
  fails on), the client's address and scheme from the forwarded headers of TRUSTED_PROXIES
  only (`proxies`), redirects for a Host not in ALLOWED_HOSTS made relative (`redirects`),
  the security headers on every answer, prod.conf's static files answered before CherryPy
  as CherryPy answers them (`static_files`, which asks `static_config` once per path what
  CherryPy would serve), the project's 500 page whatever the app
  raises, answers up to 64 KiB in one piece and bigger ones from a thread of their own
  (`streaming`): a slow reader never holds a pool thread. The headers are the page policy
  landing.py passes to `serve` (a handler may set its own), and `Server: Landing`.
- `request`: the app's request class, with the project's error page before its config
  applies; its hooks keep bodies unread where nothing takes one (`bodies`, within
  BODY_TIMEOUT) and static files to their folder (`static`).
- `handlers`: query parameters a handler does not take are dropped (ad links carry utm_*),
  and a str answer is sent as UTF-8 with its charset named (`tools.handler`).
- `access_log`: one Combined Log Format (or LOG_FORMAT=json) line per request on stdout; a
  handler opts out with `request.access_log = False` (the health check does).
- `health`: serving, starting or stopping, shared by the supervisor and its workers.
"""
from serving import stop_early  # first: it takes the stop signals before the imports below
from serving.health import status
from serving.settings import ConfigError
from serving.startup import serve

__all__ = ['ConfigError', 'serve', 'status', 'stop_early']
