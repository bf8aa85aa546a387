"""TRUSTED_PROXIES and ALLOWED_HOSTS against a real server: who the client is, where redirects go.

The tests' requests come from 127.0.0.1: a server trusting 127.0.0.1/32 sees them as a load
balancer's, one trusting nobody (the default) or other addresses as a client's own.
"""
import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, free_port, request, wait_until

PROXY_APP = os.path.join(ROOT, 'tests', 'proxy_landing.py')
FORGED = {'X-Forwarded-For': '203.0.113.66', 'X-Forwarded-Proto': 'https',
          'Forwarded': 'for=203.0.113.77;proto=https'}
# Values a trusted proxy may pass on from a client, or mangle: never a 5xx, never a leak.
GARBAGE = [
    {'X-Forwarded-For': '<script>alert(1)</script>'},
    {'X-Forwarded-For': ', , ,'},
    {'X-Forwarded-For': '999.1.1.1'},
    {'X-Forwarded-For': '1.2.3.4:99999'},
    {'X-Forwarded-For': '[2001:db8::1'},
    {'X-Forwarded-For': '::1]:80'},
    {'X-Forwarded-For': '1.2.3.4%00'},
    {'X-Forwarded-For': 'x' * 8000},
    {'X-Forwarded-For': ',' * 8000},
    {'X-Forwarded-For': '10.0.0.1, ' * 500},
    {'X-Forwarded-Proto': 'https, javascript'},
    {'X-Forwarded-Proto': 'gopher'},
]
FORWARDED_GARBAGE = [
    {'Forwarded': 'for'}, {'Forwarded': 'for='}, {'Forwarded': 'for="'},
    {'Forwarded': 'for="\\"' * 2000}, {'Forwarded': ';for=;' * 2000},
    {'Forwarded': 'for=_hidden;proto=gopher'}, {'Forwarded': 'for=unknown'},
    {'Forwarded': 'for="[2001:db8::1]:bad"'}, {'Forwarded': 'for=[2001:db8::1]:80x'},
    {'Forwarded': 'proto=ftp;proto=https'}, {'Forwarded': '=' * 8000},
]


def requests_counted(metrics_port, **labels):
    """Return landing_http_requests_total summed over the samples whose labels include `labels`."""
    with urllib.request.urlopen(f'http://127.0.0.1:{metrics_port}/metrics', timeout=5) as answer:
        text = answer.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == 'landing_http_requests_total'
               and labels.items() <= sample.labels.items())


def whoami(port, headers=None):
    """Return what the app takes the client to be (tests/proxy_landing.py's /whoami)."""
    status, _, body = request(port, 'GET', '/whoami', headers)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture
def serve(start_server):
    """Start tests/proxy_landing.py with `env`, ready."""
    def start(**env):
        return start_server(env=env, script=PROXY_APP).wait_ready()
    return start


def access_lines(served, count):
    """Stop the server; return its stdout's access-log lines, after checking there are `count`."""
    assert served.stop() == 0
    lines = served.stdout().splitlines()
    assert len(lines) == count, lines
    return lines


@pytest.mark.parametrize('env', [
    {}, {'TRUSTED_PROXIES': '10.0.0.0/8, ::1'},
    {'TRUSTED_PROXIES': '10.0.0.0/8', 'FORWARDED_HEADER': 'forwarded'}],
                         ids=['nobody trusted', 'others trusted', 'others trusted, Forwarded'])
def test_forged_headers_from_an_untrusted_peer_change_nothing(serve, env):
    """A client not in TRUSTED_PROXIES: its X-Forwarded-*/Forwarded are ignored everywhere."""
    served = serve(LOG_FORMAT='json', **env)
    seen = whoami(served.port, FORGED)
    assert seen['ip'] == '127.0.0.1'
    assert seen['port'] == -1  # granian passes no REMOTE_PORT
    assert seen['scheme'] == 'http'
    assert seen['base'] == f'http://127.0.0.1:{served.port}'
    assert seen['url'] == f'http://127.0.0.1:{served.port}/next'
    [line] = access_lines(served, 1)
    assert json.loads(line)['remote_addr'] == '127.0.0.1'


def test_a_trusted_peer_names_the_client_and_scheme_for_the_app_and_the_json_log(serve):
    """From a trusted proxy: X-Forwarded-For's client and X-Forwarded-Proto's scheme, one view."""
    served = serve(LOG_FORMAT='json', TRUSTED_PROXIES='127.0.0.1/32')
    seen = whoami(served.port, {'X-Forwarded-For': '203.0.113.9', 'X-Forwarded-Proto': 'https',
                                'Host': 'www.example.com'})
    assert seen == {'ip': '203.0.113.9', 'port': -1, 'scheme': 'https',
                    'base': 'https://www.example.com', 'url': 'https://www.example.com/next'}
    [line] = access_lines(served, 1)
    assert json.loads(line)['remote_addr'] == '203.0.113.9'


