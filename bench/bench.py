"""Benchmark the landing app beside its peers on loopback; print one report and write JSON.

usage: ./bench/run.sh [options]   (it sets up bench/.venv, then runs this; --help lists them)

Each server gets a free 127.0.0.1 port and the server core; wrk -c100 -t2 --latency runs on the
other core in interleaved rounds (each visits every path on every server, in a rotated order),
median per cell. Also measured: /healthcheck from fresh connections while / is saturated,
start-up to the first 200, RSS and PSS of each whole process tree idle and after load, and the
app's access log against the visits. Every process started is stopped by its PID; every loop
has a deadline. servers.py starts and stops the servers, load.py runs wrk and the rounds,
readings.py reads processes through psutil, report.py sums up and prints.

--variant LABEL=DIR [NAME=VALUE ...] adds landing.py from DIR (an older checkout, or this one
with other settings) to the same rounds, e.g. `--variant before=/tmp/old --variant w2=. WORKERS=2`;
the targets compare the app with the variant labelled `before`.
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
SERVERS = {  # each writes an access-log line per request but bare cheroot, granian and cherrypy
    'landing': 'the real `python landing.py`, real prod.conf, its whole process tree',
    'granian': 'granian alone, set as the app sets it, sending the same bytes (the limit)',
    'granian-static': "the same, the static files served by granian's own (Rust) file serving",
    'cheroot': "a bare cheroot WSGI server sending the same bytes (the old stack's ceiling)",
    'cherrypy': "CherryPy's own stock tree on the same granian, logging nothing (a page's floor)",
    'http.server': '`python -m http.server` serving the same files (what the seed replaces)',
    'flask': 'Flask on gunicorn, 1 worker, 100 threads (what a user would pick instead)',
    'uvicorn': 'Starlette on uvicorn, 1 worker, h11 and asyncio (what a user picks today)',
    'nginx': 'nginx, 1 worker, serving the same files (the ceiling for static files)',
}
PATHS = ('/', '/healthcheck', '/logo.png', '/static/site.css')


def parse_args(argv):
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add('--duration', type=int, default=4, help='seconds per wrk cell')
    add('--rounds', type=int, default=3, help='interleaved rounds')
    add('--connections', type=int, default=100, help='wrk -c')
    add('--threads', type=int, default=2, help='wrk -t')
    add('--servers', default=','.join(SERVERS), help='comma-separated, of: ' + '; '.join(
        f'{name}: {what}' for name, what in SERVERS.items()))
    add('--paths', default=','.join(PATHS), help='comma-separated')
    add('--startup-repeats', type=int, default=3, help='start-ups timed per server (0 skips)')
    add('--no-hc-under-load', action='store_true',
        help='skip /healthcheck latency while / is saturated')
    add('--app', default=os.path.dirname(BENCH_DIR),
        help='folder holding landing.py (e.g. a scratch copy being tuned)')
    add('--app-env', action='append', default=[], metavar='NAME=VALUE',
        help='extra environment for the landing app (e.g. WORKERS=2)')
    add('--variant', action='append', nargs='+', default=[], metavar=('LABEL=DIR', 'NAME=VALUE'),
        help='also measure landing.py from DIR, with that environment, as server LABEL in the '
             'same rounds; the targets compare the app with the variant labelled `before`')
    add('--variant-env', action='append', default=[], metavar='LABEL:NAME=VALUE',
        help='environment for one variant (as NAME=VALUE after its --variant)')
    # 'Bare' means cheroot's own defaults (wsgi.Server's 10 threads) but for the backlog: with
    # its 5, most of wrk's 100 connections wait out SYN retransmits and the figures swing 2x.
    add('--cheroot-threads', type=int, default=10, help="bare cheroot pool size (its default)")
    add('--cheroot-queue', type=int, default=1024,
        help="bare cheroot listen backlog (the app's server.socket_queue_size)")
    add('--header', action='append', default=[], metavar='NAME: VALUE',
        help='a request header wrk sends (e.g. "Accept-Encoding: gzip" for compressed answers)')
    add('--server-core', type=int, default=0)
    add('--load-core', type=int, default=1)
    add('--json', help='JSON path (default bench/results/bench-<time>.json)')
    add('--max-minutes', type=float, default=20,
        help='stop measuring (and report what was measured) past this')
    args = parser.parse_args(argv)

    def env(settings):
        if not all('=' in item for item in settings):
            parser.error(f'an environment setting is not NAME=VALUE: {settings}')
        return dict(item.split('=', 1) for item in settings)

    args.servers, args.paths = ([s for s in v.split(',') if s] for v in (args.servers, args.paths))
    if set(args.servers) - set(SERVERS) or set(args.paths) - set(PATHS):
        parser.error(f'--servers takes {",".join(SERVERS)}; --paths takes {",".join(PATHS)}')
    args.app, args.app_env, args.variants = os.path.abspath(args.app), env(args.app_env), {}
    for label_dir, *settings in args.variant:
        label, _, folder = label_dir.partition('=')
        if label in SERVERS or label in args.variants or not folder \
                or not os.path.isfile(os.path.join(folder, 'landing.py')):
            parser.error(f'--variant wants a new LABEL=DIR, DIR holding landing.py: {label_dir}')
        args.variants[label] = {'dir': os.path.abspath(folder), 'env': env(settings)}
    for item in args.variant_env:
        label, _, setting = item.partition(':')
        if label not in args.variants:
            parser.error(f'--variant-env wants LABEL:NAME=VALUE for a --variant, got {item!r}')
        args.variants[label]['env'].update(env([setting]))
    args.servers += list(args.variants)
    return args


def run(args):
    """Measure as `args` asks; print the report and write the JSON."""
    # Imported only now: --help runs on the system python, before bench/.venv and psutil exist.
    import load
    import readings
    import report
    import servers

    began = time.monotonic()
    os.sched_setaffinity(0, {args.load_core})    # the driver's own work stays off the server core
    # A SIGTERM to the driver still runs the finally block that stops every server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix='landing-bench.')
    results = {
        'meta': {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'args': vars(args),
                 'app_dir': args.app, 'app_env': args.app_env, 'versions': report.versions(),
                 'loadavg_before': readings.loadavg(), 'cpus': os.cpu_count(),
                 'probe_interval_ms': load.PROBE_INTERVAL * 1e3},
        'servers': args.servers, 'paths': args.paths, 'variants': list(args.variants),
        'apps': [name for name in args.servers if name == 'landing' or name in args.variants],
        'cells': {}, 'ratios': {}, 'hc_under_load': {}, 'startup': {}, 'rss': {},
        'logo_headers': {}, 'busy_cells': [], 'access_log': {}, 'targets': {},
    }
    live, problems = {}, {}
    try:
        www, expected = servers.prepare_www(tmp, args.app)
        live = servers.make_servers(args, tmp, www)
        if args.startup_repeats:
            print(f'start-up: {args.startup_repeats} times each ...', flush=True)
            for name, server in live.items():
                results['startup'][name] = server.time_startup(args.startup_repeats)
        print('starting servers ...', flush=True)
        for name, server in live.items():
            server.start()
            server.log_start = os.path.getsize(server.out)   # what came before: start-up polls
            server.settle()
            procs = server.tree()
            rss, pss = readings.memory_mb(procs)
            results['rss'][name] = {'procs': len(procs), 'idle_mb': rss, 'idle_pss_mb': pss}
            # A variant may be another version of the app, with a page of its own.
            problems[name] = servers.validate(
                server, {**expected, '/': None} if name in args.variants else expected)
            server.visits += 1       # the validation GET /
            if not problems[name]['/logo.png']:
                results['logo_headers'][name] = servers.logo_headers(server)
            for path, why in problems[name].items():
                if why:
                    print(f'  {name} {path}: {why}: not measured', flush=True)
            # Warm-up: one short wrk on / so first-request costs stay out of round 1.
            server.visits += load.run_wrk(args, server, '/', duration=1)['requests']
        print(f'{args.rounds} rounds x {len(args.paths)} paths x {len(live)} servers x '
              f'{args.duration:g} s, then /healthcheck under load ...', flush=True)
        per_cell = load.measure_rounds(args, live, problems, results,
                                       began + args.max_minutes * 60)
        for name, server in live.items():
            rss, pss = readings.memory_mb(server.tree())
            results['rss'][name].update({'after_mb': rss, 'after_pss_mb': pss})
        for app in results['apps']:
            live[app].stop()     # flushes and closes its access log
            lines, probes = live[app].count_log()
            results['access_log'][app] = {'visit_lines': lines, 'healthcheck_lines': probes,
                                          'visits_completed': live[app].visits}
        report.finish(results, per_cell, problems)
    finally:
        for server in live.values():
            server.stop()
        results['meta'].update(loadavg_after=readings.loadavg(),
                               seconds=round(time.monotonic() - began, 1))
        shutil.rmtree(tmp, ignore_errors=True)
    path = args.json or os.path.join(BENCH_DIR, 'results', datetime.datetime.now().strftime(
        'bench-%Y%m%d-%H%M%S.json'))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as file:
        json.dump(results, file, indent=1)
    print(f"\n{report.render(results)}\n\n{results['meta']['seconds']:.0f} s in all; JSON: {path}")


def main(argv=None):
    """Run the benchmark; return 0 when it ran (targets are reported, not enforced)."""
    run(parse_args(argv))
    return 0


if __name__ == '__main__':
    sys.exit(main())
