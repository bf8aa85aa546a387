"""HTTP over raw sockets, for tests that must control every byte and every connection."""
import re
import socket

CRLF = b'\r\n'


def connect(port, timeout=5):
    """Open a TCP connection to 127.0.0.1:port."""
    return socket.create_connection(('127.0.0.1', port), timeout=timeout)


def get(path, *headers):
    """Return the bytes of a GET request for `path` with a Host and extra header lines."""
    lines = [f'GET {path} HTTP/1.1'.encode(), b'Host: localhost', *headers]
    return CRLF.join(lines) + CRLF + CRLF


def exchange(port, data, timeout=5):
    """Send `data`, close our side, and return every byte the server sends until it closes.

    A server reset shows as a trailing b'<RST>', a silent server as b'<TIMEOUT>'.
    """
    with connect(port, timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close on bad bytes before reading them all
        received = b''
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received + b'<RST>'
            except socket.timeout:
                return received + b'<TIMEOUT>'
            if not chunk:
                return received
            received += chunk


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
