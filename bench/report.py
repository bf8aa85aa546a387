"""The run summed up: medians per cell, the targets checked, the report printed."""
import statistics
import subprocess
import sys
from importlib import metadata

BUSY_WARN = 0.10         # share of either core taken by other processes: the cell is suspect
# Issue 22's targets at wrk -c100 (the app's default 100 threads), checked for the app and each
# variant in the same run, against the variant labelled `before` where one ran. Reported, never
# enforced.
TARGETS = {
    'vs_peer': {'flask': 1.5, 'http.server': 1.3},     # req/s on every path, as a multiple
    'p99_ms': {'/': 100.0, '/healthcheck': 100.0, '/logo.png': 50.0, '/static/site.css': 50.0},
    'vs_before': {'/': 1.5, '/healthcheck': 1.5, '/logo.png': 5.0, '/static/site.css': 5.0},
    'startup_ms': 200.0,
    'idle_pss_mb': 40.0,           # the PSS sum of the tree: what its pages cost together
}


def versions():
    """Return the versions of the tools and packages measured, for the JSON."""
    found = {'python': sys.version.split()[0]}
    for dist in ('CherryPy', 'cheroot', 'granian', 'Flask', 'gunicorn', 'Werkzeug', 'starlette',
                 'uvicorn', 'h11', 'psutil'):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    for tool, argv in (('wrk', ['wrk', '--version']), ('nginx', ['nginx', '-v'])):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            found[tool] = (done.stdout + done.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            found[tool] = None
    return found


def percentile(values, pct):
    """Return the pct-th percentile of `values` (nearest rank), or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


def median(values):
    """Return the median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rounds):
    """Return the median of each figure over the rounds; errors summed, others' share max."""
    errors = {kind: sum(r['errors'][kind] for r in rounds) for kind in rounds[0]['errors']}
    rps = median(r['rps'] for r in rounds)
    spread = max(r['rps'] for r in rounds) - min(r['rps'] for r in rounds)
    summary = {'rps': rps, 'rps_spread_pct': 100 * spread / rps if rps else None,
               'socket_errors': sum(errors.values()), 'socket_errors_by_kind': errors,
               'non_2xx_3xx': sum(r['non_2xx_3xx'] for r in rounds)}
    for key in ('p50_ms', 'p99_ms', 'cpu_us_per_req', 'cpu_pct'):
        summary[key] = median(r[key] for r in rounds)
    for key in ('others_on_core_pct', 'others_on_load_core_pct'):
        summary[key] = max(r[key] for r in rounds)
    return summary


def finish(results, per_cell, problems):
    """Fill in the medians per cell, the ratios between servers, pooled probes and targets."""
    names, paths = results['servers'], results['paths']
    for path in paths:
        for name in names:
            rounds = per_cell.get(path, {}).get(name)
            results['cells'].setdefault(path, {})[name] = (
                {'median': summarize(rounds), 'rounds': rounds} if rounds else
                {'skipped': problems.get(name, {}).get(path) or 'not measured'})
    for app in results['apps']:
        for path in paths:
            for name in names:
                mine, peer = cell(results, path, app), cell(results, path, name)
                if name != app and mine and peer and peer['rps']:
                    results['ratios'].setdefault(app, {}).setdefault(path, {})[name] = \
                        mine['rps'] / peer['rps']
    for hc in results['hc_under_load'].values():
        lat = hc['latencies_ms']
        hc.update({'probes': len(lat) + hc['failures'], 'p50_ms': percentile(lat, 50),
                   'p99_ms': percentile(lat, 99), 'max_ms': max(lat, default=None),
                   'page_rps': median(hc['page_rps_rounds'])})
    for app in results['apps']:
        results['targets'][app] = check_targets(results, app)


def fmt(value, spec, unit=''):
    """Format a figure (with its unit), or 'n/a' for a missing one."""
    return 'n/a' if value is None else format(value, spec) + unit


def fmt_ms(value):
    """Format milliseconds compactly."""
    if value is None:
        return 'n/a'
    return f'{value:.{2 if value < 10 else 1 if value < 100 else 0}f}ms'


def cell(results, path, name):
    """Return the median figures of one cell, or None."""
    return (results['cells'].get(path, {}).get(name) or {}).get('median')


def floor_note(results, path, wanted):
    """Return ' (the target is Nx bare CherryPy)' for `wanted` req/s, or '' without that peer.

    The `cherrypy` peer is CherryPy's own pipeline with nothing on top: a target above it
    asks for more than any app served through CherryPy's pipeline on this server can give.
    """
    floor = cell(results, path, 'cherrypy')
    if not wanted or not floor or not floor['rps']:
        return ''
    return f" (the target is {wanted / floor['rps']:.2f}x bare CherryPy's {floor['rps']:,.0f})"


