"""Benchmark the landing app beside its peers on loopback; print one table and write JSON.

usage: python bench/bench.py [--duration S] [--rounds N] [--servers a,b] [--app DIR] ...
(./bench/run.sh sets up bench/.venv and calls this; see --help for every option)

Servers, each on a free 127.0.0.1 port, pinned to one core (taskset -c 0):
  landing      the real `python landing.py` with the real prod.conf
  cheroot      a bare cheroot WSGI server returning the same bytes (the ceiling of this stack)
  http.server  `python -m http.server` serving the same files (what the seed replaces)
  flask        Flask on gunicorn, 1 worker, 100 threads (what a user would pick instead)
  nginx        nginx, 1 worker, serving the same files (the ceiling for static files)
Every server but bare cheroot writes one access-log line per request, as the app does.
Load: wrk pinned to the other core (taskset -c 1), -c100 -t2 --latency, in interleaved rounds
(every round visits every path on every server, in a rotated order), median per cell.
--variant LABEL=DIR adds a copy of the app (say, one being tuned) to the same rounds.
Also: /healthcheck latency from fresh connections while wrk saturates / ; start-up time to
the first 200; RSS idle and after load; the landing's access log checked against the visits.
Every process started here is stopped by its PID in a finally block; every loop has a deadline.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_APP = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, 'results')

SERVERS = ('landing', 'cheroot', 'http.server', 'flask', 'nginx')
PATHS = ('/', '/healthcheck', '/logo.png')
HOST = '127.0.0.1'
START_DEADLINE = 20      # s for a server to answer its first 200
STOP_DEADLINE = 10       # s for a server to exit after SIGTERM before it gets SIGKILL
WRK_GRACE = 20           # s beyond -d before a hung wrk is killed
PROBE_INTERVAL = 0.01    # s between /healthcheck probes under load (at most 100 a second)
PROBE_TIMEOUT = 2.0      # s: a probe slower than this counts as failed, as a balancer would
BUSY_WARN = 0.10         # share of either core taken by other processes: the cell is suspect
CLK_TCK = os.sysconf('SC_CLK_TCK')

# Targets from the issue, checked against the landing's figures at the end.
TARGETS = {
    'page_vs_http_server': 1.0,
    'page_vs_cheroot': 0.42,
    'p99_ms': 100.0,
    'hc_under_load_p99_ms': 250.0,
    'logo_vs_page': 0.9,
    'startup_ms': 300.0,
    'idle_rss_mb': 40.0,
}


# ---------------------------------------------------------------- /proc readings


def proc_stat(pid):
    """Return (ppid, utime+stime ticks, starttime) of `pid`, or None if it is gone."""
    try:
        with open(f'/proc/{pid}/stat') as file:
            text = file.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(')') + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19])


def children_of(pid):
    """Return the PIDs of every live descendant of `pid`."""
    parents = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat:
                parents.setdefault(stat[0], []).append(int(name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def rss_kb(pid):
    """Return VmRSS of `pid` in kB (0 if gone)."""
    try:
        with open(f'/proc/{pid}/status') as file:
            for line in file:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def loadavg():
    """Return the 1, 5 and 15 minute load averages (a busy machine skews every figure)."""
    with open('/proc/loadavg') as file:
        return file.read().split()[:3]


def core_ticks():
    """Return {cpu number: (process ticks, steal ticks)} from /proc/stat.

    Process ticks are user + nice + system: what processes ran. Interrupt and softirq time
    is left out, since loopback traffic puts the server's own network work there.
    """
    cores = {}
    with open('/proc/stat') as file:
        for line in file:
            match = re.match(r'cpu(\d+) (.*)', line)
            if match:
                values = [int(v) for v in match.group(2).split()]
                cores[int(match.group(1))] = (values[0] + values[1] + values[2], values[7])
    return cores


# ---------------------------------------------------------------- HTTP helpers


def free_port():
    """Return a loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def get(port, path, headers=None, timeout=5.0):
    """GET `path` on a new connection; return (status, headers dict, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request('GET', path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def wait_for_200(port, deadline, proc=None):
    """Poll GET / until it answers 200; return seconds waited, or None past `deadline`."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if proc is not None and proc.poll() is not None:
            return None
        try:
            if get(port, '/', timeout=1.0)[0] == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.002)
    return None


# ---------------------------------------------------------------- servers


