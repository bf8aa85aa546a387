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

_APP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MAIN = getattr(sys.modules['__main__'], '__file__', None) or '/'
if os.path.dirname(os.path.abspath(_MAIN)) == _APP_DIR:
    for _signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(_signum, lambda *_: signals.append(True))