def check_targets(results, app):
    """Return [{ok, what, measured}] for `app`; ok is None where it could not be checked."""
    t, checks, ratios = TARGETS, [], results['ratios'].get(app, {})
    for peer, need in t['vs_peer'].items():
        if peer not in results['servers']:
            checks.append((None, f'req/s >= {need}x {peer} on every path', f'{peer} did not run'))
            continue
        got = {path: ratios.get(path, {}).get(peer) for path in results['paths']}
        checks.append((None not in got.values() and min(got.values()) >= need,
                       f'req/s >= {need}x {peer} on every path',
                       ', '.join(f'{path} {fmt(r, ".2f", "x")}' for path, r in got.items())))
    for path in results['paths']:
        mine, limit = cell(results, path, app), t['p99_ms'].get(path)
        if limit is not None:
            ok = bool(mine) and mine['p99_ms'] is not None and mine['socket_errors'] == 0 \
                and mine['p99_ms'] <= limit
            checks.append((ok if mine else None, f'{path} p99 <= {limit:.0f} ms, 0 socket errors',
                           f"{fmt_ms(mine['p99_ms'])}, {mine['socket_errors']} socket errors"
                           if mine else 'not measured'))
    before = 'before' if app != 'before' and 'before' in results['servers'] else None
    if app != 'before' and not before:
        checks.append((None, "req/s against before's", 'no --variant before=DIR ran'))
    for path in results['paths'] if before else []:
        need, ratio = t['vs_before'].get(path), ratios.get(path, {}).get(before)
        if need is not None:
            checks.append((None if ratio is None else ratio >= need,
                           f"{path} req/s >= {need:g}x before's",
                           fmt(ratio, '.2f', 'x') + floor_note(results, path, need * (
                               (cell(results, path, before) or {}).get('rps') or 0))))
    headers = results['logo_headers'].get(app)
    if headers:
        ok = bool(headers['last_modified'] and 'max-age' in (headers['cache_control'] or '')
                  and headers['conditional_status'] == 304)
        checks.append((ok, '/logo.png keeps Last-Modified, Cache-Control max-age, 304',
                       f"{headers['cache_control']!r}, {headers['conditional_status']}"))
    up = results['startup'].get(app)
    if up:
        checks.append((up['median_ms'] <= t['startup_ms'],
                       f"start-up to first 200 <= {t['startup_ms']:.0f} ms",
                       f"{up['median_ms']:.0f} ms"))
    mem = results['rss'].get(app, {})
    if mem.get('idle_mb') is not None:
        pss = mem.get('idle_pss_mb')
        checks.append((pss is not None and pss <= t['idle_pss_mb'],
                       f"idle memory (PSS of the tree) <= {t['idle_pss_mb']:.0f} MB",
                       f"PSS {fmt(pss, '.1f', ' MB')}, RSS {mem['idle_mb']:.1f} MB, "
                       f"{mem['procs']} process(es)"))
    log = results['access_log'].get(app)
    if log:
        ok = log['visit_lines'] >= 0.99 * log['visits_completed'] and log['healthcheck_lines'] == 0
        checks.append((ok, 'access log keeps one line per visit, none for probes',
                       f"{log['visit_lines']}/{log['visits_completed']}, "
                       f"{log['healthcheck_lines']} probe lines"))
    return [dict(zip(('ok', 'what', 'measured'), check, strict=True)) for check in checks]


def table(titles, widths, rows, left=2):
    """Return a table's lines: the first `left` columns left-aligned, the others right."""
    return [''.join(f'{v:<{w}}' if i < left else f'{v:>{w}}'
                    for i, (v, w) in enumerate(zip(values, widths, strict=True)))
            for values in (titles, *rows)]