class Server:
    """One server process, pinned to the server core, started and stopped by its PID."""

    def __init__(self, name, argv, workdir, env=None, cwd=None, conf=None, core=0):
        self.name, self.argv, self.workdir = name, argv, workdir
        self.env = env or {}
        self.cwd, self.core = cwd, core
        self.conf = conf         # (path, text with {port}) written before each start
        self.port = None
        self.proc = None
        self.visits = 0          # requests for / that wrk completed (checked against the log)
        self.known = {}          # pid -> starttime of every process seen in its tree
        self.stdout_path = os.path.join(workdir, f'{name}.out')
        self.stderr_path = os.path.join(workdir, f'{name}.err')

    def start(self, port):
        """Spawn the server on `port` and return at once (see wait_ready)."""
        self.port = port
        argv = [part.replace('{port}', str(port)) for part in self.argv]
        env = dict(os.environ)
        env.update({key: value.replace('{port}', str(port)) for key, value in self.env.items()})
        if self.conf:
            with open(self.conf[0], 'w') as file:
                file.write(self.conf[1].replace('{port}', str(port)))
        with open(self.stdout_path, 'ab') as out, open(self.stderr_path, 'ab') as err:
            self.proc = subprocess.Popen(
                ['taskset', '-c', str(self.core)] + argv, cwd=self.cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        stat = proc_stat(self.proc.pid)
        self.known = {self.proc.pid: stat[2]} if stat else {}

    def wait_ready(self, deadline=START_DEADLINE):
        """Return seconds from now until the first 200 on /; raise if it never comes."""
        waited = wait_for_200(self.port, deadline, self.proc)
        if waited is None:
            raise RuntimeError(f'{self.name} did not answer 200 within {deadline} s; '
                               f'see {self.stderr_path}:\n{tail(self.stderr_path)}')
        self.pids()
        return waited

    def pids(self):
        """Return the live PIDs of the server's process tree, remembering each one."""
        pids = [self.proc.pid] + children_of(self.proc.pid)
        for pid in pids:
            stat = proc_stat(pid)
            if stat:
                self.known.setdefault(pid, stat[2])
        return pids

    def cpu_ticks(self):
        """Return utime+stime of the whole process tree, in clock ticks."""
        return sum((proc_stat(pid) or (0, 0, 0))[1] for pid in self.pids())

    def rss_mb(self):
        """Return the summed VmRSS of the process tree in MB (shared pages count twice)."""
        return sum(rss_kb(pid) for pid in self.pids()) / 1024

    def stop(self):
        """SIGTERM the server, SIGKILL it past STOP_DEADLINE, then any child it left behind."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.pids()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_DEADLINE)
        for pid, started in self.known.items():
            stat = proc_stat(pid)
            # Same PID and same start time: still our process, not a reused PID.
            if pid != self.proc.pid and stat and stat[2] == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None


def tail(path, lines=15):
    """Return the last `lines` lines of a text file (for error messages)."""
    try:
        with open(path, errors='replace') as file:
            return ''.join(file.readlines()[-lines:])
    except OSError:
        return ''


NGINX_CONF = """\
# Generated by bench.py: one worker, everything in the temp folder, in the foreground.
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ text/html html; image/png png; }}
    default_type application/octet-stream;
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{{port}};
        root {www};
        charset utf-8;
        location = / {{ try_files /index.html =404; }}
        location = /healthcheck {{
            default_type text/plain;
            add_header Cache-Control no-store;
            return 200 "Yay";
        }}
        location = /logo.png {{ expires 1h; }}
    }}
}}
"""


def landing_server(label, tmp, app_dir, app_env, python):
    """Return a Server running `python landing.py` from `app_dir` on loopback."""
    env = {'HOST': HOST, 'PORT': '{port}', 'PYTHONUNBUFFERED': '1'}
    env.update(app_env)
    return Server(label, [python, 'landing.py'], tmp, env, cwd=app_dir)


def make_servers(names, tmp, www, app_dir, app_env, python, cheroot_threads, cheroot_queue):
    """Return {name: Server} for the servers asked for, their files prepared under `tmp`."""
    servers = {}
    if 'landing' in names:
        servers['landing'] = landing_server('landing', tmp, app_dir, app_env, python)
    if 'cheroot' in names:
        servers['cheroot'] = Server(
            'cheroot', [python, os.path.join(BENCH_DIR, 'peers.py'), 'cheroot',
                        '--port', '{port}', '--www', www,
                        '--threads', str(cheroot_threads), '--queue', str(cheroot_queue)], tmp)
    if 'http.server' in names:
        servers['http.server'] = Server(
            'http.server', [python, '-m', 'http.server', '--bind', HOST,
                            '--directory', www, '{port}'], tmp)
    if 'flask' in names:
        servers['flask'] = Server(
            'flask', [python, '-m', 'gunicorn', '--workers', '1', '--threads', '100',
                      '--bind', f'{HOST}:{{port}}', '--chdir', BENCH_DIR,
                      # gunicorn logs no visits unless asked; the app logs every one.
                      '--access-logfile', '-', 'peers:make_flask_app()'],
            tmp, {'BENCH_WWW': www})
    if 'nginx' in names:
        nginx = shutil.which('nginx') or '/usr/sbin/nginx'
        conf = os.path.join(tmp, 'nginx.conf')
        # The port is only known at start(): the text keeps {port} for Server.start to fill.
        servers['nginx'] = Server(
            'nginx', [nginx, '-p', tmp + '/', '-c', conf, '-e',
                      os.path.join(tmp, 'nginx-error.log')],
            tmp, conf=(conf, NGINX_CONF.format(tmp=tmp, www=www)))
    return servers


def start_server(server):
    """Start `server` on a new free port and wait for its first 200; return seconds taken."""
    port = free_port()
    started = time.monotonic()
    server.start(port)
    server.wait_ready()
    return time.monotonic() - started


# ---------------------------------------------------------------- wrk

UNITS = {'us': 1e-3, 'ms': 1.0, 's': 1e3, 'm': 60e3, 'h': 3600e3}


def to_ms(text):
    """Convert one of wrk's durations ('812.00us', '3.21ms', '1.02s') to milliseconds."""
    match = re.fullmatch(r'([\d.]+)(us|ms|s|m|h)', text)
    return float(match.group(1)) * UNITS[match.group(2)]


