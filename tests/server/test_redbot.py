"""REDbot, an HTTP linter nobody here wrote, on the real server's answers (docs/http-lint.md).

Each route a user or a load balancer meets is linted by REDbot's own command line over
loopback (it sends its own follow-up requests: conditional, ranged, compressed). No note may
be BAD; a WARN passes only when docs/http-lint.md names it, with its reason, for that route.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

DOC = os.path.join(ROOT, 'docs', 'http-lint.md')
REDBOT = os.path.join(os.path.dirname(sys.executable), 'redbot')
# What a visitor, an ad link, a load balancer and a browser ask for; a 404 too.
ROUTES = ('/', '/?utm_source=ad&utm_medium=cpc', '/healthcheck', '/logo.png', '/favicon.ico',
          '/static/site.css', '/no-such-page')
# A row of the doc's table: | `NOTE_ID` | `route` | why |
_EXPLAINED = re.compile(r'^\|\s*`([A-Z0-9_]+)`\s*\|\s*`([^`]+)`\s*\|', re.MULTILINE)


def explained():
    """Return the {(note id, route)} docs/http-lint.md explains."""
    with open(DOC, encoding='utf-8') as doc:
        return set(_EXPLAINED.findall(doc.read()))


def lint(port, route):
    """Run REDbot on `route`; return its notes as [(level, note id, summary)]."""
    done = subprocess.run([REDBOT, '-o', 'har', f'http://127.0.0.1:{port}{route}'],
                          capture_output=True, text=True, timeout=120, check=True)
    entries = json.loads(done.stdout)['log']['entries']
    assert entries, done.stderr
    return [(note['level'], note['note_id'], note['summary'])
            for entry in entries for note in entry['_red_messages']]


@pytest.fixture(scope='module')
def verdicts(app_port):
    """REDbot's notes on every route, linted once."""
    return {route: lint(app_port, route) for route in ROUTES}


@pytest.mark.parametrize('route', ROUTES)
def test_redbot_finds_nothing_bad(verdicts, route):
    """No BAD note on any route."""
    assert [note for note in verdicts[route] if note[0] == 'BAD'] == []


@pytest.mark.parametrize('route', ROUTES)
def test_every_redbot_warning_is_explained_in_the_docs(verdicts, route):
    """A WARN note is allowed only where docs/http-lint.md gives its reason for the route."""
    reasons = explained()
    unexplained = [note for note in verdicts[route]
                   if note[0] == 'WARN' and (note[1], route) not in reasons]
    assert unexplained == []


def test_the_docs_explain_only_warnings_redbot_still_gives(verdicts):
    """A row for a warning REDbot no longer gives is stale: the list shrinks with each fix."""
    given = {(note[1], route) for route, notes in verdicts.items()
             for note in notes if note[0] == 'WARN'}
    assert explained() <= given


def test_redbot_checks_what_it_is_asked_to(verdicts):
    """The linter really ran: the page's length and the logo's validators were checked."""
    assert ('GOOD', 'CL_CORRECT') in {note[:2] for note in verdicts['/']}
    assert 'IMS_304' in {note[1] for note in verdicts['/logo.png']}