def render(results):
    """Return the human-readable report of a finished run."""
    meta, args, paths, names = (results['meta'], results['meta']['args'], results['paths'],
                                results['servers'])
    out = [f"Benchmark {meta['date']}: wrk -c{args['connections']} -t{args['threads']} "
           f"-d{args['duration']}s, {args['rounds']} interleaved rounds, median per cell; "
           f"servers on core {args['server_core']}, wrk on core {args['load_core']}.",
           f"loadavg before {meta['loadavg_before']}, after {meta['loadavg_after']}; "
           f"app {meta['app_dir']}" + (f" with {meta['app_env']}" if meta['app_env'] else ''), '']
    widths = (17, 15, 9, 8, 9, 9, 10, 10, 8, 11, 6)
    head = table(('path', 'server', 'req/s', 'spread', 'p50', 'p99', 'landing ÷', 'sock err',
                  'non2xx', 'cpu µs/req', 'cpu%'), widths, [])[0]
    out += [head, '-' * len(head)]
    for path in paths:
        for name in names:
            entry = results['cells'].get(path, {}).get(name, {})
            s = entry.get('median')
            ratio = results['ratios'].get('landing', {}).get(path, {}).get(name)
            out.append(table((path, name, fmt(s['rps'], ',.0f'),
                              fmt(s['rps_spread_pct'], '.0f', '%'), fmt_ms(s['p50_ms']),
                              fmt_ms(s['p99_ms']), '' if name == 'landing' else fmt(ratio, '.2f'),
                              s['socket_errors'], s['non_2xx_3xx'],
                              fmt(s['cpu_us_per_req'], '.0f'), fmt(s['cpu_pct'], '.0f')),
                             widths, [])[0] if s else
                       f"{path:<17}{name:<15}{'n/a':>9}  ({entry.get('skipped')})")
        out.append('')
    out += ["(landing ÷: the landing app's req/s over that server's, same run)", '']
    apps, variants = list(results['ratios']), results['variants']
    peers = [n for n in names if n != 'landing' and n not in variants]
    if variants and peers:
        out += ['each app\'s req/s ÷ peer req/s', *table(
            ('path', 'server', *peers), (17, 12, *[15] * len(peers)),
            [(path, app, *(fmt(results['ratios'][app].get(path, {}).get(p), '.2f')
                           for p in peers)) for path in paths for app in apps]), '']
    if 'landing' in apps and variants:
        out += ['variant req/s ÷ landing req/s (same run, same rounds)', *table(
            ('path', *variants), (17, *[13] * len(variants)),
            [(path, *(fmt(results['ratios'][v].get(path, {}).get('landing'), '.2f')
                      for v in variants)) for path in paths], left=1), '']
    if results['hc_under_load']:
        out += ['/healthcheck from fresh connections while wrk saturates / (one probe every '
                f"{results['meta']['probe_interval_ms']:g} ms, all rounds pooled)", *table(
                    ('server', 'probes', 'failed', 'p50', 'p99', 'max', '/ req/s meanwhile'),
                    (15, 7, 7, 9, 9, 9, 19),
                    [(name, hc['probes'], hc['failures'], fmt_ms(hc['p50_ms']),
                      fmt_ms(hc['p99_ms']), fmt_ms(hc['max_ms']), fmt(hc['page_rps'], ',.0f'))
                     for name, hc in results['hc_under_load'].items()], left=1), '']
    rows = []
    for name in names:
        up, mem = results['startup'].get(name), results['rss'].get(name, {})
        rows.append((name, f"{up['median_ms']:.0f} ms ({up['min_ms']:.0f}-{up['max_ms']:.0f}, "
                     f"n={up['n']})" if up else 'n/a', mem.get('procs', 'n/a'),
                     *(fmt(mem.get(key), '.1f', ' MB')
                       for key in ('idle_mb', 'idle_pss_mb', 'after_mb', 'after_pss_mb'))))
    out += [*table(('server', 'start-up to first 200 (median, min-max)', 'procs', 'RSS idle',
                    'PSS idle', 'RSS after load', 'PSS after load'), (15, 42, 6, 10, 10, 16, 16),
                   rows), '(memory summed over each process tree; PSS splits shared pages '
                          'between the processes sharing them)', '']
    for app, log in results['access_log'].items():
        out.append(f"{app} access log: {log['visit_lines']} lines for GET / against "
                   f"{log['visits_completed']} visits wrk completed; "
                   f"{log['healthcheck_lines']} lines for /healthcheck")
    # What each server's static answer keeps of the app's contract (the fast path's choice).
    out += ['', '/logo.png caching, every server', *(line.rstrip() for line in table(
        ('server', 'Cache-Control', 'Expires', 'Last-Modified', 'If-Modified-Since'),
        (15, 24, 9, 15, 17),
        [(name, h['cache_control'] or '-', 'present' if h['expires'] else '-',
          'present' if h['last_modified'] else 'MISSING', h['conditional_status'] or '-')
         for name, h in results['logo_headers'].items()], left=5))]
    for app, checks in results['targets'].items():
        out += ['', f'Targets, {app}:']
        out += [f"  {({True: 'PASS', False: 'FAIL'}).get(c['ok'], 'n/a'):<4}  {c['what']}: "
                f"{c['measured']}" for c in checks]
    busy = [f"{c['server']} {c['path']} round {c['round']}: {c['others_pct']:.0f}%"
            for c in results['busy_cells']]
    if busy:
        out += ['', f'WARNING: other processes (or the hypervisor) took over {BUSY_WARN:.0%} of '
                f'a core in {len(busy)} of the cells; compare figures within this run only: '
                + '; '.join(busy[:8]) + (' ...' if len(busy) > 8 else '')]
    return '\n'.join(out)