def parse_wrk(output):
    """Return req/s, requests, p50/p90/p99 (ms), socket errors and non-2xx/3xx from wrk."""
    result = {'rps': 0.0, 'requests': 0, 'p50_ms': None, 'p90_ms': None, 'p99_ms': None,
              'errors': {'connect': 0, 'read': 0, 'write': 0, 'timeout': 0}, 'non_2xx_3xx': 0}
    match = re.search(r'Requests/sec:\s+([\d.]+)', output)
    if match:
        result['rps'] = float(match.group(1))
    match = re.search(r'(\d+) requests in', output)
    if match:
        result['requests'] = int(match.group(1))
    for pct, key in (('50', 'p50_ms'), ('90', 'p90_ms'), ('99', 'p99_ms')):
        match = re.search(rf'^\s+{pct}%\s+(\S+)', output, re.M)
        if match:
            result[key] = to_ms(match.group(1))
    match = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)',
                      output)
    if match:
        result['errors'] = dict(zip(('connect', 'read', 'write', 'timeout'),
                                    map(int, match.groups())))
    match = re.search(r'Non-2xx or 3xx responses: (\d+)', output)
    if match:
        result['non_2xx_3xx'] = int(match.group(1))
    return result


def wrk_argv(args, port, path, connections=None, duration=None):
    """Return the wrk command line, pinned to the load core."""
    return ['taskset', '-c', str(args.load_core), 'wrk', '-c', str(connections or args.connections),
            '-t', str(args.threads), '-d', f'{duration or args.duration}s', '--latency',
            f'http://{HOST}:{port}{path}']


def run_wrk(argv, duration):
    """Run wrk (bounded by a timeout) and return its output; raise if it did not run."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=duration + WRK_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return checked_wrk(out, argv)


def checked_wrk(out, argv):
    """Return wrk's output if it ran a test (even one with no answers), else raise."""
    if ' requests in ' not in out:
        raise RuntimeError(f'wrk did not run: {" ".join(argv)}\n{out[-1500:]}')
    return out


def own_cpu_seconds():
    """Return the CPU seconds of this driver plus its reaped children (wrk), so far."""
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (self_usage.ru_utime + self_usage.ru_stime + children.ru_utime
            + children.ru_stime)


def measure_cell(args, server, path):
    """Saturate `path` on `server` with wrk once; return wrk's figures plus server CPU."""
    cores_before = core_ticks()
    ticks_before = server.cpu_ticks()
    own_before = own_cpu_seconds()
    started = time.monotonic()
    output = run_wrk(wrk_argv(args, server.port, path), args.duration)
    wall = time.monotonic() - started
    ticks = server.cpu_ticks() - ticks_before
    own = own_cpu_seconds() - own_before
    cores_after = core_ticks()
    result = parse_wrk(output)

    def core_delta(core, field):
        """Seconds of /proc/stat `field` (0 processes, 1 steal) on `core` during the cell."""
        return (cores_after[core][field] - cores_before[core][field]) / CLK_TCK

    cpu_s = ticks / CLK_TCK
    result.update({
        'cpu_us_per_req': cpu_s * 1e6 / result['requests'] if result['requests'] else None,
        'cpu_pct': 100 * cpu_s / wall,
        # Whatever else ran on either core meanwhile: other processes take CPU from the
        # server or from wrk, and a busy machine slows both (shared caches, SMT siblings).
        'others_on_core_pct': 100 * max(0.0, core_delta(args.server_core, 0) - cpu_s) / wall,
        'others_on_load_core_pct':
            100 * max(0.0, core_delta(args.load_core, 0) - own) / wall,
        'steal_pct': 100 * (core_delta(args.server_core, 1) + core_delta(args.load_core, 1))
            / wall,
    })
    return result


