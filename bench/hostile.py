"""Run the hostile corpus against one or more checkouts; print a class x server pass/fail table.

usage: python bench/hostile.py [--app DIR ...] [--python PATH] [--quick] [--klass CLASS ...]

Each DIR (default: this repository) is started as `python DIR/landing.py` on a free 127.0.0.1
port with THREADS=10, using DIR/.venv/bin/python when it exists (else this interpreter, or
--python for every app). Every case of tests/hostile_corpus.py runs against it, quick cases
first; --quick leaves out the slow scenarios. Then one table: a row per class, a column per app,
"passed/total" in each cell, and below it every failing case with what came back.
It is a report: it exits 0 whatever the servers do. Servers are stopped by their PIDs.
"""
import argparse
import os
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(REPO, 'tests'))

import hostile_corpus as corpus  # noqa: E402  (needs tests/ on sys.path)

DETAIL_WIDTH = 220  # characters of "what came back" shown per failing case


def parse_args(argv):
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--app', action='append', metavar='DIR',
                        help='a checkout holding landing.py (repeatable; default: this repo)')
    parser.add_argument('--python', help='interpreter for every app (default: DIR/.venv or this)')
    parser.add_argument('--quick', action='store_true', help='leave out the slow scenarios')
    parser.add_argument('--klass', action='append', metavar='CLASS',
                        help='only the cases of this class (repeatable): ' + ', '.join(
                            key for key, _ in corpus.CLASSES))
    return parser.parse_args(argv)


def labels_for(apps):
    """A short, unique column label per app folder (its name, numbered when names repeat)."""
    labels = []
    for app in apps:
        name = os.path.basename(os.path.normpath(app)) or app
        label = name
        for number in range(2, len(apps) + 2):  # at most one clash per earlier app
            if label not in labels:
                break
            label = f'{name}#{number}'
        labels.append(label)
    return labels


def interpreter(app, chosen):
    """The python that runs `app`: --python, else the app's own .venv, else this one."""
    own = os.path.join(app, '.venv', 'bin', 'python')
    return chosen or (own if os.path.exists(own) else sys.executable)


def run_app(app, python, selected, workdir):
    """Start `app`, run every selected case against it, stop it; return {case id: Outcome}."""
    if not os.path.exists(os.path.join(app, 'landing.py')):
        return {case.id: corpus.Outcome(False, f'no landing.py in {app}') for case in selected}
    server = corpus.AppProcess(app, workdir, python=python)
    results = {}
    try:
        server.wait_ready()
        for number, case in enumerate(selected, 1):
            started = time.monotonic()
            results[case.id] = case.run(server)
            took = time.monotonic() - started
            if case.slow or took > 2:
                print(f'  [{number}/{len(selected)}] {took:5.1f} s  {case.id}', file=sys.stderr)
    except RuntimeError as error:  # the server never came up
        results.update({case.id: corpus.Outcome(False, f'server did not start: {error}')
                        for case in selected if case.id not in results})
    finally:
        server.stop()
        corpus.stop_copies()
    return results


def table(labels, selected, results):
    """The class x app table, 'passed/total' per cell, and a total row."""
    width = max(len(label) for _, label in corpus.CLASSES) + 2
    columns = [max(len(label), 9) for label in labels]
    lines = ['class'.ljust(width) + ' | '.join(label.center(col)
                                                 for label, col in zip(labels, columns,
                                                                       strict=True))]
    lines.append('-' * len(lines[0]))
    rows = [(label, [case for case in selected if case.klass == key])
            for key, label in corpus.CLASSES]
    rows.append(('total', selected))
    for row_label, row_cases in rows:
        if not row_cases:
            continue
        cells = []
        for label, col in zip(labels, columns, strict=True):
            passed = sum(results[label][case.id].passed for case in row_cases)
            cells.append(f'{passed}/{len(row_cases)}'.center(col))
        lines.append(row_label.ljust(width) + ' | '.join(cells))
    return '\n'.join(lines)


def failures(labels, selected, results):
    """Every failing case per app, with a line of what came back."""
    lines = []
    for label in labels:
        failed = [case for case in selected if not results[label][case.id].passed]
        lines.append(f'\nFailures on {label}: {len(failed)} of {len(selected)}')
        for case in failed:
            detail = results[label][case.id].detail
            if len(detail) > DETAIL_WIDTH:
                detail = detail[:DETAIL_WIDTH] + '...'
            lines.append(f'  FAIL {case.id}\n       {detail}')
    return '\n'.join(lines)


def main(argv=None):
    """Run the corpus against each app and print the report; always return 0."""
    args = parse_args(argv)
    apps = [os.path.abspath(app) for app in (args.app or [REPO])]
    labels = labels_for(apps)
    selected = [case for case in corpus.cases(slow=False if args.quick else None)
                if not args.klass or case.klass in args.klass]
    corpus.raise_open_files()  # the servers inherit it: 2,000 held connections need it
    results = {}
    with tempfile.TemporaryDirectory(prefix='hostile-') as scratch:
        for index, (label, app) in enumerate(zip(labels, apps, strict=True)):
            python = interpreter(app, args.python)
            print(f'{label}: {len(selected)} cases against {app} ({python})', file=sys.stderr)
            workdir = os.path.join(scratch, str(index))
            os.makedirs(workdir)
            results[label] = run_app(app, python, selected, workdir)
    print(table(labels, selected, results))
    print(failures(labels, selected, results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
