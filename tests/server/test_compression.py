"""Text answers go gzipped to clients that accept it, nothing else changing (compression.py)."""
import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import request
from serving import compression

GZIP = {'Accept-Encoding': 'gzip, deflate, br'}


def test_the_page_goes_gzipped_to_a_client_that_accepts_it(app_port):
    """Same bytes once unzipped, the length of what is sent, and Vary for caches."""
    _, plain_headers, plain = request(app_port, 'GET', '/')
    status, headers, body = request(app_port, 'GET', '/', headers=GZIP)
    assert status == 200
    assert headers['Content-Encoding'] == 'gzip'
    assert int(headers['Content-Length']) == len(body) < len(plain)
    assert gzip.decompress(body) == plain
    assert headers['Vary'] == plain_headers['Vary'] == 'Accept-Encoding'
    assert 'Content-Encoding' not in plain_headers


@pytest.mark.parametrize('accept, gzipped', [
    ('gzip', True), ('GZIP', True), ('x-gzip', True), ('*', True), ('br;q=1, gzip;q=0.5', True),
    ('gzip;q=0', False), ('identity', False), ('br', False), ('*;q=0', False),
    ('gzip;q=0, *', False), ('gzip;q=1.2.3', False), (',,;;==', False), ('', False),
])
def test_only_a_client_that_accepts_gzip_gets_it(app_port, accept, gzipped):
    """Accept-Encoding read with its q-values (RFC 9110 §12.5.3); garbage is no gzip."""
    _, headers, body = request(app_port, 'GET', '/static/site.css',
                               headers={'Accept-Encoding': accept})
    assert (headers.get('Content-Encoding') == 'gzip') is gzipped
    assert headers['Vary'] == 'Accept-Encoding'
    assert (body[:2] == b'\x1f\x8b') is gzipped


@pytest.mark.parametrize('path', ['/logo.png', '/favicon.ico'])
def test_images_are_never_gzipped_and_do_not_vary(app_port, path):
    """Already compressed formats go as they are."""
    _, headers, _ = request(app_port, 'GET', path, headers=GZIP)
    assert 'Content-Encoding' not in headers
    assert 'Vary' not in headers


def test_a_short_answer_goes_as_it_is(app_port):
    """Under MIN_SIZE bytes, gzip would add more than it saves."""
    _, headers, body = request(app_port, 'GET', '/healthcheck', headers=GZIP)
    assert len(body) < compression.MIN_SIZE
    assert 'Content-Encoding' not in headers


def test_head_sends_the_plain_length_and_no_body(app_port):
    """HEAD has no body to gzip: it names the plain answer's length, and Vary."""
    _, plain_headers, plain = request(app_port, 'GET', '/static/site.css')
    status, headers, body = request(app_port, 'HEAD', '/static/site.css', headers=GZIP)
    assert (status, body) == (200, b'')
    assert int(headers['Content-Length']) == len(plain)
    assert 'Content-Encoding' not in headers
    assert headers['Vary'] == 'Accept-Encoding'


def test_a_range_is_of_the_plain_bytes_and_the_gzipped_answer_offers_none(app_port):
    """206 parts are never gzipped; a gzipped whole drops Accept-Ranges (no resuming it)."""
    _, _, plain = request(app_port, 'GET', '/static/site.css')
    status, headers, body = request(app_port, 'GET', '/static/site.css',
                                    headers={**GZIP, 'Range': 'bytes=0-9'})
    assert (status, body) == (206, plain[:10])
    assert 'Content-Encoding' not in headers
    _, headers, _ = request(app_port, 'GET', '/static/site.css', headers=GZIP)
    assert 'Accept-Ranges' not in headers


def test_a_304_carries_the_vary_of_its_200(app_port):
    """RFC 9110 §15.4.5: a 304 sends the Vary the full answer would."""
    _, headers, _ = request(app_port, 'GET', '/static/site.css', headers=GZIP)
    status, not_modified, _ = request(app_port, 'GET', '/static/site.css', headers={
        **GZIP, 'If-Modified-Since': headers['Last-Modified']})
    assert status == 304
    assert not_modified['Vary'] == 'Accept-Encoding'
    _, logo, _ = request(app_port, 'GET', '/logo.png')
    status, not_modified, _ = request(app_port, 'GET', '/logo.png', headers={
        **GZIP, 'If-Modified-Since': logo['Last-Modified']})
    assert status == 304
    assert 'Vary' not in not_modified