def probe_under_load(args, server):
    """Probe /healthcheck on fresh connections while wrk saturates /; return both figures.

    Each probe opens a new connection, as a load balancer's or kubelet's does, so it waits
    in the listen backlog and the worker queue behind the 100 busy connections.
    """
    wrk = subprocess.Popen(wrk_argv(args, server.port, '/'), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    latencies, failures = [], 0
    try:
        time.sleep(min(0.5, args.duration / 4))          # let wrk reach saturation first
        end = time.monotonic() + args.duration - 0.7     # and stop before wrk does
        next_at = time.monotonic()
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                status, _, _ = get(server.port, '/healthcheck', timeout=PROBE_TIMEOUT)
                if status == 200:
                    latencies.append((time.monotonic() - started) * 1e3)
                else:
                    failures += 1
            except OSError:
                failures += 1
            next_at += PROBE_INTERVAL
            time.sleep(max(0.0, next_at - time.monotonic()))
        out, _ = wrk.communicate(timeout=args.duration + WRK_GRACE)
        checked_wrk(out, wrk.args)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.communicate()
    return {'probes': len(latencies) + failures, 'failures': failures,
            'latencies_ms': latencies, 'page_under_load': parse_wrk(out)}


# ---------------------------------------------------------------- summaries


def percentile(values, pct):
    """Return the pct-th percentile of `values` (nearest rank), or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


def median(values):
    """Median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rounds):
    """Median of each figure over the rounds; socket errors and non-2xx summed."""
    errors = {kind: sum(r['errors'][kind] for r in rounds) for kind in rounds[0]['errors']}
    rps = [r['rps'] for r in rounds]
    return {
        'rps': median(rps),
        'rps_spread_pct': 100 * (max(rps) - min(rps)) / median(rps) if median(rps) else None,
        'p50_ms': median(r['p50_ms'] for r in rounds),
        'p99_ms': median(r['p99_ms'] for r in rounds),
        'socket_errors': sum(errors.values()),
        'socket_errors_by_kind': errors,
        'non_2xx_3xx': sum(r['non_2xx_3xx'] for r in rounds),
        'cpu_us_per_req': median(r['cpu_us_per_req'] for r in rounds),
        'cpu_pct': median(r['cpu_pct'] for r in rounds),
        'others_on_core_pct': max(r['others_on_core_pct'] for r in rounds),
        'others_on_load_core_pct': max(r['others_on_load_core_pct'] for r in rounds),
    }


def fmt(value, spec, none='n/a'):
    """Format a figure, or 'n/a' for a missing one."""
    return none if value is None else format(value, spec)


def fmt_ms(value):
    """Format milliseconds compactly."""
    if value is None:
        return 'n/a'
    if value < 10:
        return f'{value:.2f}ms'
    return f'{value:.1f}ms' if value < 100 else f'{value:.0f}ms'


