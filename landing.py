"""The landing page: the app you edit. How it is served (server, logs, signals) is in serving/."""
import os

# First: serving takes over SIGTERM and Ctrl-C before the slower imports below.
import serving
from healthcheck import HealthCheck

import cherrypy

# prod.conf sits beside this file: it declares the static files (logo, favicon, static/).
CONFIG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'prod.conf')

PAGE = """<!DOCTYPE html>
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


class Landing:
    """Root of the site: the landing page, with the health check mounted below it."""

    healthcheck = HealthCheck()

    # Present so CherryPy does not mount its own favicon; prod.conf serves ours.
    favicon_ico = None

    @cherrypy.expose
    @cherrypy.tools.allow(methods=('GET', 'HEAD'))
    def index(self) -> str:
        """Return the landing page."""
        # Caches ask again each time, so an edit to the page shows at once.
        cherrypy.response.headers['Cache-Control'] = 'no-cache'
        return PAGE


# The defaults; the environment (HOST, PORT, THREADS, ...) overrides them: see serving/settings.py.
cherrypy.config.update({
    'server.socket_host': '0.0.0.0',
    'server.socket_port': 80,
    'server.thread_pool': 100,
    'tools.trailing_slash.on': False,
    # The page policy: a landing page takes no uploads, so bigger bodies get 413.
    'server.max_request_body_size': 64 * 1024,
})

# The page policy: headers on every answer, errors included, unless a handler sets its own
# (cherrypy.response.headers['Content-Security-Policy'] = ...) for its page.
HEADERS = {
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy':
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    'Referrer-Policy': 'strict-origin-when-cross-origin',
}


def main() -> None:
    """Serve Landing with prod.conf until SIGTERM or Ctrl-C."""
    serving.serve(Landing(), CONFIG_PATH, HEADERS)


if __name__ == '__main__':
    main()