def compress(headers, body=b'x' * 1000, status='200 OK', method='GET'):
    """Call compression.compressed for a GET that accepts gzip."""
    environ = {'REQUEST_METHOD': method, 'HTTP_ACCEPT_ENCODING': 'gzip'}
    return compression.compressed(environ, status, headers, body)


def test_an_etag_turns_weak_and_a_vary_is_extended_not_repeated():
    """The gzipped bytes are not those a strong ETag names; a Vary keeps what it had."""
    headers, body = compress([('Content-Type', 'application/json'), ('ETag', '"abc"'),
                              ('Vary', 'Cookie'), ('Content-Length', '1000')])
    assert dict(headers) == {'Content-Type': 'application/json', 'ETag': 'W/"abc"',
                             'Vary': 'Cookie, Accept-Encoding', 'Content-Length': str(len(body)),
                             'Content-Encoding': 'gzip'}
    headers, _ = compress([('Content-Type', 'image/svg+xml'), ('ETag', 'W/"abc"'),
                           ('Vary', 'accept-encoding')])
    assert ('ETag', 'W/"abc"') in headers
    assert [value for name, value in headers if name == 'Vary'] == ['accept-encoding']


def test_an_answer_already_encoded_or_not_whole_is_left_as_it_is():
    """A handler's own Content-Encoding, a 404 or 206, binary types: untouched."""
    own = [('Content-Type', 'text/plain'), ('Content-Encoding', 'br')]
    assert compress(own) == (own, b'x' * 1000)
    binary = [('Content-Type', 'application/octet-stream')]
    assert compress(binary) == (binary, b'x' * 1000)
    for status in ('404 Not Found', '206 Partial Content'):
        headers, body = compress([('Content-Type', 'text/html')], status=status)
        assert body == b'x' * 1000
        assert headers == [('Content-Type', 'text/html'), ('Vary', 'Accept-Encoding')]


@given(st.text(max_size=200) | st.lists(st.sampled_from(
    ['gzip', 'GZip', '*', 'br', 'identity', ';', ',', 'q=', '0', '1', '.', ' ', '=', 'x-gzip']),
    max_size=40).map(''.join))
@settings(max_examples=500, deadline=None, derandomize=True)
def test_any_accept_encoding_is_read_without_error(accept):
    """Whatever a client sends as Accept-Encoding, the answer is a yes or a no."""
    assert compression.accepts_gzip(accept) in (True, False)


def test_a_long_accept_encoding_is_read_to_its_end():
    """8 KiB of codings (what hyper's header buffer lets through): the last one counts too."""
    accept = ', '.join(['identity;q=0.5'] * 550)
    assert not compression.accepts_gzip(accept)
    assert compression.accepts_gzip(accept + ', gzip')


def test_the_same_small_answer_is_compressed_once_and_a_big_one_each_time():
    """Up to REMEMBERED bytes the gzipped bytes are remembered; bigger ones are not kept."""
    small = b'<p>the same page</p>' * 50
    hits = compression.gzipped.cache_info().hits
    first = compress([('Content-Type', 'text/html')], small)[1]
    again = compress([('Content-Type', 'text/html')], small)[1]
    assert first == again
    assert gzip.decompress(first) == small
    assert compression.gzipped.cache_info().hits == hits + 1
    big = bytes(range(256)) * (compression.REMEMBERED // 256 + 1)
    calls = compression.gzipped.cache_info()
    headers, body = compress([('Content-Type', 'text/plain'), ('Content-Length', str(len(big)))],
                             big)
    assert gzip.decompress(body) == big
    assert ('Content-Length', str(len(body))) in headers
    assert compression.gzipped.cache_info() == calls