def report(results):
    """Return the human-readable report of a finished run."""
    lines = []
    meta = results['meta']
    lines.append(f"Benchmark {meta['date']}: wrk -c{meta['args']['connections']} "
                 f"-t{meta['args']['threads']} -d{meta['args']['duration']}s, "
                 f"{meta['args']['rounds']} interleaved rounds, median per cell; servers on "
                 f"core {meta['args']['server_core']}, wrk on core {meta['args']['load_core']}.")
    lines.append(f"loadavg before {meta['loadavg_before']}, after {meta['loadavg_after']}"
                 + (f"; app {meta['app_dir']} with {meta['app_env']}" if meta['app_env']
                    or meta['app_dir'] != DEFAULT_APP else ''))
    lines.append('')
    header = (f"{'path':<13}{'server':<12}{'req/s':>9}{'spread':>8}{'p50':>9}{'p99':>9}"
              f"{'sock err':>10}{'non2xx':>8}{'cpu µs/req':>11}{'cpu%':>6}")
    lines.append(header)
    lines.append('-' * len(header))
    cells = results['cells']
    for path in results['paths']:
        for name in results['servers']:
            cell = cells.get(path, {}).get(name)
            if cell is None:
                continue
            if 'skipped' in cell:
                lines.append(f'{path:<13}{name:<12}{"n/a":>9}  ({cell["skipped"]})')
                continue
            s = cell['median']
            lines.append(
                f"{path:<13}{name:<12}{fmt(s['rps'], ',.0f'):>9}"
                f"{fmt(s['rps_spread_pct'], '.0f') + '%':>8}"
                f"{fmt_ms(s['p50_ms']):>9}{fmt_ms(s['p99_ms']):>9}{s['socket_errors']:>10}"
                f"{s['non_2xx_3xx']:>8}{fmt(s['cpu_us_per_req'], '.0f'):>11}"
                f"{fmt(s['cpu_pct'], '.0f'):>6}")
        lines.append('')
    apps = list(results['ratios'])
    peers = [n for n in results['servers'] if n in SERVERS and n != 'landing']
    if apps and peers:
        lines.append('req/s ÷ peer req/s')
        lines.append(f"{'path':<13}{'server':<12}" + ''.join(f'{p:>13}' for p in peers))
        for path in results['paths']:
            for app in apps:
                row = results['ratios'][app].get(path, {})
                lines.append(f'{path:<13}{app:<12}'
                             + ''.join(f"{fmt(row.get(p), '.2f'):>13}" for p in peers))
        lines.append('')
    variants = [a for a in apps if a != 'landing']
    if 'landing' in apps and variants:
        lines.append('variant req/s ÷ landing req/s (same run, same rounds)')
        lines.append(f"{'path':<13}" + ''.join(f'{v:>13}' for v in variants))
        for path in results['paths']:
            lines.append(f'{path:<13}' + ''.join(
                f"{fmt(results['ratios'][v].get(path, {}).get('landing'), '.2f'):>13}"
                for v in variants))
        lines.append('')
    if results['hc_under_load']:
        lines.append('/healthcheck from fresh connections while wrk saturates / '
                     f"(one probe every {PROBE_INTERVAL * 1000:.0f} ms, all rounds pooled)")
        lines.append(f"{'server':<13}{'probes':>7}{'failed':>7}{'p50':>9}{'p99':>9}{'max':>9}"
                     f"{'/ req/s meanwhile':>19}")
        for name, hc in results['hc_under_load'].items():
            lines.append(f"{name:<13}{hc['probes']:>7}{hc['failures']:>7}{fmt_ms(hc['p50_ms']):>9}"
                         f"{fmt_ms(hc['p99_ms']):>9}{fmt_ms(hc['max_ms']):>9}"
                         f"{fmt(hc['page_rps'], ',.0f'):>19}")
        lines.append('')
    lines.append(f"{'server':<13}{'start-up to first 200 (median, min-max)':<42}"
                 f"{'RSS idle':>10}{'RSS after load':>16}")
    for name in results['servers']:
        up = results['startup'].get(name)
        rss = results['rss'].get(name, {})
        up_text = (f"{up['median_ms']:.0f} ms ({up['min_ms']:.0f}-{up['max_ms']:.0f}, n={up['n']})"
                   if up else 'n/a')
        lines.append(f"{name:<13}{up_text:<42}{fmt(rss.get('idle_mb'), '.1f') + ' MB':>10}"
                     f"{fmt(rss.get('after_mb'), '.1f') + ' MB':>16}")
    lines.append('')
    for app, log in results['access_log'].items():
        lines.append(f"{app} access log: {log['visit_lines']} lines for GET / against "
                     f"{log['visits_completed']} visits wrk completed; "
                     f"{log['healthcheck_lines']} lines for /healthcheck")
    for app in results['access_log']:
        headers = results['logo_headers'].get(app)
        if headers:
            lines.append(f"{app} /logo.png: Cache-Control {headers.get('cache_control')!r}, "
                         f"Last-Modified {'present' if headers.get('last_modified') else 'MISSING'}"
                         f", If-Modified-Since answers {headers.get('conditional_status')}")
    for app, targets in results['targets'].items():
        lines.append('')
        lines.append(f'Targets (issue 6), {app}:')
        for target in targets:
            lines.append(f"  {'PASS' if target['ok'] else 'FAIL'}  {target['what']}: "
                         f"{target['measured']}")
    busy = [f"{c['server']} {c['path']} round {c['round']}: {c['others_pct']:.0f}%"
            for c in results['busy_cells']]
    if busy:
        lines.append('')
        lines.append(f'WARNING: other processes (or the hypervisor) took over {BUSY_WARN:.0%} of '
                     f'a core in {len(busy)} of the cells; compare figures within this run '
                     'only: ' + '; '.join(busy[:8]) + (' ...' if len(busy) > 8 else ''))
    return '\n'.join(lines)


