"""landing.py with a slow page and an upload, so process tests can catch requests in flight.

usage: python tests/slow_landing.py   (same environment variables as landing.py)
"""
import os
import sys
import time

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import landing  # noqa: E402  (needs the app folder on sys.path)


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


landing.Landing.slow = slow
landing.Landing.upload = upload

if __name__ == '__main__':
    landing.main()
