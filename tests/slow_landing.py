"""landing.py with a slow page and an upload, so process tests can catch requests in flight.

usage: python tests/slow_landing.py   (same environment variables as landing.py)
"""
import os
import sys
import time

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import landing  # noqa: E402  (needs the app folder on sys.path)

# The policy own_policy's page sets for itself.
OWN_POLICY = "default-src 'self'; frame-src https://maps.example"


@cherrypy.expose
def slow(self, seconds='1'):
    """Answer 'done' after `seconds`, standing in for a slow page of a real app."""
    # Tests wait for this line to know the request is inside the handler.
    cherrypy.log('slow request started', 'SLOW')
    time.sleep(float(seconds))
    return b'done'


@cherrypy.expose
def upload(self):
    """Read the request body and answer its length, as a handler taking uploads would."""
    return str(len(cherrypy.request.body.read()))


@cherrypy.expose
def own_policy(self):
    """Answer with a Content-Security-Policy of the page's own, as a page embedding a map would."""
    cherrypy.response.headers['Content-Security-Policy'] = OWN_POLICY
    return 'a page with a policy of its own'


landing.Landing.slow = slow
landing.Landing.own_policy = own_policy
landing.Landing.upload = upload

if __name__ == '__main__':
    landing.main()
