"""Time and profile CherryPy's request stack for the landing app in-process, with no server.

usage: bench/.venv/bin/python bench/profile_app.py [--app DIR] [--requests N] [--top N]

Mounts the app the way serving.serve() does (configure, the real prod.conf, the guard, the access
log that leaves probes out), starts the engine without an HTTP server, and calls the guarded
WSGI app directly with the environ granian would build for wrk's request. It prints µs per
request for each path without a profiler, then the functions cProfile finds most costly. The
access log goes where the server sends it (stdout), redirected to a temp file here so writing it
is counted. What this leaves out is the server: granian's parsing and sending, and threads.
"""
import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PATHS = ('/', '/healthcheck', '/logo.png')


def environ_for(path):
    """Return the WSGI environ granian builds for wrk's `GET path HTTP/1.1`."""
    return {
        'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '', 'PATH_INFO': path, 'QUERY_STRING': '',
        'SERVER_NAME': '127.0.0.1', 'SERVER_PORT': '8080', 'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': '127.0.0.1', 'HTTP_HOST': '127.0.0.1:8080',
        'SERVER_SOFTWARE': 'Granian', 'GATEWAY_INTERFACE': 'CGI/1.1', 'wsgi.version': (1, 0),
        'wsgi.url_scheme': 'http', 'wsgi.input': io.BytesIO(b''), 'wsgi.errors': sys.stderr,
        'wsgi.multithread': True, 'wsgi.multiprocess': False, 'wsgi.run_once': False,
    }


def call(app, path):
    """Run one request through the WSGI app, as granian does; return (status, body)."""
    answer = {}

    def start_response(status, headers, exc_info=None):
        """Keep the status line."""
        answer['status'] = status
        return lambda data: None

    result = app(environ_for(path), start_response)
    try:
        body = b''.join(result)
    finally:
        if hasattr(result, 'close'):
            result.close()
    return answer['status'], body


def mount(app_dir):
    """Import the app from `app_dir`, mount it as serve() does, start the engine; return the app."""
    sys.path.insert(0, app_dir)
    import cherrypy

    import landing
    import serving.startup

    # configure() also subscribes what runs at engine start (the fast access log), so it runs.
    settings = serving.startup.configure({})
    app = serving.startup.mount(landing.Landing(), landing.CONFIG_PATH, settings,
                                landing.HEADERS)
    cherrypy.engine.start()
    return app


def main(argv=None):
    """Time each path, then profile them all; print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--app', default=os.path.dirname(BENCH_DIR),
                        help='folder holding landing.py (e.g. a scratch copy being tuned)')
    parser.add_argument('--requests', type=int, default=5000, help='requests per path')
    parser.add_argument('--top', type=int, default=30, help='functions to list')
    parser.add_argument('--sort', default='tottime', help='pstats sort key')
    parser.add_argument('--paths', default=','.join(PATHS))
    parser.add_argument('--save', help='write the raw profile here (for snakeviz, pstats)')
    args = parser.parse_args(argv)
    paths = args.paths.split(',')

    # The access log handler holds sys.stdout from start-up on: point file descriptor 1 at a
    # temp file, as the server's stdout is a file or pipe, and print the results afterwards.
    with tempfile.TemporaryFile(mode='w+') as log:
        sys.stdout.flush()
        real_stdout = os.dup(1)
        os.dup2(log.fileno(), 1)
        timings = {}
        profile = cProfile.Profile()
        try:
            tree = mount(os.path.abspath(args.app))
            for path in paths:
                status, _ = call(tree, path)
                if not status.startswith('200'):
                    raise SystemExit(f'{path} answered {status}')
                for _ in range(200):         # warm caches before timing
                    call(tree, path)
                started = time.perf_counter()
                for _ in range(args.requests):
                    call(tree, path)
                timings[path] = (time.perf_counter() - started) / args.requests * 1e6
            profile.enable()
            for path in paths:
                for _ in range(args.requests):
                    call(tree, path)
            profile.disable()
            sys.modules['cherrypy'].engine.exit()
        finally:
            sys.stdout.flush()
            os.dup2(real_stdout, 1)
            os.close(real_stdout)
        log.seek(0)
        lines = sum(1 for line in log if '"GET ' in line)
    print(f'app {os.path.abspath(args.app)}, {args.requests} requests per path, no profiler:')
    for path, micros in timings.items():
        print(f'  {path:<13}{micros:8.1f} µs per request')
    print(f'  ({lines} access-log lines written)')
    print(f'\ncProfile over all paths ({len(paths) * args.requests} requests; the profiler '
          'itself makes each call 2-3 times slower):')
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
    if args.save:
        profile.dump_stats(args.save)
    return 0


if __name__ == '__main__':
    sys.exit(main())
