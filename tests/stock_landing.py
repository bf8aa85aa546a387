"""Landing on CherryPy's stock server settings, to show what landing.py's settings fix.

usage: PORT=8080 THREADS=10 python tests/stock_landing.py
"""
import os
import sys

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import landing  # noqa: E402  (needs the app folder on sys.path)

if __name__ == '__main__':
    cherrypy.config.update({
        'environment': 'production',
        'server.socket_host': '127.0.0.1',
        'server.socket_port': int(os.environ['PORT']),
        'server.thread_pool': int(os.environ['THREADS']),
        'tools.trailing_slash.on': False,
    })
    cherrypy.quickstart(landing.Landing(), '/', landing.CONFIG_PATH)
