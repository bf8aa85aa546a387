"""Stop signals during start-up: kept while the app still imports, acted on once it can stop.

SIGTERM or Ctrl-C while the app is still importing (about 0.2 s) must stop it quietly once it
can, not kill it: as PID 1 in a container a default SIGTERM is even ignored. This module is
the first the package imports, before CherryPy and granian, and it only acts when a script
beside the package is being run (landing.py), never in a process importing it (the tests).
"""
import os
import signal
import sys

# One entry per stop signal received before the server installed its own handlers.
signals: list[bool] = []

# Whether CherryPy was imported first (landing.py, or a module of yours it imports, imported
# cherrypy before serving): the signals then went unheard for that long. serve() says so.
late = 'cherrypy' in sys.modules

_APP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MAIN = getattr(sys.modules['__main__'], '__file__', None) or '/'
running_the_app = os.path.dirname(os.path.abspath(_MAIN)) == _APP_DIR
if running_the_app:
    for _signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(_signum, lambda *_: signals.append(True))