def test_a_chain_through_two_trusted_proxies_resolves_to_the_client_in_the_combined_log(serve):
    """A client -> 10.1.2.3 (trusted) -> 127.0.0.1 (trusted): the client, not a forged entry."""
    served = serve(TRUSTED_PROXIES='127.0.0.1, 10.0.0.0/8')
    # The client forged 6.6.6.6; the outer proxy appended the client's address, the inner one
    # the outer proxy's.
    chain = {'X-Forwarded-For': '6.6.6.6, 198.51.100.7, 10.1.2.3', 'X-Forwarded-Proto': 'https'}
    seen = whoami(served.port, chain)
    assert (seen['ip'], seen['scheme']) == ('198.51.100.7', 'https')
    # Both hops trusted: the furthest is the client (a pod calling through the ingress).
    assert whoami(served.port, {'X-Forwarded-For': '10.9.9.9, 10.1.2.3'})['ip'] == '10.9.9.9'
    lines = access_lines(served, 2)
    assert [line.split(' ', 1)[0] for line in lines] == ['198.51.100.7', '10.9.9.9']
    assert re.fullmatch(r'198\.51\.100\.7 - - \[[^]]+\] "GET /whoami HTTP/1\.1" 200 \d+ "" ""',
                        lines[0])


def test_forwarded_is_read_instead_of_x_forwarded_for_when_chosen(serve):
    """FORWARDED_HEADER=forwarded: RFC 7239's for= and proto=; X-Forwarded-* are then ignored."""
    served = serve(TRUSTED_PROXIES='127.0.0.1/32, 10.0.0.0/8', FORWARDED_HEADER='forwarded',
                   LOG_FORMAT='json')
    seen = whoami(served.port, {
        'Forwarded': 'for=6.6.6.6, For="[2001:db8:cafe::17]:4711";proto=https;by=10.1.2.3, '
                     'for=10.1.2.3;proto=http',
        'X-Forwarded-For': '203.0.113.66', 'X-Forwarded-Proto': 'http'})
    assert (seen['ip'], seen['scheme']) == ('2001:db8:cafe::17', 'https')
    seen = whoami(served.port, {'X-Forwarded-For': '203.0.113.66', 'X-Forwarded-Proto': 'https'})
    assert (seen['ip'], seen['scheme']) == ('127.0.0.1', 'http')
    records = [json.loads(line) for line in access_lines(served, 2)]
    assert [r['remote_addr'] for r in records] == ['2001:db8:cafe::17', '127.0.0.1']


def test_forwarded_is_ignored_when_x_forwarded_for_is_the_header(serve):
    """By default Forwarded, which load balancers pass on as the client sent it, counts not."""
    served = serve(TRUSTED_PROXIES='127.0.0.1')
    seen = whoami(served.port, {'Forwarded': 'for=203.0.113.77;proto=https'})
    assert (seen['ip'], seen['scheme']) == ('127.0.0.1', 'http')


@pytest.mark.parametrize('header, cases', [('x-forwarded-for', GARBAGE),
                                           ('forwarded', FORWARDED_GARBAGE)])
def test_garbage_from_a_trusted_peer_never_fails_and_names_no_client(serve, header, cases):
    """Malformed forwarded headers from a trusted proxy: 200, the peer (or last trusted hop)."""
    served = serve(TRUSTED_PROXIES='127.0.0.1/32, 10.0.0.0/8', FORWARDED_HEADER=header)
    for headers in cases:
        seen = whoami(served.port, headers)
        assert seen['ip'] in ('127.0.0.1', '10.0.0.1'), headers
        assert seen['scheme'] == 'http', headers
        status, _, body = request(served.port, 'GET', '/', headers)
        assert status == 200, headers
    assert served.stderr().count('Traceback') == 0


def test_metrics_count_forwarded_requests_as_any_other(serve):
    """Forwarded headers, trusted or garbage, neither refuse nor fail a request in the metrics."""
    metrics_port = free_port()
    served = serve(TRUSTED_PROXIES='127.0.0.1/32', METRICS_PORT=str(metrics_port))
    wait_until(lambda: requests_counted(metrics_port) is not None, what='metrics answering')
    sent = [{}, {'X-Forwarded-For': '203.0.113.9', 'X-Forwarded-Proto': 'https'},
            *GARBAGE[:4]]
    for headers in sent:
        assert request(served.port, 'GET', '/', headers)[0] == 200
    # Workers publish their counts every 0.25 s.
    wait_until(lambda: requests_counted(metrics_port, route='Landing.index') >= len(sent),
               deadline=10, what='the visits counted')
    assert requests_counted(metrics_port, route='Landing.index', status='2xx') == len(sent)
    assert requests_counted(metrics_port, route='refused') == 0
    assert requests_counted(metrics_port, status='5xx') == 0


