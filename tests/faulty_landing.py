"""landing.py with handlers that misbehave, for the tests of what the supervisor survives.

usage: python tests/faulty_landing.py   (same environment variables as landing.py)
  /crash         ends the worker process at once (os._exit), as a crash in C code would
  /busy?seconds  keeps one thread busy computing, holding the GIL as much as it can
  /pid           the worker's process id
  CRASH_AT_START=1: every worker ends as its engine starts (a crash loop)
"""
import os
import sys
import time

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import landing  # noqa: E402  (needs the app folder on sys.path)


@cherrypy.expose
def crash(self):
    """End this worker process at once, answering nothing."""
    os._exit(3)


@cherrypy.expose
def busy(self, seconds='1'):
    """Compute for `seconds` in this thread, then answer how many loops it ran."""
    cherrypy.log('busy request started', 'BUSY')
    end, loops = time.monotonic() + float(seconds), 0
    while time.monotonic() < end:
        loops += 1
    return str(loops)


@cherrypy.expose
def pid(self):
    """Answer the worker's process id."""
    return str(os.getpid())


def crash_at_start():
    """End the worker as its engine starts (CRASH_AT_START=1)."""
    if os.environ.get('CRASH_AT_START') == '1':
        os._exit(4)


landing.Landing.crash = crash
landing.Landing.busy = busy
landing.Landing.pid = pid
cherrypy.engine.subscribe('start', crash_at_start)

if __name__ == '__main__':
    landing.main()