def check_targets(results, app):
    """Return the issue's targets checked against the medians of `app` (landing or a variant)."""
    cells, targets = results['cells'], []

    def cell(path, name):
        """Median figures of one cell, or None."""
        entry = cells.get(path, {}).get(name)
        return entry and entry.get('median')

    page = cell('/', app)
    if not page:
        return targets
    for peer, key, what in (('http.server', 'page_vs_http_server', '/ req/s vs http.server'),
                            ('cheroot', 'page_vs_cheroot', '/ req/s vs bare cheroot')):
        ratio = results['ratios'].get(app, {}).get('/', {}).get(peer)
        if ratio is not None:
            targets.append({'what': f'{what} >= {TARGETS[key]}x (stretch 1.5x/0.6x)',
                            'measured': f'{ratio:.2f}x', 'ok': ratio >= TARGETS[key]})
    for path in results['paths']:
        figures = cell(path, app)
        if figures:
            ok = (figures['p99_ms'] is not None and figures['p99_ms'] <= TARGETS['p99_ms']
                  and figures['socket_errors'] == 0)
            targets.append({'what': f"{path} p99 <= {TARGETS['p99_ms']:.0f} ms, 0 socket errors",
                            'measured': f"p99 {fmt_ms(figures['p99_ms'])}, "
                                        f"{figures['socket_errors']} socket errors", 'ok': ok})
    hc = results['hc_under_load'].get(app)
    if hc:
        ok = hc['p99_ms'] is not None and hc['p99_ms'] <= TARGETS['hc_under_load_p99_ms'] \
            and hc['failures'] == 0
        targets.append({'what': f"/healthcheck p99 <= {TARGETS['hc_under_load_p99_ms']:.0f} ms "
                                'while / is saturated',
                        'measured': f"p99 {fmt_ms(hc['p99_ms'])}, {hc['failures']} failed",
                        'ok': ok})
    logo = cell('/logo.png', app)
    if logo and page['rps']:
        ratio = logo['rps'] / page['rps']
        targets.append({'what': f"/logo.png req/s >= {TARGETS['logo_vs_page']}x the page's",
                        'measured': f'{ratio:.2f}x', 'ok': ratio >= TARGETS['logo_vs_page']})
        headers = results['logo_headers'].get(app, {})
        ok = bool(headers.get('last_modified') and 'max-age' in (headers.get('cache_control') or '')
                  and headers.get('conditional_status') == 304)
        targets.append({'what': '/logo.png keeps Last-Modified, Cache-Control max-age, 304',
                        'measured': f"{headers.get('cache_control')!r}, "
                                    f"{headers.get('conditional_status')}", 'ok': ok})
    up = results['startup'].get(app)
    if up:
        targets.append({'what': f"start-up to first 200 <= {TARGETS['startup_ms']:.0f} ms",
                        'measured': f"{up['median_ms']:.0f} ms",
                        'ok': up['median_ms'] <= TARGETS['startup_ms']})
    rss = results['rss'].get(app, {})
    if rss.get('idle_mb') is not None:
        targets.append({'what': f"idle RSS <= {TARGETS['idle_rss_mb']:.0f} MB",
                        'measured': f"{rss['idle_mb']:.1f} MB",
                        'ok': rss['idle_mb'] <= TARGETS['idle_rss_mb']})
    log = results['access_log'].get(app)
    if log:
        ok = log['visit_lines'] >= 0.99 * log['visits_completed'] and log['healthcheck_lines'] == 0
        targets.append({'what': 'access log keeps one line per visit, none for probes',
                        'measured': f"{log['visit_lines']}/{log['visits_completed']}, "
                                    f"{log['healthcheck_lines']} probe lines", 'ok': ok})
    return targets


# ---------------------------------------------------------------- the run


def prepare_www(tmp, app_dir):
    """Write the app's page, 'Yay' and logo into tmp/www; return (folder, expected bodies)."""
    sys.path.insert(0, app_dir)
    import landing  # the real page bytes, from the app being measured

    page = landing.PAGE if isinstance(landing.PAGE, bytes) else landing.PAGE.encode()
    with open(os.path.join(app_dir, 'static', 'logo.png'), 'rb') as file:
        logo = file.read()
    www = os.path.join(tmp, 'www')
    os.mkdir(www)
    expected = {'/': page, '/healthcheck': b'Yay', '/logo.png': logo}
    for name, body in (('index.html', page), ('healthcheck', b'Yay'), ('logo.png', logo)):
        with open(os.path.join(www, name), 'wb') as file:
            file.write(body)
    # nginx's worker drops root for 'nobody': let it read the files and write its temp dirs.
    os.chmod(tmp, 0o755)
    os.chmod(www, 0o755)
    return www, expected


def measure_startup(server, repeats):
    """Start and stop `server` `repeats` times; return start-up to first 200 in ms."""
    times = []
    for _ in range(repeats):
        try:
            times.append(start_server(server) * 1e3)
        finally:
            server.stop()
    return {'median_ms': statistics.median(times), 'min_ms': min(times), 'max_ms': max(times),
            'n': len(times), 'all_ms': times}


def validate(server, expected):
    """Return {path: None if the server answers 200 with the expected bytes, else why not}."""
    problems = {}
    for path, body in expected.items():
        try:
            status, _, got = get(server.port, path)
        except OSError as error:
            problems[path] = f'error {error}'
            continue
        if status != 200 or got != body:
            problems[path] = f'answered {status} with {len(got)} bytes, not the same bytes'
        else:
            problems[path] = None
    return problems


def logo_headers(server):
    """Return the caching headers of /logo.png and the status of a conditional GET."""
    status, headers, _ = get(server.port, '/logo.png')
    lower = {key.lower(): value for key, value in headers.items()}
    result = {'cache_control': lower.get('cache-control'), 'expires': lower.get('expires'),
              'last_modified': lower.get('last-modified'), 'conditional_status': None}
    if result['last_modified']:
        result['conditional_status'] = get(
            server.port, '/logo.png', {'If-Modified-Since': result['last_modified']})[0]
    return result


def count_access_log(path, offset=0):
    """Return (GET / lines, /healthcheck lines) in the landing's access log (its stdout)."""
    visits = probes = 0
    with open(path, errors='replace') as file:
        file.seek(offset)
        for line in file:
            if '"GET / HTTP/' in line:
                visits += 1
            elif '/healthcheck' in line:
                probes += 1
    return visits, probes


