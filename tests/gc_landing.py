"""landing.py with a page that tells what the worker's garbage collector leaves alone.

usage: python tests/gc_landing.py   (same environment variables as landing.py)
"""
import gc
import os
import sys

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import landing  # noqa: E402  (needs the app folder on sys.path)


@cherrypy.expose
def frozen(self):
    """Answer how many objects this worker's collections skip (gc.freeze)."""
    return str(gc.get_freeze_count())


landing.Landing.frozen = frozen

if __name__ == '__main__':
    landing.main()
