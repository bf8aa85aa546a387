"""landing.py that counts the requests CherryPy's own pipeline runs, for the static-file tests.

Copied into an app folder beside its landing.py; `GET /cherrypy_requests` answers how many
requests this worker's CherryPy has run so far, that one included.

usage: python APP/counting_landing.py   (same environment variables as landing.py)
"""
import itertools
import os
import sys

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import landing  # noqa: E402  (needs the app folder on sys.path)
from serving.request import GuardedRequest  # noqa: E402

# next() on it is atomic under the GIL: one number per request CherryPy runs.
RUN = itertools.count(1)
ran = [0]


def counted() -> None:
    """Note one more request run by CherryPy (a hook on every request, in no config)."""
    ran[0] = next(RUN)


@cherrypy.expose
def cherrypy_requests(self):
    """Answer how many requests CherryPy has run in this worker, this one included."""
    return str(ran[0])


GuardedRequest.hooks.attach('on_start_resource', counted)
landing.Landing.cherrypy_requests = cherrypy_requests

if __name__ == '__main__':
    landing.main()