def versions(python):
    """Return the versions of the tools and packages measured, for the JSON."""
    found = {'python': sys.version.split()[0]}
    for dist in ('CherryPy', 'cheroot', 'Flask', 'gunicorn', 'Werkzeug'):
        try:
            from importlib import metadata
            found[dist] = metadata.version(dist)
        except Exception:  # noqa: BLE001 — a missing package is just not reported
            found[dist] = None
    for tool, argv in (('wrk', ['wrk', '--version']), ('nginx', ['nginx', '-v'])):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            found[tool] = (out.stdout + out.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            found[tool] = None
    return found


def parse_args(argv):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Benchmark the landing app beside its peers on loopback.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--duration', type=int, default=4, help='seconds per wrk cell')
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds')
    parser.add_argument('--connections', type=int, default=100, help='wrk -c')
    parser.add_argument('--threads', type=int, default=2, help='wrk -t')
    parser.add_argument('--servers', default=','.join(SERVERS),
                        help='comma-separated subset of ' + ','.join(SERVERS))
    parser.add_argument('--paths', default=','.join(PATHS), help='comma-separated paths')
    parser.add_argument('--startup-repeats', type=int, default=3,
                        help='start-ups timed per server (0 skips)')
    parser.add_argument('--no-hc-under-load', action='store_true',
                        help='skip /healthcheck latency while / is saturated')
    parser.add_argument('--app', default=DEFAULT_APP,
                        help='folder holding landing.py (e.g. a scratch copy being tuned)')
    parser.add_argument('--app-env', action='append', default=[], metavar='NAME=VALUE',
                        help='extra environment for the landing app (e.g. THREADS=8)')
    parser.add_argument('--variant', action='append', default=[], metavar='LABEL=DIR',
                        help='also measure landing.py from DIR as server LABEL, interleaved '
                             'with the rest (a tuned copy against the current app)')
    parser.add_argument('--variant-env', action='append', default=[],
                        metavar='LABEL:NAME=VALUE', help='environment for one variant')
    # 'Bare' means cheroot's own defaults (wsgi.Server's 10 threads) but for the backlog: with
    # its 5, most of wrk's 100 connections wait out SYN retransmits and the figures swing 2x.
    parser.add_argument('--cheroot-threads', type=int, default=10,
                        help='bare cheroot pool size (cheroot\'s default)')
    parser.add_argument('--cheroot-queue', type=int, default=1024,
                        help='bare cheroot listen backlog (the app\'s server.socket_queue_size)')
    parser.add_argument('--server-core', type=int, default=0)
    parser.add_argument('--load-core', type=int, default=1)
    parser.add_argument('--json', help='JSON path (default bench/results/bench-<time>.json)')
    parser.add_argument('--max-minutes', type=float, default=20,
                        help='stop measuring (and report what was measured) past this')
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(',') if s]
    args.paths = [p for p in args.paths.split(',') if p]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f'unknown servers: {", ".join(sorted(unknown))}')
    args.app = os.path.abspath(args.app)
    args.app_env = dict(item.split('=', 1) for item in args.app_env)
    variants = {}
    for item in args.variant:
        label, _, folder = item.partition('=')
        if not folder or label in SERVERS or label in variants:
            parser.error(f'--variant wants a new LABEL=DIR, got {item!r}')
        variants[label] = {'dir': os.path.abspath(folder), 'env': {}}
    for item in args.variant_env:
        label, _, setting = item.partition(':')
        if label not in variants or '=' not in setting:
            parser.error(f'--variant-env wants LABEL:NAME=VALUE for a --variant, got {item!r}')
        variants[label]['env'].update([setting.split('=', 1)])
    args.variants = variants
    args.servers += list(variants)
    return args


