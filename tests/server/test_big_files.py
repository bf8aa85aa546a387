"""A big file in static/: every contract of a static file, and a slow reader holds no pool thread.

A real `python landing.py` serving a copy of the app (THREADS=2) whose static/ holds a file past
the one-piece size of before (64 MiB): answers over guard.ONE_PIECE are pulled by a thread of
their own, STREAM_CHUNK at a time, so neither a pool thread nor the whole file is held per
reader (docs/load-balancer.md, "A memory budget").
"""
import pytest

import hostile_corpus as corpus
from conftest import OUR_HEADERS, copy_app, request

# Past the one-piece size of before, so a reader that stops held a pool thread then.
BIG = 64 * 1024 * 1024 + 1
# A marker every MiB: the file is sparse elsewhere, and every byte is still checked.
MARK_EVERY = 1024 * 1024
NON_READERS = 20


def big_content():
    """The big file's bytes: zeros, with its offset written at the start of every MiB."""
    content = bytearray(BIG)
    for offset in range(0, BIG, MARK_EVERY):
        mark = (b'%d;' % offset)[:BIG - offset]
        content[offset:offset + len(mark)] = mark
    return bytes(content)


@pytest.fixture(scope='module')
def big(tmp_path_factory):
    """The app copied with static/big.bin, served with THREADS=2; (process, content)."""
    app = copy_app(tmp_path_factory.mktemp('big') / 'app')
    content = big_content()
    (app / 'static' / 'big.bin').write_bytes(content)
    workdir = tmp_path_factory.mktemp('big-run')
    process = corpus.AppProcess(app, workdir, env={'THREADS': '2'})
    try:
        yield process.wait_ready(), content
    finally:
        process.stop()


def test_a_big_file_comes_whole_with_every_header_of_a_static_file(big):
    """200, the exact bytes, Last-Modified, the Cache-Control prod.conf gives, security headers."""
    process, content = big
    status, headers, body = request(process.port, 'GET', '/static/big.bin', timeout=60)
    assert status == 200
    assert int(headers['Content-Length']) == BIG
    assert body == content
    assert headers['Last-Modified']
    assert headers['Cache-Control'] == 'max-age=3600'
    for name, value in OUR_HEADERS:
        assert headers[name] == value


def test_a_big_file_answers_head_ranges_and_validators(big):
    """HEAD: the length, no body; one range: 206 with those bytes; not modified since: 304."""
    process, content = big
    status, headers, body = request(process.port, 'HEAD', '/static/big.bin')
    assert (status, int(headers['Content-Length']), body) == (200, BIG, b'')
    first, last = 3 * MARK_EVERY - 5, 5 * MARK_EVERY + 7
    status, headers, body = request(process.port, 'GET', '/static/big.bin',
                                    headers={'Range': f'bytes={first}-{last}'})
    assert (status, body) == (206, content[first:last + 1])
    status, _, body = request(process.port, 'GET', '/static/big.bin',
                              headers={'If-Modified-Since': headers['Last-Modified']})
    assert (status, body) == (304, b'')


def test_readers_that_stop_hold_no_pool_thread_and_little_memory(big):
    """20 clients stop reading the big file, THREADS=2: the probe and the page still answer.

    Each such client costs the server well under a MiB of memory, not the file's 64 MiB.
    """
    process, _ = big
    per, opened = corpus.memory_per_connection(process, lambda port: corpus.non_reader(
        port, '/static/big.bin', pipelined=1), count=NON_READERS)
    assert opened == NON_READERS
    assert per < 1024, f'{per:.0f} KiB per reader'
    with corpus.Sockets() as held:
        corpus.open_many(NON_READERS, lambda: corpus.non_reader(
            process.port, '/static/big.bin', pipelined=1), held)
        assert request(process.port, 'GET', '/healthcheck', timeout=5)[0] == 200
        assert request(process.port, 'GET', '/', timeout=5)[0] == 200