def start_up(**env):
    """Run `python landing.py` with `env` added until it exits (a bad value: at once)."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, 'landing.py')],
        env=dict(os.environ, METRICS_PORT='0', PORT=str(free_port()), **env),
        capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize('value, says', [
    ('10.0.0.1/8', '10.0.0.1/8 has host bits set'),
    ('*', "'*' does not appear to be an IPv4 or IPv6 network"),
    ('10.0.0.0/8;192.168.0.0/16', "'10.0.0.0/8;192.168.0.0/16' does not appear"),
])
def test_a_bad_trusted_proxies_value_stops_start_up_with_one_line(value, says):
    """TRUSTED_PROXIES not addresses and ranges: exit 1, one line naming it and the entry."""
    done = start_up(TRUSTED_PROXIES=value)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith('landing: TRUSTED_PROXIES must be addresses and CIDR ranges')
    assert says in line


def location(port, target, headers):
    """Return the status and Location of GET `target` (tests/proxy_landing.py's /go)."""
    status, answer, _ = request(port, 'GET', target, headers)
    return status, answer['Location']


def test_a_redirect_never_names_a_host_that_is_not_allowed(serve):
    """ALLOWED_HOSTS set: for any other Host, CherryPy's absolute Location goes out relative."""
    served = serve(TRUSTED_PROXIES='127.0.0.1/32', ALLOWED_HOSTS='www.example.com, example.com')
    evil = {'Host': 'evil.example'}
    assert location(served.port, '/go', evil) == (303, '/next')
    assert location(served.port, '/go?to=a/b%3Fx%3D1&status=301', evil) == (301, '/a/b?x=1')
    behind_tls = {**evil, 'X-Forwarded-For': '203.0.113.9', 'X-Forwarded-Proto': 'https'}
    assert location(served.port, '/go', behind_tls) == (303, '/next')
    # Another site the app names itself stays absolute.
    assert location(served.port, '/go?to=https://other.example/x', evil) == (
        303, 'https://other.example/x')


def test_a_redirect_for_an_allowed_host_is_absolute_and_https_when_the_proxy_says_so(serve):
    """An allowed Host (any case, any port) keeps CherryPy's absolute Location, on its scheme."""
    served = serve(TRUSTED_PROXIES='127.0.0.1/32', ALLOWED_HOSTS='www.example.com')
    assert location(served.port, '/go', {'Host': 'WWW.example.com:8080'}) == (
        303, 'http://WWW.example.com:8080/next')
    behind_tls = {'Host': 'www.example.com', 'X-Forwarded-For': '203.0.113.9',
                  'X-Forwarded-Proto': 'https'}
    assert location(served.port, '/go', behind_tls) == (303, 'https://www.example.com/next')
    # From an untrusted peer the scheme stays the connection's own.
    untrusted = serve(ALLOWED_HOSTS='www.example.com')
    assert location(untrusted.port, '/go', behind_tls) == (303, 'http://www.example.com/next')


def test_without_allowed_hosts_every_redirect_on_the_site_is_relative(serve):
    """ALLOWED_HOSTS unset (the default): no Host is known to be the site's, so none is named.

    The same for a TLS-ending balancer's request: no `http://` downgrade either.
    """
    served = serve()
    assert location(served.port, '/go', {'Host': 'evil.example'}) == (303, '/next')
    assert location(served.port, '/go', {'Host': '127.0.0.1'}) == (303, '/next')
    assert location(served.port, '/go?to=https://other.example/x', {'Host': 'evil.example'}) \
        == (303, 'https://other.example/x')


@pytest.mark.parametrize('value, says', [
    ('example.com:443', "'example.com:443' is not a host name"),
    ('https://example.com', "'https://example.com' is not a host name"),
])
def test_a_bad_allowed_hosts_value_stops_start_up_with_one_line(value, says):
    """ALLOWED_HOSTS with a port or a scheme: exit 1, one line naming it and the entry."""
    done = start_up(ALLOWED_HOSTS=value)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f'landing: ALLOWED_HOSTS must be host names separated by commas: {says} '
        '(no scheme, port or path)']
