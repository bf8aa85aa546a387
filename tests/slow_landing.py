"""landing.py with one extra slow page, so process tests can catch a request in flight.

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


landing.Landing.slow = slow

if __name__ == '__main__':
    landing.main()
