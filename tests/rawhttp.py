"""HTTP over raw sockets, for tests that must control every byte and every connection."""
import contextlib
import re
import socket

CRLF = b'\r\n'
# After the first bytes of an answer, how long a silence means the server has said it all.
QUIET = 0.3


def connect(port, timeout=5):
    """Open a TCP connection to 127.0.0.1:port."""
    return socket.create_connection(('127.0.0.1', port), timeout=timeout)


def get(path, *headers):
    """Return the bytes of a GET request for `path` with a Host and extra header lines."""
    lines = [f'GET {path} HTTP/1.1'.encode(), b'Host: localhost', *headers]
    return CRLF.join(lines) + CRLF + CRLF


def exchange(port, data, timeout=5):
    """Send `data` and return every byte the server sends until it closes or falls quiet.

    Our side stays open for writing, as an HTTP client's does (granian drops a request whose
    client half-closes). A server reset shows as a trailing b'<RST>'; a server that neither
    answers nor closes within `timeout` as b'<TIMEOUT>'; one that answers and keeps the
    connection open as b'<OPEN>'.
    """
    with connect(port, timeout) as sock:
        # The server may answer and close on bad bytes before reading them all.
        with contextlib.suppress(OSError):
            sock.sendall(data)
        received = b''
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received + b'<RST>'
            except TimeoutError:
                return received + (b'<OPEN>' if received else b'<TIMEOUT>')
            if not chunk:
                return received
            received += chunk
            sock.settimeout(QUIET)


class Response:
    """One parsed HTTP response: status, headers (lower-case names) and body."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


def read_response(sock):
    """Read exactly one response (Content-Length framed) from a kept-alive connection."""
    reader = sock.makefile('rb')
    status = int(reader.readline().split()[1])
    headers = {}
    while (line := reader.readline()) not in (CRLF, b''):
        name, _, value = line.decode('latin-1').partition(':')
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get('content-length', 0)))
    return Response(status, headers, body)


STATUS_LINE = re.compile(rb'HTTP/1\.[01] (\d{3})[^\r\n]*\r\n')


def statuses(raw):
    """Return the status codes of every response in `raw`, in order (bodies may abut them)."""
    return [int(code) for code in STATUS_LINE.findall(raw)]
