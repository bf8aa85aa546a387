"""The landing page: the Landing root object, its server settings and main()."""
import logging
import os
import sys

import cherrypy

from healthcheck import HealthCheck

APP_DIR = os.path.dirname(os.path.abspath(__file__))
CONFIG_PATH = os.path.join(APP_DIR, 'prod.conf')

# Built once at import: the page never changes, so no request pays for it.
PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Landing</title>
<link rel="icon" href="/favicon.ico">
<link rel="stylesheet" href="/static/site.css">
</head>
<body>
<main>
<img src="/logo.png" alt="Landing logo" width="192" height="192">
<h1>Landing</h1>
<p>It works: this page is served by CherryPy from one Docker image.</p>
</main>
</body>
</html>
"""

DEFAULTS = {
    'environment': 'production',
    # production turns screen logging off; a container must log to stdout/stderr.
    'log.screen': True,
    'server.socket_host': '0.0.0.0',
    'server.socket_port': 80,
    'server.thread_pool': 100,
    'tools.trailing_slash.on': False,
}


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot run with."""


def _int_from(environ, name, low, high):
    """Read environment variable `name` as a whole number in [low, high]."""
    raw = environ[name]
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(
            f'{name} must be a whole number from {low} to {high}, got {raw!r}')
    return value


def settings_from(environ):
    """Return the server settings: DEFAULTS overridden by HOST, PORT, THREADS."""
    settings = dict(DEFAULTS)
    if 'HOST' in environ:
        if not environ['HOST'].strip():
            raise ConfigError(f"HOST must be an address to bind, got {environ['HOST']!r}")
        settings['server.socket_host'] = environ['HOST'].strip()
    if 'PORT' in environ:
        settings['server.socket_port'] = _int_from(environ, 'PORT', 1, 65535)
    if 'THREADS' in environ:
        settings['server.thread_pool'] = _int_from(environ, 'THREADS', 1, 10000)
    return settings


def error_page(status, message, traceback, version):
    """Render an error as a short page that names neither tracebacks nor versions."""
    return f'<!DOCTYPE html>\n<title>{status}</title>\n<h1>{status}</h1>\n'


class QuietProbes(logging.Filter):
    """Keep requests whose config says `request.access_log = False` out of the access log."""

    def filter(self, record):
        """Drop the record when the current request asked not to be logged."""
        return getattr(cherrypy.serving.request, 'access_log', True)


class Landing:
    """Root of the site: the landing page, with the health check mounted below it."""

    _cp_config = {
        # prod.conf names static files relative to the app folder, not the CWD.
        'tools.staticdir.root': APP_DIR,
        'tools.staticfile.root': APP_DIR,
        'error_page.default': error_page,
    }

    # Present so CherryPy does not mount its own favicon; prod.conf serves ours.
    favicon_ico = None

    healthcheck = HealthCheck()

    @cherrypy.expose
    @cherrypy.tools.allow(methods=('GET', 'HEAD'))
    def index(self):
        """Return the landing page."""
        cherrypy.response.headers['Content-Type'] = 'text/html; charset=utf-8'
        return PAGE


def configure(environ):
    """Apply DEFAULTS and environment overrides to CherryPy's global config."""
    settings = settings_from(environ)
    cherrypy.config.update(settings)
    return settings


def quiet_probes_in_access_log():
    """Attach QuietProbes to every mounted application's access log."""
    for app in cherrypy.tree.apps.values():
        app.log.access_log.addFilter(QuietProbes())


def main(environ=os.environ):
    """Configure from the environment and serve Landing until signalled."""
    try:
        settings = configure(environ)
    except ConfigError as error:
        sys.exit(f'landing: {error}')
    cherrypy.log(
        f"host={settings['server.socket_host']} "
        f"port={settings['server.socket_port']} "
        f"threads={settings['server.thread_pool']}", 'SETTINGS')
    cherrypy.engine.subscribe('start', quiet_probes_in_access_log, priority=10)
    cherrypy.quickstart(Landing(), '/', CONFIG_PATH)


if __name__ == '__main__':
    main()
