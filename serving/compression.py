"""gzip for text answers sent in one piece, when the client accepts it (docs/load-balancer.md)."""
import functools
import gzip
import mimetypes
import re
from wsgiref.types import WSGIEnvironment

# Below this many bytes, gzip's own 18 bytes and the added header eat the saving (Django's
# GZipMiddleware draws the line at 200 too).
MIN_SIZE = 200
# zlib's default: within a few per cent of level 9's size at a third of its CPU.
LEVEL = 6
# Answers up to this size are compressed once and remembered (the 64 last: at most 2 MiB):
# gzip took a tenth of the page's throughput, and most answers this small (the page, CSS,
# JavaScript) are the same bytes each time.
REMEMBERED = 16 * 1024
# The types that compress: text, and the text formats of the web under other names.
_TEXT = re.compile(r'text/|application/(json|(x-)?javascript|xml|manifest\+json)\b'
                   r'|application/[\w.+-]+\+(json|xml)\b|image/svg\+xml\b', re.IGNORECASE)
# One coding of Accept-Encoding, with its q-value if any (RFC 9110 §12.5.3).
_CODING = re.compile(r'\s*([\w*-]+)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*', re.ASCII)

Headers = list[tuple[str, str]]
VARY = ('Vary', 'Accept-Encoding')


@functools.lru_cache(maxsize=256)
def accepts_gzip(accept_encoding: str) -> bool:
    """Tell whether an Accept-Encoding value accepts gzip: named, or `*`, with q above 0."""
    quality: dict[str, float] = {}
    for item in accept_encoding.split(','):
        coding = _CODING.fullmatch(item)
        if coding:
            try:
                value = float(coding.group(2) or 1)
            except ValueError:  # `q=1.2.3`: not a q-value, the coding not accepted
                value = 0.0
            quality[coding.group(1).lower()] = value
    return quality.get('gzip', quality.get('x-gzip', quality.get('*', 0.0))) > 0


@functools.lru_cache(maxsize=256)
def text_type(content_type: str) -> bool:
    """Tell whether `content_type` (a Content-Type value) names a type that compresses."""
    return bool(_TEXT.match(content_type))


def text_answer(headers: Headers) -> tuple[bool, int | None]:
    """Return (whether an answer with `headers` is text not yet encoded, where its Vary is).

    One pass over the headers: this runs for every answer sent in one piece.
    """
    content_type, vary_at = '', None
    for index, (name, value) in enumerate(headers):
        lowered = name.lower()
        if lowered == 'content-type':
            content_type = value
        elif lowered == 'vary':
            vary_at = index
        elif lowered == 'content-encoding':
            return False, vary_at
    return text_type(content_type), vary_at


def with_vary(headers: Headers) -> Headers:
    """Return `headers` with Accept-Encoding in its Vary (caches keep one copy per coding)."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == 'vary':
            named = {part.strip().lower() for part in value.split(',')}
            if not named & {'accept-encoding', '*'}:
                headers = [*headers[:index], (name, f'{value}, Accept-Encoding'),
                           *headers[index + 1:]]
            return headers
    return [*headers, VARY]


def not_modified(environ: WSGIEnvironment, headers: Headers) -> Headers:
    """Return a 304's headers with the Vary its 200 would carry (RFC 9110 §15.4.5).

    A 304 names no type: the path's tells, and a path with none may be a page.
    """
    guessed, _ = mimetypes.guess_type(environ.get('PATH_INFO', ''))
    if guessed and not text_type(guessed):
        return headers
    return with_vary(headers)


@functools.lru_cache(maxsize=64)
def gzipped(body: bytes) -> bytes:
    """Return `body` gzipped, remembered: the same page or file is compressed once."""
    return gzip.compress(body, LEVEL, mtime=0)


def compressed(environ: WSGIEnvironment, status: str, headers: Headers,
               body: bytes) -> tuple[Headers, bytes]:
    """Return the answer's headers and body, gzipped where the client and the answer allow.

    Only whole answers of 200 (not a 206 part, a 304, or HEAD's empty body): the length of
    what is sent is known before any byte goes out. A strong ETag becomes weak, since the
    gzipped bytes differ from the ones it names; Accept-Ranges goes, since a range of them
    could not be resumed from the plain bytes a Range request gets.
    """
    text, vary_at = text_answer(headers)
    if not text:
        return headers, body
    headers = [*headers, VARY] if vary_at is None else with_vary(headers)
    accept = environ.get('HTTP_ACCEPT_ENCODING')
    if (not accept or not status.startswith('200') or len(body) < MIN_SIZE
            or environ.get('REQUEST_METHOD') == 'HEAD' or not accepts_gzip(accept)):
        return headers, body
    body = gzipped(body) if len(body) <= REMEMBERED else gzip.compress(body, LEVEL, mtime=0)
    kept = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == 'content-length':
            value = str(len(body))
        elif lowered == 'etag' and not value.startswith('W/'):
            value = f'W/{value}'
        elif lowered == 'accept-ranges':
            continue
        kept.append((name, value))
    kept.append(('Content-Encoding', 'gzip'))
    return kept, body
