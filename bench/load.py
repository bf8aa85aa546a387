"""Load from wrk on the load core: wrk run and parsed, one cell, the interleaved rounds."""
import re
import subprocess
import time

import readings
import report
from servers import HOST, get

WRK_GRACE = 20           # s beyond -d before a hung wrk is killed
PROBE_INTERVAL = 0.01    # s between /healthcheck probes under load (at most 100 a second)
PROBE_TIMEOUT = 2.0      # s: a probe slower than this counts as failed, as a balancer would
UNITS = {'us': 1e-3, 'ms': 1.0, 's': 1e3, 'm': 60e3, 'h': 3600e3}
ERRORS = ('connect', 'read', 'write', 'timeout')


def parse_wrk(out):
    """Return req/s, requests, p50/p90/p99 (ms), socket errors and non-2xx/3xx from wrk."""
    rps = re.search(r'Requests/sec:\s+([\d.]+)', out)
    done = re.search(r'(\d+) requests in', out)
    errors = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', out)
    non_2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    result = {'rps': float(rps[1]) if rps else 0.0, 'requests': int(done[1]) if done else 0,
              'errors': dict(zip(ERRORS, map(int, errors.groups() if errors else [0] * 4),
                                 strict=True)),
              'non_2xx_3xx': int(non_2xx[1]) if non_2xx else 0}
    for pct in ('50', '90', '99'):
        match = re.search(rf'^\s+{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$', out, re.M)
        result[f'p{pct}_ms'] = float(match[1]) * UNITS[match[2]] if match else None
    return result


def start_wrk(args, port, path, duration=None):
    """Start wrk on `path`, pinned to the load core; return its Popen."""
    argv = ['taskset', '-c', str(args.load_core), 'wrk', '-c', str(args.connections),
            '-t', str(args.threads), '-d', f'{duration or args.duration}s', '--latency',
            *(part for header in getattr(args, 'header', []) for part in ('-H', header)),
            f'http://{HOST}:{port}{path}']
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_wrk(proc, duration):
    """Wait for wrk (killed past its grace); return its figures, or raise if it ran no test."""
    try:
        out, _ = proc.communicate(timeout=duration + WRK_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    if ' requests in ' not in out:       # a test with no answers still prints this line
        raise RuntimeError(f'wrk did not run: {" ".join(proc.args)}\n{out[-1500:]}')
    return parse_wrk(out)


def run_wrk(args, server, path, duration=None):
    """Saturate `path` on `server` once; return wrk's figures."""
    duration = duration or args.duration
    return finish_wrk(start_wrk(args, server.port, path, duration), duration)


def measure_cell(args, server, path):
    """Saturate `path` once; return wrk's figures, the server tree's CPU, and others' share."""
    cores, own = readings.core_times(), readings.own_cpu_seconds()
    cpu = readings.cpu_seconds(server.tree())
    started = time.monotonic()
    result = run_wrk(args, server, path)
    wall = time.monotonic() - started
    cpu = readings.cpu_seconds(server.tree()) - cpu
    own = readings.own_cpu_seconds() - own
    ran, steal = readings.core_deltas(cores, readings.core_times())
    result.update({
        'cpu_us_per_req': cpu * 1e6 / result['requests'] if result['requests'] else None,
        'cpu_pct': 100 * cpu / wall,
        # Whatever else ran on either core takes CPU from the server or from wrk, and a busy
        # machine slows both (shared caches, SMT siblings): such a cell is flagged.
        'others_on_core_pct': 100 * max(0.0, ran[args.server_core] - cpu) / wall,
        'others_on_load_core_pct': 100 * max(0.0, ran[args.load_core] - own) / wall,
        'steal_pct': 100 * (steal[args.server_core] + steal[args.load_core]) / wall,
    })
    return result


def probe_under_load(args, server):
    """Probe /healthcheck on fresh connections while wrk saturates /; return both figures.

    Each probe opens a new connection, as a load balancer's or kubelet's does, so it waits
    in the listen backlog and the worker queue behind the busy connections.
    """
    wrk = start_wrk(args, server.port, '/')
    latencies, failures = [], 0
    try:
        time.sleep(min(0.5, args.duration / 4))          # let wrk reach saturation first
        end = time.monotonic() + args.duration - 0.7     # and stop before wrk does
        next_at = time.monotonic()
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                ok = get(server.port, '/healthcheck', timeout=PROBE_TIMEOUT)[0] == 200
            except OSError:
                ok = False
            if ok:
                latencies.append((time.monotonic() - started) * 1e3)
            failures += not ok
            next_at += PROBE_INTERVAL
            time.sleep(max(0.0, next_at - time.monotonic()))
        page = finish_wrk(wrk, args.duration)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.communicate()
    return {'probes': len(latencies) + failures, 'failures': failures,
            'latencies_ms': latencies, 'page_under_load': page}


def measure_rounds(args, live, problems, results, deadline):
    """Run the interleaved rounds; return {path: {server: [figures per round]}}."""
    per_cell, names = {}, args.servers
    for rnd in range(1, args.rounds + 1):
        # Rotate the order each round so no server always runs first or last.
        order = names[(rnd - 1) % len(names):] + names[:(rnd - 1) % len(names)]
        for path in args.paths:
            for name in order:
                if problems[name][path] or time.monotonic() > deadline:
                    continue
                figures = {**measure_cell(args, live[name], path), 'round': rnd}
                per_cell.setdefault(path, {}).setdefault(name, []).append(figures)
                live[name].visits += figures['requests'] if path == '/' else 0
                others = max(figures['others_on_core_pct'], figures['others_on_load_core_pct'],
                             figures['steal_pct'])
                if others > 100 * report.BUSY_WARN:
                    results['busy_cells'].append(
                        {'server': name, 'path': path, 'round': rnd, 'others_pct': others})
                print(f"  round {rnd} {path:<17}{name:<15}{figures['rps']:>9,.0f} req/s"
                      f"  p99 {report.fmt_ms(figures['p99_ms'])}", flush=True)
        for name in [] if args.no_hc_under_load else order:
            if problems[name]['/'] or problems[name]['/healthcheck'] \
                    or time.monotonic() > deadline:
                continue
            probe = probe_under_load(args, live[name])
            live[name].visits += probe['page_under_load']['requests']
            hc = results['hc_under_load'].setdefault(
                name, {'latencies_ms': [], 'failures': 0, 'page_rps_rounds': []})
            hc['latencies_ms'] += probe['latencies_ms']
            hc['failures'] += probe['failures']
            hc['page_rps_rounds'].append(probe['page_under_load']['rps'])
            print(f"  round {rnd} /healthcheck under load{name:>13}: p99 "
                  f"{report.fmt_ms(report.percentile(probe['latencies_ms'], 99))}, "
                  f"{probe['failures']} failed", flush=True)
    return per_cell
