"""landing.py with a page that says who CherryPy takes the client to be, for the proxy tests.

usage: python tests/proxy_landing.py   (same environment variables as landing.py)
"""
import json
import os
import sys

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import landing  # noqa: E402  (needs the app folder on sys.path)


@cherrypy.expose
def whoami(self):
    """Answer the client as the app sees it: address, port, scheme, base and an absolute URL."""
    request = cherrypy.request
    cherrypy.response.headers['Content-Type'] = 'application/json'
    return json.dumps({'ip': request.remote.ip, 'port': request.remote.port,
                       'scheme': request.scheme, 'base': request.base,
                       'url': cherrypy.url('/next')})


@cherrypy.expose
def go(self, to='/next', status='303'):
    """Redirect to `to` as a handler of the app would (CherryPy makes it absolute)."""
    raise cherrypy.HTTPRedirect(to, int(status))


landing.Landing.whoami = whoami
landing.Landing.go = go

if __name__ == '__main__':
    landing.main()
