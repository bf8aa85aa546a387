"""Request IDs: on every answer, kept from a trusted proxy only, in the logs (request_ids.py)."""
import json
import os
import re

import pytest

from conftest import ROOT, request, wait_until

APP = os.path.join(ROOT, 'tests', 'cherrypy_app.py')
RAISING = os.path.join(ROOT, 'tests', 'raising_landing.py')
MADE = re.compile('[0-9a-f]{32}')


def answer_id(port, method='GET', path='/', headers=None):
    """Return (status, the X-Request-ID of the answer)."""
    status, answer, _ = request(port, method, path, headers=headers)
    return status, answer['X-Request-ID']


@pytest.mark.parametrize('method, path, status', [
    ('GET', '/', 200), ('GET', '/healthcheck', 200), ('GET', '/logo.png', 200),
    ('GET', '/no-such-page', 404), ('POST', '/', 405), ('GET', '/' + 'a' * 9000, 414),
])
def test_every_answer_names_a_new_id(app_port, method, path, status):
    """Pages, files, errors and refusals alike; never the same twice."""
    first = answer_id(app_port, method, path)
    second = answer_id(app_port, method, path)
    assert first[0] == second[0] == status
    assert MADE.fullmatch(first[1])
    assert MADE.fullmatch(second[1])
    assert first[1] != second[1]


def test_a_clients_own_id_is_replaced(app_port):
    """From a peer not in TRUSTED_PROXIES, X-Request-ID is a client's word: a new one is made."""
    status, given = answer_id(app_port, headers={'X-Request-ID': 'forged-id-123'})
    assert status == 200
    assert given != 'forged-id-123'
    assert MADE.fullmatch(given)


@pytest.mark.parametrize('sent, kept', [
    ('Root=1-67891233-abcdef012345678912345678', True),
    ('f81d4fae-7dec-11d0-a765-00a0c91e6bf6', True),
    ('a' * 128, True), ('a' * 129, False), ('two words', False), ('quote"d', False),
    ('', False),
])
def test_a_trusted_proxys_plain_id_is_kept_and_the_app_sees_it(start_server, sent, kept):
    """From a trusted peer a short, plain ID is kept; the handler reads the same one."""
    served = start_server(env={'TRUSTED_PROXIES': '127.0.0.1/32'}, script=APP).wait_ready()
    status, answer, body = request(served.port, 'GET', '/extras/request_id',
                                   headers={'X-Request-ID': sent})
    assert status == 200
    given = answer['X-Request-ID']
    assert (given == sent) is kept
    assert kept or MADE.fullmatch(given)
    # Replaced in its header too: the app never reads the one the client sent.
    assert body.decode() == repr((given, given))


def test_the_app_finds_the_id_of_a_request_that_came_without_one(app_port, start_server):
    """In its environ, always; no header is made up for it."""
    served = start_server(script=APP).wait_ready()
    status, answer, body = request(served.port, 'GET', '/extras/request_id')
    assert status == 200
    assert body.decode() == repr((answer['X-Request-ID'], None))


def test_the_json_access_line_names_the_answers_id(start_server):
    """LOG_FORMAT=json: each line's request_id is the one its answer carried."""
    served = start_server(env={'LOG_FORMAT': 'json'}).wait_ready()
    ids = [answer_id(served.port, path=path)[1] for path in ('/', '/no-such-page')]
    assert served.stop() == 0
    logged = [json.loads(line)['request_id'] for line in served.stdout().splitlines()]
    assert logged == ids


def test_an_error_line_names_the_request_it_came_from(start_server):
    """A handler that raises: its traceback's line on stderr carries the answer's ID."""
    served = start_server(script=RAISING).wait_ready()
    status, given = answer_id(served.port, path='/raising?what=error')
    assert status == 500
    wait_until(lambda: f'request_id={given}' in served.stderr(), deadline=10,
               what='the error line with the request ID')
    lines = served.stderr().splitlines()
    tagged = [at for at, line in enumerate(lines) if line.endswith(f' request_id={given}')]
    # The error's first line names it; CherryPy's traceback follows as it writes it.
    assert lines[tagged[0] + 1] == 'Traceback (most recent call last):'
