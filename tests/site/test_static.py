"""Static assets: the logo, the favicon and static/, cached well and never more than static/."""
import os
import struct

import pytest

from conftest import ROOT, request

STATIC = os.path.join(ROOT, 'static')


def read_static(name):
    """Return the bytes of static/NAME as shipped in the repository."""
    with open(os.path.join(STATIC, name), 'rb') as handle:
        return handle.read()


def test_logo_is_a_real_png():
    """static/logo.png is a PNG image of a sensible size, not a placeholder."""
    logo = read_static('logo.png')
    assert logo[:8] == b'\x89PNG\r\n\x1a\n'
    width, height = struct.unpack('>II', logo[16:24])
    assert 64 <= width <= 1024
    assert 64 <= height <= 1024


@pytest.mark.parametrize('path, name, content_type', [
    ('/logo.png', 'logo.png', 'image/png'),
    ('/favicon.ico', 'favicon.ico', None),
    ('/static/logo.png', 'logo.png', 'image/png'),
    ('/static/site.css', 'site.css', 'text/css'),
])
def test_static_files_are_served_with_validators_and_max_age(app_port, path, name, content_type):
    """Each asset is the file itself, with Last-Modified and a Cache-Control max-age."""
    status, headers, body = request(app_port, 'GET', path)
    assert status == 200
    assert body == read_static(name)
    if content_type:
        assert headers.get_content_type() == content_type
    assert headers['Last-Modified']
    assert 'max-age=' in headers['Cache-Control']


def test_favicon_is_ours_not_cherrypys(app_port):
    """/favicon.ico serves the project's icon, not CherryPy's default."""
    import cherrypy
    with open(os.path.join(os.path.dirname(cherrypy.__file__), 'favicon.ico'), 'rb') as handle:
        cherrypys = handle.read()
    _, _, body = request(app_port, 'GET', '/favicon.ico')
    assert body == read_static('favicon.ico') != cherrypys


@pytest.mark.parametrize('path', ['/logo.png', '/static/site.css'])
def test_unchanged_static_files_answer_304(app_port, path):
    """If-Modified-Since with the file's own Last-Modified gets 304 and no body."""
    _, headers, _ = request(app_port, 'GET', path)
    status, _, body = request(
        app_port, 'GET', path, {'If-Modified-Since': headers['Last-Modified']})
    assert (status, body) == (304, b'')


def test_unknown_path_is_404_without_traceback_or_version(app_port):
    """An unknown page is a plain 404 that leaks no traceback and no version."""
    status, _, body = request(app_port, 'GET', '/no/such/page')
    assert status == 404
    assert b'Traceback' not in body
    assert b'CherryPy' not in body


# Paths that try to escape static/; each must be refused, never answered with a file.
ESCAPES = [
    '/static/../landing.py',
    '/static/%2e%2e/landing.py',
    '/static/%2E%2E/%2E%2E/etc/passwd',
    '/static/..%2flanding.py',
    '/static/%2e%2e%2flanding.py',
    '/static/../../../../etc/passwd',
    '/static//etc/passwd',
    '/static/%2fetc%2fpasswd',
    '/static/site.css%00.png',
    '/static/%00',
    '/static/./../prod.conf',
    '/static/..\\landing.py',
    '/static/.%2e/prod.conf',
    '/../../etc/passwd',
]


@pytest.mark.parametrize('path', ESCAPES)
def test_nothing_outside_static_is_ever_served(app_port, path):
    """Traversal, encoded traversal, NUL and absolute paths never reach a file outside static/."""
    status, _, body = request(app_port, 'GET', path)
    assert status in (400, 403, 404), status
    for secret in (b'root:', b'import cherrypy', b'tools.staticdir'):
        assert secret not in body
