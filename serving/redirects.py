"""Redirects: for a Host not in ALLOWED_HOSTS, a Location on the request's origin goes relative.

CherryPy makes every redirect absolute from the request's Host header (HTTPRedirect joins the
target to cherrypy.url()), so `Host: evil.example` would send `Location: http://evil.example/…`,
which a shared cache can keep and give to everyone. RFC 9110 §10.2.2 lets Location be relative:
the browser resolves it against the URL it asked for, its scheme (https behind a balancer that
ends TLS) and host included. A Location to another origin (a site the app names itself) is
left as it is, and a request for an allowed Host keeps CherryPy's absolute Location.
"""
import re
from urllib.parse import urlsplit
from wsgiref.types import WSGIEnvironment

Headers = list[tuple[str, str]]

# Leading characters a browser reads as a second slash (or drops: tab and newlines anywhere),
# which would turn "/" + path into a protocol-relative "//other.example/".
_SLASHES = '/\\\t\r\n'


# An ALLOWED_HOSTS entry: a DNS name or an IPv4 address, or a bracketed IPv6 one; no port.
_HOST_NAME = re.compile(r'[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.?|\[[0-9A-Fa-f:.]+\]')


def parse_hosts(raw: str) -> tuple[str, ...]:
    """Return the host names in `raw` (comma- or space-separated), lower case, without a final dot.

    Raise ValueError naming the first that is not a host name (a port, a scheme, a path).
    """
    hosts: dict[str, None] = {}
    for entry in raw.replace(',', ' ').split():
        if not _HOST_NAME.fullmatch(entry):
            raise ValueError(f'{entry!r} is not a host name (no scheme, port or path)')
        hosts[entry.lower().rstrip('.')] = None
    return tuple(hosts)


def host_name(environ: WSGIEnvironment) -> str:
    """Return the request's Host without its port, lower case, without a final dot."""
    host: str = environ.get('HTTP_HOST') or environ.get('SERVER_NAME', '')
    host = host.partition(']')[0] + ']' if host[:1] == '[' else host.partition(':')[0]
    return host.lower().rstrip('.')


def relative_location(headers: Headers, environ: WSGIEnvironment) -> Headers:
    """Return `headers` with a Location on this request's scheme and host made relative."""
    for index, (name, value) in enumerate(headers):
        if name.lower() != 'location':
            continue
        try:
            target = urlsplit(value)
        except ValueError:  # a broken IPv6 literal: not this origin
            return headers
        host = environ.get('HTTP_HOST') or environ.get('SERVER_NAME', '')
        if not target.netloc or target.netloc.lower() != host.lower() \
                or target.scheme.lower() != environ.get('wsgi.url_scheme', 'http'):
            return headers
        relative = '/' + target.path.lstrip(_SLASHES)
        if target.query:
            relative += '?' + target.query
        if target.fragment:
            relative += '#' + target.fragment
        return [*headers[:index], (name, relative), *headers[index + 1:]]
    return headers
