"""serving.redirects on its own: which Locations go out relative, and which stay as they are."""
import pytest

from serving.redirects import host_name, parse_hosts, relative_location

ENVIRON = {'HTTP_HOST': 'evil.example', 'SERVER_NAME': '0.0.0.0', 'wsgi.url_scheme': 'https'}


@pytest.mark.parametrize('location, sent', [
    ('https://evil.example/next', '/next'),
    ('https://EVIL.example/a/b?x=1&y=2#top', '/a/b?x=1&y=2#top'),
    ('https://evil.example', '/'),
    ('https://evil.example?x=1', '/?x=1'),
    # A path that a browser would read as another host stays on this one.
    ('https://evil.example//other.example/x', '/other.example/x'),
    ('https://evil.example/\\other.example/x', '/other.example/x'),
    ('https://evil.example/\t/other.example/x', '/other.example/x'),
    # Another origin: the app named it, so it stays.
    ('https://other.example/next', 'https://other.example/next'),
    ('http://evil.example/next', 'http://evil.example/next'),
    ('https://evil.example:8443/next', 'https://evil.example:8443/next'),
    ('/already/relative', '/already/relative'),
    ('https://[::1/broken', 'https://[::1/broken'),
])
def test_a_location_on_the_requests_origin_goes_out_relative(location, sent):
    """Same scheme and Host as the request: path, query and fragment only."""
    headers = [('Content-Type', 'text/html'), ('Location', location), ('X-Other', 'y')]
    assert relative_location(headers, ENVIRON) == [
        ('Content-Type', 'text/html'), ('Location', sent), ('X-Other', 'y')]


def test_without_a_host_header_the_server_name_is_the_origin():
    """HTTP/1.0 with no Host: CherryPy's base is the server's name, which is matched instead."""
    environ = {'SERVER_NAME': 'site.example', 'wsgi.url_scheme': 'http'}
    assert relative_location([('location', 'http://site.example/x')], environ) == [
        ('location', '/x')]


def test_headers_without_a_location_are_returned_as_they_are():
    """No Location: the same list."""
    headers = [('Content-Type', 'text/html')]
    assert relative_location(headers, ENVIRON) is headers


def test_allowed_hosts_are_names_or_addresses_without_port_scheme_or_path():
    """'WWW.example.com., example.com [::1]' is three names; anything more is refused."""
    assert parse_hosts('WWW.example.com., example.com [::1] 10.0.0.1 example.com') == (
        'www.example.com', 'example.com', '[::1]', '10.0.0.1')
    assert parse_hosts('') == ()
    for bad in ('example.com:443', 'https://example.com', 'example.com/x', '*.example.com',
                '-example.com', 'exa_mple.com'):
        with pytest.raises(ValueError, match='is not a host name'):
            parse_hosts(bad)


@pytest.mark.parametrize('environ, name', [
    ({'HTTP_HOST': 'WWW.Example.com:8080'}, 'www.example.com'),
    ({'HTTP_HOST': 'example.com.'}, 'example.com'),
    ({'HTTP_HOST': '[::1]:8080'}, '[::1]'),
    ({'SERVER_NAME': 'site.example'}, 'site.example'),
    ({}, ''),
])
def test_the_host_a_request_names_is_compared_without_its_port(environ, name):
    """The Host header (or, without one, the server's name), lower case, without the port."""
    assert host_name(environ) == name
