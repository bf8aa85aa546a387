"""What the guard refuses or mends before CherryPy sees a request: Host, target, headers, ranges."""
import email.utils
import logging
import re
from wsgiref.types import WSGIEnvironment

import cherrypy
from cherrypy.lib import httputil

from serving.bodies import MAX_BODY

# Longest request target (path and query) the guard passes to CherryPy; longer gets 414.
# CherryPy's dispatch and config lookup cost grows with the path: 8,000 segments took 0.4 s.
MAX_TARGET = 4096


MAX_SEGMENTS = 64


# RFC 3986 host (reg-name, IPv4 or a bracketed IPv6) and an optional port.
_VALID_HOST = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+;=%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?")


# One byte range; a suffix of zero bytes (bytes=-0) is unsatisfiable, so it is ignored too.
_RANGE = re.compile(r'bytes=(?:[0-9]{1,18}-[0-9]{0,18}|-0*[1-9][0-9]{0,17})')


# The longest Host that can name a host: a DNS name (253) or an IPv6 literal, and a port.
MAX_HOST = 262


# Headers CherryPy splits into elements (httputil.header_elements) with regexes whose cost
# grows with the square of the value: 16 KB of `,"` cost a second of CPU. Content-Type is
# split on every request, GET included; Accept by the health check. Longer ones get 431.
ELEMENT_HEADERS = frozenset({
    'CONTENT_TYPE', 'HTTP_CONTENT_TYPE', 'HTTP_CONTENT_DISPOSITION', 'HTTP_TE',
    'HTTP_IF_MATCH', 'HTTP_IF_NONE_MATCH'})


MAX_ELEMENT_HEADER = 1024


# Python's cookie parser unquotes backslashes in quadratic time on Python < 3.11.10
# (CVE-2024-7592): 15,000 cost 0.47 s. No browser sends more than a few.
MAX_COOKIE_BACKSLASHES = 64


# CherryPy decodes RFC 2047 encoded words (=?charset?q?...?=) in every header value while it
# reads them, before the app's config applies; an undecodable one raised a 500. RFC 9110 has
# no use for them: a few are decoded as CherryPy does, more (or broken ones) get 400.
MAX_ENCODED_WORDS = 8


def _valid_date(value: str) -> bool:
    """Tell whether an HTTP date header holds a date (RFC 9110 §13.1.3: ignore one that doesn't)."""
    try:
        return email.utils.parsedate_to_datetime(value) is not None
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


def decodable(value: str) -> bool:
    """Tell whether CherryPy can read header `value` cheaply: few encoded words, all valid."""
    if '=?' not in value:
        return True
    if value.count('=?') > MAX_ENCODED_WORDS:
        return False
    try:
        httputil.decode_TEXT(value.strip())
    except Exception:  # noqa: BLE001  (unknown charsets, bad base64, mixed atoms: all of them)
        return False
    return True


# Header names already logged as arriving empty, once each per worker.
_blanked: set[str] = set()


def note_blanked(key: str) -> None:
    """Log, once per header name, that a header arrived empty (granian blanks non-ASCII ones).

    granian passes a header value with any byte outside ASCII as '' (its issue #335): one
    UTF-8 cookie empties the whole Cookie header. The value is gone before Python sees it;
    the log line at least names what was lost.
    """
    if key not in _blanked and len(_blanked) < 64:
        _blanked.add(key)
        name = key.removeprefix('HTTP_').replace('_', '-').title()
        # A client may send one empty as well (CherryPy's suite does): the line says both.
        cherrypy.log(f'a {name} header arrived empty: sent so, or granian blanked a value with '
                     'a byte outside ASCII (granian issue #335; docs/cherrypy.md)', 'GUARD',
                     severity=logging.WARNING)


def header_refusal(environ: WSGIEnvironment) -> tuple[str, str] | None:
    """Return (status, reason) for a header CherryPy would read slowly or fail on, else None."""
    for key, value in environ.items():
        if not key.startswith(('HTTP_', 'CONTENT_')):
            continue
        if not value:
            note_blanked(key)
            continue
        if (key in ELEMENT_HEADERS or key.startswith('HTTP_ACCEPT')) and \
                len(value) > MAX_ELEMENT_HEADER:
            return '431 Request Header Fields Too Large', key
        if key == 'HTTP_COOKIE' and value.count('\\') > MAX_COOKIE_BACKSLASHES:
            return '431 Request Header Fields Too Large', key
        if not decodable(value):
            return '400 Bad Request', key
    return None


def refusal(environ: WSGIEnvironment,
            max_body: int | None = MAX_BODY) -> tuple[str, str] | None:
    """Return (status, reason) for a request the app must not see, or None to pass it on."""
    host = environ.get('HTTP_HOST', '')
    # Two Host fields arrive joined by a comma, which the pattern refuses. HTTP/1.1 needs one.
    if (len(host) > MAX_HOST or not _VALID_HOST.fullmatch(host) if host
            else environ['SERVER_PROTOCOL'] != 'HTTP/1'):
        return '400 Bad Request', 'invalid Host'
    path = environ.get('PATH_INFO', '')
    target = len(path) + len(environ.get('QUERY_STRING', ''))
    if target > MAX_TARGET or path.count('/') > MAX_SEGMENTS:
        return '414 URI Too Long', 'request target'
    # A declared length over the cap is refused before anything reads it; a chunked body
    # over it gets 413 from CherryPy as it is read (request.body.maxbytes).
    length = environ.get('CONTENT_LENGTH', '')
    if max_body is not None and length.isdigit() and int(length) > max_body:
        return '413 Content Too Large', 'body'
    return header_refusal(environ)


def tidy(environ: WSGIEnvironment) -> None:
    """Mend what granian passes and CherryPy misreads, and drop validators that would amplify."""
    if environ['SERVER_PROTOCOL'] == 'HTTP/1':
        environ['SERVER_PROTOCOL'] = 'HTTP/1.0'  # granian's name for 1.0; CherryPy needs x.y
    # One range at most (RFC 9110 §14.2 lets a server ignore Range): CherryPy builds every
    # part of a multi-range answer in memory, and 5,000 ranges made a 63 MB answer.
    if 'HTTP_RANGE' in environ and not _RANGE.fullmatch(environ['HTTP_RANGE']):
        del environ['HTTP_RANGE']
    for name in ('HTTP_IF_MODIFIED_SINCE', 'HTTP_IF_UNMODIFIED_SINCE'):
        if name in environ and not _valid_date(environ[name]):
            del environ[name]
