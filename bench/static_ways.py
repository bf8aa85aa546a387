"""The ways to serve prod.conf's static files, timed in-process behind the same guard.

usage: bench/.venv/bin/python bench/static_ways.py [--requests N] [--rounds N]

Mounts the app as profile_app.py does, then times /logo.png and /static/site.css three ways,
each behind the project's guard (its refusals, headers, request ID and metrics hooks):
CherryPy's staticfile/staticdir tools (the guard without its static fast path), WhiteNoise
around `cherrypy.tree` (its own header rules, no access line), and serving/static_files.py.
Rounds interleave the ways; the median round is printed, in µs per request. granian's own
static serving runs in Rust, past the guard: bench/run.sh measures it as the granian-static peer.
"""
import argparse
import copy
import os
import statistics
import sys
import time

import profile_app
from whitenoise import WhiteNoise

PATHS = ('/logo.png', '/static/site.css')


def ways(guard):
    """Return {name: WSGI app}: the guard with each way of serving the static files."""
    import cherrypy

    static = os.path.join(os.path.dirname(profile_app.BENCH_DIR), 'static')
    plain = copy.copy(guard)
    plain.static = None
    whitenoise = WhiteNoise(cherrypy.tree, root=static, prefix='static/', max_age=3600,
                            allow_all_origins=False)
    whitenoise.add_files(static, prefix='')  # /logo.png at the top, as prod.conf has it
    behind_whitenoise = copy.copy(plain)
    behind_whitenoise.app = whitenoise
    return {'cherrypy': plain, 'whitenoise': behind_whitenoise, 'fast path': guard}


def main(argv=None):
    """Time each way on each path; print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--requests', type=int, default=20000, help='requests per round')
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args(argv)
    # The access log goes to stdout, as the server's does: away from the report.
    with open(os.devnull, 'w') as devnull:
        report = os.fdopen(os.dup(1), 'w')
        os.dup2(devnull.fileno(), 1)
    apps = ways(profile_app.mount(os.path.dirname(profile_app.BENCH_DIR)))
    for name, app in apps.items():
        for path in PATHS:
            status, body = profile_app.call(app, path)
            if not status.startswith('200') or not body:
                sys.exit(f'{name} {path}: {status}')
    timings = {}
    for _ in range(args.rounds):
        for name, app in apps.items():
            for path in PATHS:
                started = time.perf_counter()
                for _ in range(args.requests):
                    profile_app.call(app, path)
                timings.setdefault((name, path), []).append(
                    (time.perf_counter() - started) / args.requests * 1e6)
    print(f'µs per request, median of {args.rounds} rounds of {args.requests}:', file=report)
    for (name, path), values in timings.items():
        print(f'  {name:12} {path:18} {statistics.median(values):7.1f}', file=report)
    report.flush()
    os._exit(0)  # the engine's threads need no orderly stop here


if __name__ == '__main__':
    main()
