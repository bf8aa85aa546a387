"""landing.py with handlers that raise what CherryPy lets through, for the error-page tests.

usage: python tests/raising_landing.py   (same environment variables as landing.py)
"""
import os
import sys

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import landing  # noqa: E402  (needs the app folder on sys.path)

RAISED = {'exit': SystemExit, 'interrupt': KeyboardInterrupt, 'error': RuntimeError,
          'generator': GeneratorExit}


@cherrypy.expose
def raising(self, what='exit'):
    """Raise the exception named `what`, as a handler calling sys.exit() by mistake would."""
    raise RAISED[what](f'raised by a handler: /{what}')


@cherrypy.expose
def streaming(self):
    """Yield a first chunk, then raise SystemExit while the answer is being produced."""
    yield b'first'
    raise SystemExit('raised while streaming')


landing.Landing.raising = raising
landing.Landing.streaming = streaming

if __name__ == '__main__':
    landing.main()
