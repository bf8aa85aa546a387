"""Run CherryPy's own test suite on cheroot and on the project's stack; compare per module.

usage: python tests/cherrypy_suite.py [--json FILE] [MODULE ...]
  Runs the MODULES of `cherrypy.test` (or those named) twice, each in a pytest process of
  its own with tests/cherrypy_stack.py as a plugin: first with CherryPy's own server
  (cheroot), then through the project's stack (serving.startup.configure + Guard + granian's WSGI
  worker). Prints passed/failed/skipped per module for both, then every test that passes on
  cheroot and not on the stack, marked as docs/cherrypy.md lists it: `deliberate` (the
  project's choice), `granian` (decided by granian, pinned by a test), or `NEW`. Exits 1 when
  a new one appears or a listed one passes again (the list must shrink with the fix), 0
  otherwise.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import cherrypy

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(ROOT, 'docs', 'cherrypy.md')

# The modules of CherryPy 18.10.0's suite that test HTTP through a server CherryPy's tree is
# mounted on. Left out: test_native (cheroot's native gateway), test_states and
# test_config_server (they start, restart and reconfigure cheroot itself), test_wsgi_unix_socket
# (cheroot on a Unix socket), test_routes (the Routes package), test_bus, test_httputil and
# test_plugins (no server at all).
MODULES = (
    'test_auth_basic', 'test_auth_digest', 'test_caching', 'test_config', 'test_conn',
    'test_core', 'test_dynamicobjectmapping', 'test_encoding', 'test_etags', 'test_http',
    'test_iterator', 'test_json', 'test_logging', 'test_mime', 'test_misc_tools',
    'test_objectmapping', 'test_params', 'test_proxy', 'test_refleaks', 'test_request_obj',
    'test_session', 'test_sessionauthenticate', 'test_static', 'test_tools', 'test_tutorials',
    'test_virtualhost', 'test_wsgi_ns', 'test_wsgi_vhost', 'test_wsgiapps', 'test_xmlrpc',
)
SERVERS = ('cheroot', 'stack')
# A whole run of one server; a hung test fails the run instead of holding CI.
RUN_TIMEOUT = 600
# One test; the slowest on cheroot (test_conn's timeouts) take about 5 s.
TEST_TIMEOUT = 20
# A difference listed in docs/cherrypy.md: a table row starting with `module::[Class::]test`,
# under the heading of its kind.
_LISTED = re.compile(r'^\|\s*`(test_\w+(?:::\w+){1,2})`', re.MULTILINE)
KINDS = {'deliberate': '## Deliberate differences', 'granian': '## Decided by granian'}


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def listed():
    """Return {test: its kind (a key of KINDS)}, as docs/cherrypy.md's lists name them."""
    with open(DOC, encoding='utf-8') as doc:
        text = doc.read()
    found = {}
    for kind, heading in KINDS.items():
        section = text.split(heading, 1)[1].split('\n## ', 1)[0]
        found.update(dict.fromkeys(_LISTED.findall(section), kind))
    return found


def run(server, modules, folder):
    """Run `modules` with `server` in a pytest process; return {test id: outcome}."""
    report = os.path.join(folder, f'{server}.xml')
    env = {**os.environ, 'CHERRYPY_SERVER': server, 'CHERRYPY_PORT': str(free_port()),
           'WEBTEST_INTERACTIVE': '0', 'PYTHONPATH': os.pathsep.join([HERE, ROOT])}
    env.pop('COVERAGE_PROCESS_START', None)
    # Rooted where the package is, so each test's id names its module; a test that hangs
    # fails after TEST_TIMEOUT s (pytest-timeout) and the run goes on.
    command = [sys.executable, '-m', 'pytest', '-p', 'cherrypy_stack', '-p', 'no:cacheprovider',
               '-c', os.devnull, '--rootdir', os.path.dirname(os.path.dirname(cherrypy.__file__)),
               '-q', '--tb=no', '-o', 'junit_family=xunit2', f'--timeout={TEST_TIMEOUT}',
               f'--junitxml={report}', '--pyargs',
               *(f'cherrypy.test.{module}' for module in modules)]
    subprocess.run(command, env=env, cwd=folder, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=RUN_TIMEOUT, check=False)
    return outcomes(report)


def outcomes(report):
    """Read a junit XML report into {module::Class::test: passed|failed|skipped}."""
    found = {}
    for case in ET.parse(report).getroot().iter('testcase'):  # noqa: S314  (our own file)
        # cherrypy.test.MODULE.CLASS, or cherrypy.test.MODULE for a test function.
        where = case.get('classname', '').split('.')[2:]
        name = '::'.join([*where, case.get('name')])
        if case.find('skipped') is not None:
            found[name] = 'skipped'
        elif case.find('failure') is not None or case.find('error') is not None:
            found[name] = 'failed'
        else:
            found[name] = 'passed'
    return found


def counts(results, module):
    """Return (passed, failed, skipped) of `module` in `results`."""
    mine = [outcome for name, outcome in results.items() if name.startswith(module + '::')]
    return tuple(mine.count(outcome) for outcome in ('passed', 'failed', 'skipped'))


def compare(results, modules, known):
    """Print the table and the differences; return (new differences, listed ones that pass)."""
    print(f'{"module":28} {"cheroot p/f/s":>15} {"stack p/f/s":>15}')
    totals = {server: [0, 0, 0] for server in SERVERS}
    for module in modules:
        row = []
        for server in SERVERS:
            numbers = counts(results[server], module)
            totals[server] = [a + b for a, b in zip(totals[server], numbers, strict=True)]
            row.append('{}/{}/{}'.format(*numbers))
        print(f'{module:28} {row[0]:>15} {row[1]:>15}')
    print(f'{"total":28} {"{}/{}/{}".format(*totals["cheroot"]):>15} '
          f'{"{}/{}/{}".format(*totals["stack"]):>15}')
    lost = sorted(name for name, outcome in results['cheroot'].items()
                  if outcome == 'passed' and results['stack'].get(name) != 'passed')
    new = [name for name in lost if name not in known]
    mended = sorted(name for name in known if results['stack'].get(name) == 'passed')
    kinds = [known.get(name, 'NEW') for name in lost]
    print(f'\npass on cheroot, not on the stack: {len(lost)} ({kinds.count("deliberate")} '
          f'deliberate, {kinds.count("granian")} granian, {len(new)} new)')
    for name, kind in zip(lost, kinds, strict=True):
        print(f'  {kind:10}  {name}')
    for name in mended:
        print(f'  passes now, still listed in docs/cherrypy.md: {name}')
    return new, mended


def main(argv=None):
    """Run both servers, print the comparison; exit 1 if a difference is not listed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('modules', nargs='*', default=MODULES)
    parser.add_argument('--json', help='write both runs\' outcomes to this file')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        results = {server: run(server, args.modules, folder) for server in SERVERS}
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as out:
            json.dump(results, out, indent=1, sort_keys=True)
    new, mended = compare(results, args.modules, listed())
    return 1 if new or mended else 0


if __name__ == '__main__':
    sys.exit(main())
