"""How answers reach the socket: headers and body in one send, streamed bodies still streamed."""
import contextlib
import socket
from unittest import mock

import cherrypy
import pytest
from cheroot.makefile import MakeFile

import landing
from conftest import request

@contextlib.contextmanager
def sends_from(watched):
    """Record the bytes of every socket.send() on a socket for which `watched(sock)` is true."""
    sent = []
    original = socket.socket.send

    def send(sock, data, *args):
        if watched(sock):
            sent.append(bytes(data))
        return original(sock, data, *args)

    with mock.patch.object(socket.socket, 'send', send):
        yield sent


def raw_answer(sock):
    """Read from `sock` until the peer has sent one whole answer (headers plus Content-Length)."""
    data = b''
    while b'\r\n\r\n' not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b'\r\n\r\n')
    length = int(dict(line.split(b': ', 1) for line in head.split(b'\r\n')[1:])
                 .get(b'Content-Length', b'0'))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


@pytest.mark.parametrize('method, path, status', [
    ('GET', '/', 200), ('HEAD', '/', 200), ('GET', '/healthcheck', 200),
    ('GET', '/logo.png', 200), ('GET', '/logo.png', 304), ('GET', '/no-such-page', 404),
])
def test_every_answer_leaves_in_one_send(app_port, method, path, status):
    """Headers and body go out in one send() (stock cheroot makes two), bodiless answers too."""
    headers = {}
    if status == 304:
        headers['If-Modified-Since'] = request(app_port, 'GET', path)[1]['Last-Modified']
    with sends_from(lambda sock: sock.getsockname()[1] == app_port) as sent:
        got, answer_headers, body = request(app_port, method, path, headers)
    assert got == status
    assert len(sent) == 1, [chunk[:40] for chunk in sent]
    assert sent[0].startswith(b'HTTP/1.1 %d ' % status)
    assert sent[0].endswith(b'\r\n\r\n' + body)


def serve_one_request(makefile, raw_request):
    """Run one request through a real OneSendConnection on a socket pair; return the sends."""
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        server_end.settimeout(5)
        conn = landing.OneSendConnection(cherrypy.server.httpserver, server_end, makefile)
        client_end.sendall(raw_request)
        with sends_from(lambda sock: sock is server_end) as sent:
            conn.communicate()
        head, body = raw_answer(client_end)
    assert head.startswith(b'HTTP/1.1 200 ')
    assert body == landing.PAGE
    return sent


def test_the_send_count_tells_one_send_from_two(app_port):
    """With cheroot's own file objects (as a TLS adapter brings) the same answer takes two."""
    page_request = b'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'

    def stock_makefile(sock, mode='r', bufsize=8192):
        """cheroot's MakeFile under another name, as an SSL adapter's makefile would be."""
        return MakeFile(sock, mode, bufsize)

    assert len(serve_one_request(landing.MakeFile, page_request)) == 1
    assert len(serve_one_request(stock_makefile, page_request)) == 2


def test_held_headers_go_with_the_first_chunk_and_later_chunks_stream():
    """A streamed answer: headers ride on the first chunk; every later chunk is sent at once."""
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        writer = landing.held_headers_makefile(server_end, 'wb')
        with sends_from(lambda sock: sock is server_end) as sent:
            writer.hold_next = True
            writer.write(b'HTTP/1.1 200 OK\r\n\r\n')
            assert sent == []
            writer.write(b'first')
            writer.write(b'second')
            writer.release()  # nothing held: nothing sent
        assert sent == [b'HTTP/1.1 200 OK\r\n\r\nfirst', b'second']
        assert writer.bytes_written == len(b''.join(sent))


def test_held_headers_with_no_body_are_sent_on_release():
    """A bodiless answer's held headers leave when the answer ends."""
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        writer = landing.held_headers_makefile(server_end, 'wb')
        writer.hold_next = True
        writer.write(b'HTTP/1.1 304 Not Modified\r\n\r\n')
        writer.release()
        assert client_end.recv(100) == b'HTTP/1.1 304 Not Modified\r\n\r\n'
