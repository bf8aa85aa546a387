"""The /healthcheck handler, and a standard-library probe of it for Docker's HEALTHCHECK.

As a script: python healthcheck.py [URL]  exits 0 when URL answers 200 within 2 s, else 1.
"""
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

PROBE_TIMEOUT = 2


def default_url(environ: Mapping[str, str]) -> str:
    """Return the local server's health URL, on PORT (default 80), https with TLS_CERT."""
    scheme = 'https' if environ.get('TLS_CERT') else 'http'
    return f"{scheme}://127.0.0.1:{environ.get('PORT', '80')}/healthcheck"


def probe(url: str, timeout: float = PROBE_TIMEOUT, verify: bool = True) -> int:
    """Return 0 if `url` (http or https) answers 200 within `timeout` seconds, else 1.

    With `verify` off, an https URL's certificate is not checked: the local server's own
    names the site, not 127.0.0.1.
    """
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        if not url.lower().startswith(('http://', 'https://')):
            raise ValueError('only http:// and https:// URLs are probed')
        with urllib.request.urlopen(url, timeout=timeout,  # noqa: S310 (checked above)
                                    context=context) as answer:
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f'healthcheck: {url}: {error}', file=sys.stderr)
        return 1


# Docker runs the probe every few seconds: exit before importing CherryPy (~120 ms of CPU).
if __name__ == '__main__':
    sys.exit(probe(sys.argv[1]) if len(sys.argv) > 1
             else probe(default_url(os.environ), verify=False))

import json  # noqa: E402  (the handler's imports: below the probe on purpose)

import cherrypy  # noqa: E402

import serving  # noqa: E402

HEALTH_JSON = 'application/health+json'
# What a failing probe reads: not serving yet, or stopping (draining or stopped).
FAILING_TEXT = {'starting': 'Starting', 'stopping': 'Shutting down'}


def wants_health_json() -> bool:
    """Tell whether the client accepts application/health+json (RFC draft health format)."""
    accept = cherrypy.request.headers.get('Accept')
    if not accept or HEALTH_JSON not in accept:
        return False  # most probes: nothing to parse (CherryPy splits Accept in 4 µs)
    return any(
        element.value == HEALTH_JSON and element.qvalue > 0
        for element in cherrypy.request.headers.elements('Accept'))


class HealthCheck:
    """Answers load-balancer and Kubernetes probes: 200 while serving, 503 otherwise."""

    _cp_config = {
        # Probes arrive every few seconds from every node; they would drown the visits.
        'request.access_log': False,
    }

    @cherrypy.expose
    @cherrypy.tools.allow(methods=('GET', 'HEAD'))
    def index(self) -> str | bytes:
        """Return Yay (or health+json) with 200; 503 Starting or Shutting down otherwise."""
        status = serving.status()
        response = cherrypy.response
        response.headers['Cache-Control'] = 'no-store'
        if status != 'serving':
            response.status = 503
        if wants_health_json():
            response.headers['Content-Type'] = HEALTH_JSON
            return json.dumps({'status': 'pass' if status == 'serving' else 'fail'}).encode()
        response.headers['Content-Type'] = 'text/plain; charset=utf-8'
        return 'Yay' if status == 'serving' else FAILING_TEXT[status]