def main(argv=None):
    """Run the benchmark; return 0 when it ran (targets are reported, not enforced)."""
    args = parse_args(argv)
    deadline = time.monotonic() + args.max_minutes * 60
    # The driver's own polling and parsing stay off the server core.
    os.sched_setaffinity(0, {args.load_core})
    # A SIGTERM to the driver still runs the finally block that stops every server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    began = time.monotonic()
    tmp = tempfile.mkdtemp(prefix='landing-bench.')
    servers = {}
    results = {
        'meta': {'date': datetime.datetime.now().isoformat(timespec='seconds'),
                 'args': {k: v for k, v in vars(args).items()}, 'app_dir': args.app,
                 'app_env': args.app_env, 'versions': versions(sys.executable),
                 'loadavg_before': loadavg(), 'cpus': os.cpu_count()},
        'servers': args.servers, 'paths': args.paths, 'cells': {}, 'ratios': {},
        'hc_under_load': {}, 'startup': {}, 'rss': {}, 'logo_headers': {}, 'busy_cells': [],
        'access_log': {}, 'targets': {},
    }
    try:
        www, expected = prepare_www(tmp, args.app)
        servers = make_servers(args.servers, tmp, www, args.app, args.app_env, sys.executable,
                               args.cheroot_threads, args.cheroot_queue)
        for label, variant in args.variants.items():
            servers[label] = landing_server(label, tmp, variant['dir'], variant['env'],
                                            sys.executable)

        if args.startup_repeats:
            print(f'start-up: {args.startup_repeats} times each ...', flush=True)
            for name, server in servers.items():
                results['startup'][name] = measure_startup(server, args.startup_repeats)

        print('starting servers ...', flush=True)
        apps = [name for name in servers if name == 'landing' or name in args.variants]
        problems, log_start = {}, {}
        for name, server in servers.items():
            start_server(server)
            if name in apps:
                # Lines before this point came from start-up polls, not from counted visits.
                log_start[name] = os.path.getsize(server.stdout_path)
            time.sleep(0.5)          # let start-up work settle before reading idle RSS
            results['rss'][name] = {'idle_mb': server.rss_mb()}
            problems[name] = validate(server, expected)
            server.visits += 1       # the validation GET /
            if not problems[name]['/logo.png']:
                results['logo_headers'][name] = logo_headers(server)
            for path, why in problems[name].items():
                if why:
                    print(f'  {name} {path}: {why}: not measured', flush=True)
            # Warm-up: one short wrk on / so first-request costs stay out of round 1.
            warm = parse_wrk(run_wrk(wrk_argv(args, server.port, '/', duration=1), 1))
            server.visits += warm['requests']

        per_cell = {}
        n = len(args.servers)
        print(f'{args.rounds} rounds x {len(args.paths)} paths x {n} servers x '
              f'{args.duration:g} s, then /healthcheck under load ...', flush=True)
        for rnd in range(args.rounds):
            # Rotate the order each round so no server always runs first or last.
            order = args.servers[rnd % n:] + args.servers[:rnd % n]
            for path in args.paths:
                for name in order:
                    if problems[name][path] or time.monotonic() > deadline:
                        continue
                    figures = measure_cell(args, servers[name], path)
                    figures['round'] = rnd + 1
                    per_cell.setdefault(path, {}).setdefault(name, []).append(figures)
                    if path == '/':
                        servers[name].visits += figures['requests']
                    others = max(figures['others_on_core_pct'],
                                 figures['others_on_load_core_pct'], figures['steal_pct'])
                    if others > 100 * BUSY_WARN:
                        results['busy_cells'].append(
                            {'server': name, 'path': path, 'round': rnd + 1,
                             'others_pct': others})
                    print(f"  round {rnd + 1} {path:<13}{name:<12}{figures['rps']:>9,.0f} req/s"
                          f"  p99 {fmt_ms(figures['p99_ms'])}", flush=True)
            for name in ([] if args.no_hc_under_load else order):
                if problems[name]['/'] or problems[name]['/healthcheck'] \
                        or time.monotonic() > deadline:
                    continue
                probe = probe_under_load(args, servers[name])
                servers[name].visits += probe['page_under_load']['requests']
                hc = results['hc_under_load'].setdefault(
                    name, {'latencies_ms': [], 'failures': 0, 'page_rps_rounds': []})
                hc['latencies_ms'].extend(probe['latencies_ms'])
                hc['failures'] += probe['failures']
                hc['page_rps_rounds'].append(probe['page_under_load']['rps'])
                print(f"  round {rnd + 1} /healthcheck under load{name:>13}: p99 "
                      f"{fmt_ms(percentile(probe['latencies_ms'], 99))}, "
                      f"{probe['failures']} failed", flush=True)

        for name, server in servers.items():
            results['rss'][name]['after_mb'] = server.rss_mb()
        for path in args.paths:
            for name in args.servers:
                rounds = per_cell.get(path, {}).get(name)
                entry = results['cells'].setdefault(path, {})
                if rounds:
                    entry[name] = {'median': summarize(rounds), 'rounds': rounds}
                else:
                    entry[name] = {'skipped': problems.get(name, {}).get(path) or 'not measured'}
        for app in apps:
            for path in args.paths:
                page = results['cells'][path][app].get('median')
                for name in args.servers:
                    peer = results['cells'][path][name].get('median')
                    if name != app and page and peer and peer['rps']:
                        results['ratios'].setdefault(app, {}).setdefault(path, {})[name] = \
                            page['rps'] / peer['rps']
        for name, hc in results['hc_under_load'].items():
            lat = hc['latencies_ms']
            hc.update({'probes': len(lat) + hc['failures'], 'p50_ms': percentile(lat, 50),
                       'p99_ms': percentile(lat, 99), 'max_ms': max(lat) if lat else None,
                       'page_rps': median(hc['page_rps_rounds'])})
        for app in apps:
            servers[app].stop()                  # flushes and closes the access log
            lines, probes = count_access_log(servers[app].stdout_path, log_start[app])
            results['access_log'][app] = {'visit_lines': lines, 'healthcheck_lines': probes,
                                          'visits_completed': servers[app].visits}
            results['targets'][app] = check_targets(results, app)
    finally:
        for server in servers.values():
            server.stop()
        results['meta']['loadavg_after'] = loadavg()
        results['meta']['seconds'] = round(time.monotonic() - began, 1)
        shutil.rmtree(tmp, ignore_errors=True)

    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = args.json or os.path.join(
        RESULTS_DIR, f"bench-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, 'w') as file:
        json.dump(results, file, indent=1)
    print()
    print(report(results))
    print(f"\n{results['meta']['seconds']:.0f} s in all; JSON: {path}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
