"""TLS_CERT and TLS_KEY: HTTPS on the same port, HSTS, and the health probe following."""
import http.client
import os
import socket
import ssl
import subprocess
import sys

import pytest

import hostile_corpus as corpus
from conftest import ROOT, ServerProcess, wait_until
from rawhttp import get


@pytest.fixture(scope='module')
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1, made now: (cert, key) paths."""
    folder = tmp_path_factory.mktemp('tls')
    cert, key = folder / 'cert.pem', folder / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
                    '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
                    '-keyout', str(key), '-out', str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def client_context(cert, **options):
    """A client context that trusts `cert` alone."""
    context = ssl.create_default_context(cafile=cert)
    for name, value in options.items():
        setattr(context, name, value)
    return context


def https(port, cert, method='GET', path='/', headers=None):
    """One HTTPS request; return (status, headers, body)."""
    conn = http.client.HTTPSConnection('127.0.0.1', port, timeout=10,
                                       context=client_context(cert))
    try:
        conn.request(method, path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        conn.close()


@pytest.fixture(scope='module')
def secure(tmp_path_factory, certificate):
    """tests/cherrypy_app.py (landing with extras) served over TLS."""
    cert, key = certificate
    served = ServerProcess(tmp_path_factory.mktemp('secure'),
                           env={'TLS_CERT': cert, 'TLS_KEY': key},
                           script=os.path.join(ROOT, 'tests', 'cherrypy_app.py'))

    def ready():
        if served.proc.poll() is not None:
            raise AssertionError(f'server exited {served.proc.returncode}: {served.stderr()}')
        return https(served.port, cert, path='/healthcheck')[0] == 200
    try:
        wait_until(ready, what='TLS server ready')
        yield served
    finally:
        served.kill()


def test_the_page_is_served_over_https_with_hsts(secure, certificate):
    """The same page, with Strict-Transport-Security and the security headers."""
    status, headers, body = https(secure.port, certificate[0])
    assert status == 200
    assert b'<html' in body.lower()
    assert headers['Strict-Transport-Security'] == 'max-age=31536000'
    assert headers['X-Content-Type-Options'] == 'nosniff'


def test_the_app_sees_https_as_its_scheme(secure, certificate):
    """request.base names https: redirects and cherrypy.url() keep the scheme."""
    status, _, body = https(secure.port, certificate[0], path='/extras/base')
    assert (status, body) == (200, f'https://127.0.0.1:{secure.port}'.encode())


def test_errors_and_refusals_carry_hsts_too(secure, certificate):
    """A 404 and a refused request (over the body cap) say it as well."""
    status, headers, _ = https(secure.port, certificate[0], path='/no-such-page')
    assert (status, headers['Strict-Transport-Security']) == (404, 'max-age=31536000')
    status, headers, _ = https(secure.port, certificate[0], method='POST', path='/',
                               headers={'Content-Length': '99999999'})
    assert (status, headers['Strict-Transport-Security']) == (413, 'max-age=31536000')


def test_tls_1_2_is_accepted_and_http_1_1_is_what_alpn_offers(secure, certificate):
    """A balancer that re-encrypts with TLS 1.2 connects; ALPN names HTTP/1.1 or nothing."""
    context = client_context(certificate[0], maximum_version=ssl.TLSVersion.TLSv1_2)
    context.set_alpn_protocols(['h2', 'http/1.1'])
    with socket.create_connection(('127.0.0.1', secure.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname='localhost') as sock:
        assert sock.version() == 'TLSv1.2'
        assert sock.selected_alpn_protocol() in (None, 'http/1.1')
        sock.sendall(get('/healthcheck'))
        assert sock.recv(65536).startswith(b'HTTP/1.1 200')


def test_plain_http_on_the_https_port_gets_no_page(secure):
    """Plain HTTP to the TLS port is no request: no 200, no page."""
    with socket.create_connection(('127.0.0.1', secure.port), timeout=5) as sock:
        sock.sendall(get('/'))
        try:
            answer = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            answer = b''
    assert not answer.startswith(b'HTTP/1.1 200')
    assert b'<html' not in answer.lower()


def probe(port, env):
    """Run `python healthcheck.py` as Docker's HEALTHCHECK does; return its exit code."""
    environment = {name: value for name, value in os.environ.items() if name != 'TLS_CERT'}
    environment.update(PORT=str(port), **env)
    return subprocess.run([sys.executable, os.path.join(ROOT, 'healthcheck.py')],
                          env=environment, capture_output=True, timeout=30, check=False).returncode


def test_the_health_probe_follows_tls(secure, certificate):
    """With TLS_CERT set the probe asks over HTTPS; without it, plain HTTP fails there."""
    assert probe(secure.port, {'TLS_CERT': certificate[0]}) == 0
    assert probe(secure.port, {}) == 1


@pytest.mark.parametrize('env, says', [
    ({'TLS_CERT': 'CERT'}, 'TLS_CERT and TLS_KEY go together'),
    ({'TLS_KEY': 'KEY'}, 'TLS_CERT and TLS_KEY go together'),
    ({'TLS_CERT': 'CERT', 'TLS_KEY': '/no/such/key.pem'}, 'No such file'),
    ({'TLS_CERT': 'KEY', 'TLS_KEY': 'CERT'}, 'are not a certificate and its key'),
    ({'TLS_CERT': ' ', 'TLS_KEY': 'KEY'}, 'TLS_CERT must name a file'),
])
def test_a_tls_mistake_stops_start_up_with_one_line(start_server, certificate, env, says):
    """Half a pair, a missing file or swapped files: exit at once, naming the problem."""
    files = {'CERT': certificate[0], 'KEY': certificate[1]}
    env = {name: files.get(value, value) for name, value in env.items()}
    served = start_server(env=env)
    assert served.proc.wait(timeout=30) != 0
    lines = [line for line in served.stderr().splitlines() if line.startswith('landing:')]
    assert len(lines) == 1
    assert says in lines[0]


# The classes of the hostile corpus that are about what a request says, not how the
# connection behaves (slow clients, descriptors and memory are the TCP side's, the same
# under TLS): each runs again over TLS.
TLS_CLASSES = ('range', 'smuggling', 'headers', 'security', 'paths', 'query', 'cost',
               'tracebacks', 'bodies', 'static')


@pytest.fixture(scope='module')
def hostile_over_tls(tmp_path_factory, certificate):
    """One landing.py over TLS, and the corpus's connections made through TLS to it."""
    cert, key = certificate
    context = client_context(cert)

    def connect(port, timeout=5):
        raw = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        return context.wrap_socket(raw, server_hostname='localhost')

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus, 'connect', connect)
        process = corpus.AppProcess(ROOT, tmp_path_factory.mktemp('hostile-tls'),
                                    env={'TLS_CERT': cert, 'TLS_KEY': key})
        try:
            wait_until(process.healthy, what='hostile-corpus TLS server ready')
            yield process
        finally:
            process.stop()


@pytest.mark.parametrize('case', [
    pytest.param(case, id=case.name) for klass in TLS_CLASSES
    for case in corpus.cases(klass) if not case.slow])
def test_the_hostile_corpus_holds_over_tls(hostile_over_tls, case):
    """Each case's rule holds with TLS in between, as it does over plain TCP."""
    outcome = case.run(hostile_over_tls)
    assert outcome.passed, f'{case.id}\n    got: {outcome.detail}'
