"""Hostile corpus: what an attacker sends the landing server, and what must hold of the answer.

Stdlib only, so that tests/server/test_hostile.py and bench/hostile.py share it against any checkout
(cheroot today, granian tomorrow). Each Case has a class, a name that states the rule, and either
raw bytes with a predicate over the Reply, or a scenario run against a live AppProcess (slow
clients, descriptor exhaustion, CPU and memory cost). The cases say what SHOULD hold (RFC 9110,
RFC 9112 and the issue), not what today's server does.

Every byte goes to 127.0.0.1; every loop has a count bound and a deadline and stops by itself;
the only processes ended are the ones started here, by their PID.
"""
import contextlib
import dataclasses
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from email.utils import formatdate

from rawhttp import connect, get, read_response, statuses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGO_PATH, CSS_PATH = '/logo.png', '/static/site.css'
with open(os.path.join(ROOT, 'static', 'logo.png'), 'rb') as _handle:
    LOGO = _handle.read()
with open(os.path.join(ROOT, 'static', 'site.css'), 'rb') as _handle:
    CSS = _handle.read()

HEADER_SLACK = 2048           # bytes of status line and headers an answer may add to a file
BODY_CAP = 64 * 1024          # the server's request-body cap (server.max_request_body_size)
QUIET = 0.5                   # s without a byte after an answer: the server kept the line open
SETTLE = 0.03                 # s to wait after the expected answers for any unexpected one
TALK_TIMEOUT = 5.0            # s for one exchange, answer and close included
READ_LIMIT = 4 * 1024 * 1024  # bytes read from one exchange unless a case sets its own bound
MAX_READS = 100_000           # recv() calls per exchange, whatever the server trickles
START_DEADLINE = 20           # s for a server to answer its first /healthcheck
CLK_TCK = os.sysconf('SC_CLK_TCK')

# Table rows, in order: (class key, label). "security" is its own row so the table shows it alone.
CLASSES = (
    ('range', 'range amplification & validators'),
    ('smuggling', 'request smuggling / desync'),
    ('headers', 'Connection, leaks, error pages'),
    ('security', 'security headers on every answer'),
    ('slow-clients', 'slow clients'),
    ('descriptors', 'descriptor exhaustion'),
    ('paths', 'path amplification & traversal'),
    ('query', 'query strings'),
    ('cost', 'header & body CPU'),
    ('tracebacks', 'tracebacks before the config applies'),
    ('bodies', 'request bodies nobody takes'),
    ('static', 'static files: only static/'),
    ('memory', 'memory per connection'),
)
CLASS_LABELS = dict(CLASSES)

# --------------------------------------------------------------------------------------------
# Talking to the server


@dataclasses.dataclass
class Answer:
    """One HTTP answer cut from the byte stream: status, headers (lower-case names), body."""

    status: int
    headers: dict
    body: bytes

    def header(self, name, default=None):
        """Return the first value of header `name`, or `default`."""
        return self.headers.get(name.lower(), [default])[0]


class Reply:
    """Everything that came back on one connection, cut into answers by their framing.

    `ending` is how reading stopped: closed (FIN), reset (RST), open (the expected answers came
    and the server kept the connection open), timeout (they did not all come before the
    deadline) or capped (the bytes passed the case's read bound, so reading stopped).
    """

    def __init__(self, raw, ending, head=False):
        self.raw, self.ending = bytes(raw), ending
        self.answers, self.leftover = split_answers(self.raw, head)

    @property
    def statuses(self):
        """The status of every answer, in order."""
        return [answer.status for answer in self.answers]

    @property
    def count(self):
        """How many answers came back; a status line inside a body counts too (cautious)."""
        return max(len(self.answers), len(statuses(self.raw)))

    @property
    def closed(self):
        """Tell whether the server ended the connection itself (FIN or RST)."""
        return self.ending in ('closed', 'reset')

    def first(self):
        """Return the first answer, or None."""
        return self.answers[0] if self.answers else None

    def summary(self):
        """One line for a failure report: statuses, size, ending and the first bytes."""
        return (f'statuses={self.statuses} count={self.count} bytes={len(self.raw)} '
                f'ending={self.ending} head={self.raw[:200]!r}')


_STATUS = re.compile(rb'HTTP/\d\.\d (\d{3})[^\r\n]*\r\n')


def _is_head(head, index):
    """Tell whether answer `index` answers a HEAD: `head` is True (all) or a set of positions."""
    return head is True or (bool(head) and index in head)


def _framing(head_bytes, status, is_head):
    """Return ('none'|'chunked'|'length'|'close'|'broken', length) for an answer's body.

    'broken' is a Content-Length that is no number (say -1): no more bytes can complete such an
    answer, so it counts as complete at once, and safe() fails it.
    """
    lowered = head_bytes.lower()
    if is_head or status in (204, 304) or status < 200:
        return 'none', 0
    if re.search(rb'\r\ntransfer-encoding:[^\r\n]*chunked', lowered):
        return 'chunked', 0
    length = re.search(rb'\r\ncontent-length:[ \t]*([^\r\n]*?)[ \t]*\r\n', lowered + b'\r\n')
    if not length:
        return 'close', 0
    return ('length', int(length.group(1))) if length.group(1).isdigit() else ('broken', 0)


def _chunked_end(data, at):
    """Walk chunks from `at`; return (decoded body, end offset) or (body so far, None) if cut."""
    body = bytearray()
    for _ in range(MAX_READS):
        line_end = data.find(b'\r\n', at)
        if line_end < 0:
            return body, None
        try:
            size = int(bytes(data[at:line_end]).split(b';')[0], 16)
        except ValueError:
            return body, None  # not chunked after all: framed by the close
        if size == 0:
            trailer_end = data.find(b'\r\n\r\n', line_end)
            return body, (trailer_end + 4 if trailer_end >= 0 else None)
        if len(data) < line_end + 2 + size + 2:
            return body, None
        body += data[line_end + 2:line_end + 2 + size]
        at = line_end + 2 + size + 2
    return body, None


class Framer:
    """Counts complete answers in a growing buffer, touching each byte about once."""

    def __init__(self, head=False):
        self.head, self.count, self.at, self.state = head, 0, 0, 'head'
        self.body_end = self.chunk_at = 0

    def feed(self, data):
        """Advance over every answer of `data` (the whole buffer so far) that is now complete."""
        for _ in range(MAX_READS):
            if self.state == 'head' and not self._head(data):
                return
            if self.state == 'length':
                if len(data) < self.body_end:
                    return
                self._done(self.body_end)
            elif self.state == 'chunked':
                if not self._chunks(data):
                    return
            elif self.state == 'close':
                return  # framed by the close: complete only when the server closes

    def _head(self, data):
        """Read the next answer's head, if whole; pick its framing. False if more bytes are due."""
        end = data.find(b'\r\n\r\n', self.at)
        if end < 0:
            return False
        match = _STATUS.match(data, self.at)
        if not match:
            self.state = 'close'  # not HTTP/1.x: wait for the server to close
            return True
        kind, length = _framing(bytes(data[self.at:end]), int(match.group(1)),
                                _is_head(self.head, self.count))
        if kind in ('none', 'broken'):
            self._done(end + 4)
            if kind == 'broken':
                self.state = 'close'  # nothing after it can be framed
        else:
            self.state, self.body_end, self.chunk_at = kind, end + 4 + length, end + 4
        return True

    def _chunks(self, data):
        """Skip whole chunks; on the last one, finish the answer. False if more bytes are due."""
        for _ in range(MAX_READS):
            line_end = data.find(b'\r\n', self.chunk_at)
            if line_end < 0:
                return False
            try:
                size = int(bytes(data[self.chunk_at:line_end]).split(b';')[0], 16)
            except ValueError:
                self.state = 'close'
                return True
            if size == 0:
                trailer_end = data.find(b'\r\n\r\n', line_end)
                if trailer_end < 0:
                    return False
                self._done(trailer_end + 4)
                return True
            if len(data) < line_end + 4 + size:
                return False
            self.chunk_at = line_end + 4 + size
        return False

    def _done(self, end):
        """Count one complete answer ending at `end`; the next one starts there."""
        self.count, self.at, self.state = self.count + 1, end, 'head'


def split_answers(raw, head=False):
    """Cut `raw` into Answers by Content-Length or chunked framing; return (answers, leftover)."""
    answers, at = [], 0
    for index in range(10_000):  # more answers than any case could provoke
        match = _STATUS.match(raw, at)
        head_end = raw.find(b'\r\n\r\n', at)
        if not match or head_end < 0:
            break
        headers = {}
        for line in raw[match.end():head_end].split(b'\r\n'):
            name, _, value = line.decode('latin-1').partition(':')
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        kind, length = _framing(raw[at:head_end], int(match.group(1)), _is_head(head, index))
        start = head_end + 4
        body, end = b'', {'none': start, 'length': start + length}.get(kind)
        if kind == 'chunked':
            body, end = _chunked_end(raw, start)
            body = bytes(body)
        if end is None or kind in ('close', 'broken'):
            end = len(raw)  # cut short or framed by the close: the rest is this body
        answers.append(Answer(int(match.group(1)), headers, body or raw[start:end]))
        at = end
    return answers, raw[at:]


def talk(port, data, expect=1, wait_close=False, half_close=False, limit=READ_LIMIT,
         timeout=TALK_TIMEOUT, head=False, settle=SETTLE):
    """Send `data` on a new connection and read what comes back; return a Reply.

    Reading stops when the server closes, or once `expect` answers are complete and nothing
    more comes for `settle` s (QUIET s with wait_close, to see whether the server closes), or
    past `limit` bytes (an amplified answer fails fast), or at `timeout`. Unlike
    rawhttp.exchange it does not half-close our side unless asked: some servers (hyper's, so
    granian's) drop a request on the client's EOF, which would hide every other property.
    """
    received, ending, framer = bytearray(), 'timeout', Framer(head)
    deadline = time.monotonic() + timeout
    with connect(port, timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading everything we send
        for _ in range(MAX_READS):
            done = framer.count >= expect
            left = deadline - time.monotonic()
            if done:
                left = min(left, QUIET if wait_close else settle)
            if left <= 0:
                ending = 'open' if done else 'timeout'
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                ending = 'reset'
                break
            except TimeoutError:
                ending = 'open' if done else 'timeout'
                break
            if not chunk:
                ending = 'closed'
                break
            received += chunk
            if len(received) > limit:
                ending = 'capped'
                break
            framer.feed(received)
    return Reply(received, ending, head)


# --------------------------------------------------------------------------------------------
# The server process and its measurements (from /proc: psutil is not available)


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def tree_pids(pid):
    """Return `pid` and every descendant (via /proc/PID/task/*/children), parents first."""
    found, queue = [], [pid]
    for _ in range(10_000):
        if not queue:
            break
        current = queue.pop(0)
        found.append(current)
        try:
            tasks = os.listdir(f'/proc/{current}/task')
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f'/proc/{current}/task/{task}/children') as handle:
                    queue.extend(int(child) for child in handle.read().split())
            except OSError:
                pass
    return found


def _process_cpu(pid):
    """CPU seconds of one process, all its threads (dead ones included).

    The process CPU clock (clock_getcpuclockid's id, ns resolution) first: /proc/PID/stat's
    utime+stime count 10 ms ticks, as coarse as the 10 ms bound the path cases check.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, SCHED)
    except OSError:
        pass
    try:
        with open(f'/proc/{pid}/stat') as handle:
            fields = handle.read().rpartition(')')[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu(pid):
    """CPU seconds used so far by the process tree under `pid`."""
    return sum(_process_cpu(each) for each in tree_pids(pid))


def _status_kb(pid, field):
    """Return a /proc/PID/status memory field (VmHWM, VmRSS) in kB, 0 if gone."""
    try:
        with open(f'/proc/{pid}/status') as handle:
            for line in handle:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_kb(pid, field):
    """Sum a /proc/PID/status memory field over the process tree under `pid`."""
    return sum(_status_kb(each, field) for each in tree_pids(pid))


def reset_peaks(pid):
    """Reset VmHWM to VmRSS across the tree (clear_refs 5); tell whether every reset worked."""
    done = True
    for each in tree_pids(pid):
        try:
            with open(f'/proc/{each}/clear_refs', 'w') as handle:
                handle.write('5')
        except OSError:
            done = False
    return done


def raise_open_files():
    """Raise this process's open-files soft limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_for(condition, deadline, interval=0.05):
    """Poll `condition` until true or `deadline` s pass; return its last value (bounded)."""
    end = time.monotonic() + deadline
    value = None
    for _ in range(int(deadline / interval) + 2):
        try:
            value = condition()
        except OSError:
            value = None
        if value or time.monotonic() > end:
            return value
        time.sleep(interval)
    return value


class AppProcess:
    """`python DIR/landing.py` on a free loopback port, output to files, stopped by its PID."""

    def __init__(self, app_dir, workdir, env=None, nofile=None, python=None, port=None,
                 script='landing.py'):
        self.app_dir, self.workdir = os.path.abspath(app_dir), str(workdir)
        self.python = python or sys.executable
        self.port = port or free_port()
        self.stdout_path = os.path.join(self.workdir, 'stdout.log')
        self.stderr_path = os.path.join(self.workdir, 'stderr.log')
        # Metrics (where the app has them) on a port of their own: servers run side by side.
        # MAX_CONNECTIONS above the default (768, a 128 MiB pod's budget): the scenario of
        # 1,000 silent + 1,000 idle connections needs room for 2,000.
        environment = dict(os.environ, HOST='127.0.0.1', PORT=str(self.port), THREADS='10',
                           MAX_CONNECTIONS='4096', METRICS_PORT=str(free_port()))
        environment.update(env or {})
        limit = None
        if nofile:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            # Started from workdir, not the app folder: the app must find its files itself.
            self.proc = subprocess.Popen(
                [self.python, os.path.join(self.app_dir, script)], cwd=self.workdir,
                env=environment, stdout=out, stderr=err, preexec_fn=limit)
        self.pid = self.proc.pid

    def healthy(self, timeout=1.0):
        """Tell whether GET /healthcheck on a new connection answers 200 Yay within `timeout`."""
        reply = talk(self.port, get('/healthcheck'), timeout=timeout, settle=0)
        first = reply.first()
        return bool(first and first.status == 200 and first.body == b'Yay')

    def probe_seconds(self, timeout=2.0):
        """Time GET /healthcheck on a new connection; None if it fails or passes `timeout`."""
        started = time.monotonic()
        try:
            return time.monotonic() - started if self.healthy(timeout) else None
        except OSError:
            return None

    def wait_ready(self, deadline=START_DEADLINE):
        """Poll /healthcheck until it answers; raise if the process exits or the deadline passes."""
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f'server exited {self.proc.returncode}: {self.stderr()[-600:]}')
            return self.healthy()
        if not wait_for(ready, deadline):
            raise RuntimeError(f'server not ready within {deadline} s: {self.stderr()[-600:]}')
        return self

    def stderr(self):
        """Return what the process wrote to stderr so far."""
        with open(self.stderr_path, errors='replace') as handle:
            return handle.read()

    def stderr_lines(self):
        """Count the lines on stderr so far."""
        with open(self.stderr_path, 'rb') as handle:
            return handle.read().count(b'\n')

    def stop(self, grace=10):
        """SIGTERM the server by PID, then SIGKILL it and any child it left, by their PIDs."""
        family = tree_pids(self.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=grace)
        for child in family[1:]:
            with contextlib.suppress(OSError):  # already gone
                os.kill(child, signal.SIGKILL)


def open_many(count, make, sockets, deadline=30):
    """Append up to `count` sockets from make() to `sockets`, stopping at `deadline` s or a refusal.

    Each make() has its own socket timeout; the deadline bounds the sum, so a server that stops
    accepting costs seconds, not count x timeout.
    """
    end = time.monotonic() + deadline
    for _ in range(count):
        if time.monotonic() > end:
            break
        try:
            sockets.append(make())
        except OSError:
            break  # refused or the backlog is full: as many as the server takes
    return len(sockets)


class Sockets(list):
    """Sockets a scenario holds; all closed on leaving the with-block."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for sock in self:
            sock.close()
        self.clear()


# --------------------------------------------------------------------------------------------
# Predicates: small functions over a Reply, built per case


ALLOWED_5XX = {501, 505}
LEAKS = (b'traceback', b'cherrypy/', b'cheroot', b'granian', b'file "/', b'powered by',
         b'site-packages')
SOURCE = re.compile(rb'^(import \w|from \w[\w.]* import |def \w+\(|class \w+[(:])', re.M)
SECRETS = (b'root:x:0:0', b'tools.staticdir', b'cherrypy==', b'__name__')


def safe(reply):
    """No 5xx but 501/505, valid Content-Lengths, no traceback, version or server file."""
    return (all(code < 500 or code in ALLOWED_5XX for code in reply.statuses)
            and all(value.isdigit() for answer in reply.answers
                    for value in answer.headers.get('content-length', []))
            and no_leak(reply) and not leaked_file(reply))


def no_leak(reply):
    """No body names a traceback, a framework, a server or a source file."""
    bodies = b''.join(answer.body for answer in reply.answers).lower() + reply.leftover.lower()
    return not any(leak in bodies for leak in LEAKS)


def leaked_file(reply):
    """Tell whether the bytes look like Python source, prod.conf or /etc/passwd."""
    return bool(SOURCE.search(reply.raw)) or any(secret in reply.raw for secret in SECRETS)


def first_in(*codes):
    """The first answer's status is one of `codes` and at most one answer came back."""
    def check(reply):
        return (safe(reply) and reply.count == 1 and bool(reply.answers)
                and reply.statuses[0] in codes)
    return check


def one_then_close(*codes):
    """Exactly one answer (status in `codes`, or any but 5xx), then the server closes."""
    def check(reply):
        if not (safe(reply) and reply.count == 1 and reply.answers and reply.closed):
            return False
        return reply.statuses[0] in codes if codes else True
    return check


def at_most_one(reply):
    """Never two answers to one request; the server may refuse or close without answering."""
    return safe(reply) and reply.count <= 1 and reply.ending != 'timeout'


def bounded(size, *codes):
    """Answer no bigger than `size` + HEADER_SLACK, status in `codes`, never 5xx."""
    def check(reply):
        return (reply.ending != 'capped' and len(reply.raw) <= size + HEADER_SLACK
                and first_in(*codes)(reply))
    return check


def full_body(content, *codes):
    """One answer, status in `codes` (200 by default), whose body is exactly `content`."""
    def check(reply):
        first = reply.first()
        return (first_in(*(codes or (200,)))(reply) and first.body == content)
    return check


def single_range(content, first, last):
    """206 with Content-Range bytes first-last/size, the right Content-Length and bytes."""
    size = len(content)

    def check(reply):
        answer = reply.first()
        return (first_in(206)(reply)
                and answer.header('content-range') == f'bytes {first}-{last}/{size}'
                and answer.header('content-length') == str(last - first + 1)
                and answer.body == content[first:last + 1])
    return check


def unsatisfiable(size):
    """416, with Content-Range bytes */size (RFC 9110 §15.5.17), bounded."""
    def check(reply):
        answer = reply.first()
        return (bounded(size, 416)(reply)
                and answer.header('content-range', '').replace(' ', '') == f'bytes*/{size}')
    return check


def page(reply):
    """One 200 answer carrying the HTML landing page."""
    answer = reply.first()
    return (first_in(200)(reply) and 'text/html' in answer.header('content-type', '')
            and answer.body.lstrip().lower().startswith(b'<!doctype html'))


def yay(reply):
    """One 200 answer whose body is Yay (the health check)."""
    return first_in(200)(reply) and reply.first().body == b'Yay'


def bare_parser_refusal(answer):
    """A refusal written by the HTTP parser before any app code runs (hyper's 4xx/5xx).

    It has no body for a browser to sniff or render, names no product, and ends the
    connection: granian offers no hook to add headers to it (docs/load-balancer.md).
    """
    return (400 <= answer.status < 600 and answer.body == b''
            and answer.header('content-length') == '0'
            and answer.header('connection', '').lower() == 'close'
            and answer.header('server') is None)


def security_headers(optional=False):
    """Every answer with a body carries nosniff and a CSP; the rest are bare parser refusals."""
    def check(reply):
        if not reply.answers:
            return optional and reply.ending != 'timeout'
        return all(
            answer.header('x-content-type-options', '').lower() == 'nosniff'
            and answer.header('content-security-policy') or bare_parser_refusal(answer)
            for answer in reply.answers)
    return check


def leaks_nothing(reply):
    """The server answered or closed, and no body names a traceback or a version."""
    return no_leak(reply) and reply.ending != 'timeout'


def server_header_names_no_version(reply):
    """No Server (or X-Powered-By) header names a product version or a known framework."""
    for answer in reply.answers:
        for name in ('server', 'x-powered-by'):
            for value in answer.headers.get(name, []):
                if re.search(r'\d+\.\d+|cherrypy|cheroot|granian|python', value, re.I):
                    return False
    return bool(reply.answers)


def not_reflected(marker):
    """The answer does not echo `marker` (an HTML injection) back into its body."""
    def check(reply):
        return marker not in reply.raw and reply.ending != 'timeout'
    return check


# --------------------------------------------------------------------------------------------
# Cases


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What running one case gave: passed or not, and a line saying what came back."""

    passed: bool
    detail: str


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile input (bytes, or a scenario run against the server) and what must hold."""

    klass: str
    name: str
    send: bytes = b''
    check: Callable | None = None
    expect: int = 1          # answers a conforming server sends before it may wait or close
    wait_close: bool = False  # the rule needs to see whether the server closes afterwards
    half_close: bool = False  # shut our write side after sending (a case of its own)
    limit: int = READ_LIMIT
    head: object = False     # True, or the positions of the answers that answer a HEAD
    scenario: Callable | None = None
    slow: bool = False

    @property
    def id(self):
        """A test id saying what must hold."""
        return f'{self.klass}: {self.name}'

    def run(self, target):
        """Run the case against a live server (anything with .port, .pid, ...)."""
        if self.scenario:
            try:
                return self.scenario(target)
            except Exception as error:  # a report row, not a crash of the whole run
                return Outcome(False, f'scenario raised {error!r}')
        try:
            reply = talk(target.port, self.send, self.expect, self.wait_close, self.half_close,
                         self.limit, head=self.head)
        except OSError as error:
            return Outcome(False, f'could not talk to the server: {error!r}')
        return Outcome(bool(self.check(reply)), reply.summary())


HOST = b'Host: localhost'
HIDDEN = get(LOGO_PATH)  # the smuggled request: served, it would show as an image/png answer


def req(*lines, body=b''):
    """Join request lines with CRLF, end the head, append `body`."""
    return b'\r\n'.join(lines) + b'\r\n\r\n' + body


def ranged(path, *range_lines, method=b'GET'):
    """A request for `path` with the given Range (or validator) header lines."""
    return req(method + b' ' + path.encode() + b' HTTP/1.1', HOST, *range_lines)


def range_cases():
    """Range amplification, malformed and valid ranges, garbage validators (class 1)."""
    size, css = len(LOGO), len(CSS)
    every = (200, 206, 400, 413, 416, 431)  # any sane answer, as long as it stays small
    many_zero = b'Range: bytes=' + b','.join([b'0-'] * 5000)
    small_distinct = b'Range: bytes=' + b','.join(b'%d-%d' % (i, i) for i in range(0, 3000, 2))
    cases = [
        # Amplification: whatever the header, no more than the file plus headers.
        ('5000 ranges "0-" on the logo -> answer <= file + 2 KB', LOGO_PATH, [many_zero], size),
        ('5000 ranges "0-" on site.css -> answer <= file + 2 KB', CSS_PATH, [many_zero], css),
        ('1000 overlapping whole-file ranges -> answer <= file + 2 KB', LOGO_PATH,
         [b'Range: bytes=' + b','.join([b'0-%d' % (size - 1)] * 1000)], size),
        ('5000 suffix ranges "-1" -> answer <= file + 2 KB', LOGO_PATH,
         [b'Range: bytes=' + b','.join([b'-1'] * 5000)], size),
        ('2000 suffix ranges of the whole file -> answer <= file + 2 KB', LOGO_PATH,
         [b'Range: bytes=' + b','.join([b'-%d' % size] * 2000)], size),
        ('1500 one-byte ascending ranges -> answer <= file + 2 KB', LOGO_PATH,
         [small_distinct], size),
        ('1500 one-byte descending ranges -> answer <= file + 2 KB', LOGO_PATH,
         [b'Range: bytes=' + b','.join(b'%d-%d' % (i, i) for i in range(2998, -1, -2))], size),
        ('4 Range headers of 1000 "0-" each -> answer <= file + 2 KB', LOGO_PATH,
         [b'Range: bytes=' + b','.join([b'0-'] * 1000)] * 4, size),
        ('HEAD with 5000 ranges "0-" -> answer <= file + 2 KB', LOGO_PATH, [many_zero], size),
        ('If-Range garbage + 5000 ranges -> answer <= file + 2 KB', LOGO_PATH,
         [b'If-Range: garbage', many_zero], size),
    ]
    for name, path, lines, limit in cases:
        method = b'HEAD' if name.startswith('HEAD') else b'GET'
        yield Case('range', name, ranged(path, *lines, method=method),
                   bounded(limit, *every), limit=limit + HEADER_SLACK, head=method == b'HEAD')
    yield from malformed_range_cases()
    yield from valid_range_cases()
    yield from validator_cases()
    yield Case('range', 'worst single request -> server tree peak RSS grows < 10 MB',
               scenario=peak_memory_under_worst_requests)


def malformed_range_cases():
    """Malformed ranges: the file (200) or 416, never 5xx, never bigger than the file."""
    size = len(LOGO)
    strict = {
        'bytes=abc': b'bytes=abc', 'bytes=--1': b'bytes=--1', 'bytes=-0': b'bytes=-0',
        'bytes=': b'bytes=', 'bytes=-': b'bytes=-', 'bytes=5-1 (last < first)': b'bytes=5-1',
        'bytes=0--1': b'bytes=0--1', 'bytes=1-2-3': b'bytes=1-2-3',
        'bytes=0x10-0x20': b'bytes=0x10-0x20', 'bytes=+1-2': b'bytes=+1-2',
        'bytes 0-99 (no =)': b'bytes 0-99', 'unit items=0-1': b'items=0-1',
        'unit none': b'none',
        'bytes=1.5-2': b'bytes=1.5-2', 'bytes=\xff-1': b'bytes=\xff-1',
    }
    for label, value in strict.items():
        yield Case('range', f'Range {label} -> 200 or 416, <= file + 2 KB',
                   ranged(LOGO_PATH, b'Range: ' + value), bounded(size, 200, 416))
    lenient = {  # RFC 9110 §5.6.1 lets a recipient skip empty list elements, so 206 is fine too
        'bytes=0-1,,': b'bytes=0-1,,', 'bytes=,0-1': b'bytes=,0-1',
        'huge last 0-99999999999999999999': b'bytes=0-' + b'9' * 20,
        'huge first 99999999999999999999-': b'bytes=' + b'9' * 20 + b'-',
        'huge suffix -99999999999999999999': b'bytes=-' + b'9' * 20,
        'unit in upper case Bytes=0-99': b'Bytes=0-99',
        '400-digit number': b'bytes=0-' + b'9' * 400, 'space after =': b'bytes= 5-9',
    }
    for label, value in lenient.items():
        yield Case('range', f'Range {label} -> 200, 206 or 416, <= file + 2 KB',
                   ranged(LOGO_PATH, b'Range: ' + value), bounded(size, 200, 206, 416))
    # RFC 9110 §5.5: a NUL in a field value may be rejected (400) or read as a space.
    yield Case('range', 'Range bytes=0-1 with NUL -> 200, 206, 400 or 416, <= file + 2 KB',
               ranged(LOGO_PATH, b'Range: bytes=0-1\x00'), bounded(size, 200, 206, 400, 416))
    yield Case('range', 'two Range headers -> 200, 206, 400 or 416, <= file + 2 KB',
               ranged(LOGO_PATH, b'Range: bytes=0-1', b'Range: bytes=2-3'),
               bounded(size, 200, 206, 400, 416))


def valid_range_cases():
    """Valid single ranges get 206 with exact headers; unsatisfiable ones get 416."""
    size = len(LOGO)
    for label, value, first, last in (
            ('bytes=0-99', b'bytes=0-99', 0, 99),
            ('bytes=0-0', b'bytes=0-0', 0, 0),
            ('suffix bytes=-100', b'bytes=-100', size - 100, size - 1),
            # From the middle of whatever logo the site has (a user may ship a small one).
            ('open from the middle bytes=N-', b'bytes=%d-' % (size // 2), size // 2, size - 1),
            ('past the end bytes=0-99999999', b'bytes=0-99999999', 0, size - 1),
            ('suffix longer than the file', b'bytes=-99999', 0, size - 1)):
        yield Case('range', f'Range {label} -> 206 with exact Content-Range/Length',
                   ranged(LOGO_PATH, b'Range: ' + value), single_range(LOGO, first, last))
    yield Case('range', 'Range bytes=10-19 on site.css -> 206 with exact Content-Range/Length',
               ranged(CSS_PATH, b'Range: bytes=10-19'), single_range(CSS, 10, 19))
    yield Case('range', 'two small ranges -> 200 or 206, <= file + 2 KB',
               ranged(LOGO_PATH, b'Range: bytes=0-99, 200-299'), bounded(size, 200, 206))
    for label, value in (('first at the size', b'bytes=%d-' % size),
                         ('far past the end', b'bytes=99999-100000')):
        yield Case('range', f'Range {label} -> 416 with Content-Range bytes */size',
                   ranged(LOGO_PATH, b'Range: ' + value), unsatisfiable(size))


def validator_cases():
    """Garbage validators are ignored: 200 with the full file, not 304/412/5xx."""
    now = formatdate(usegmt=True).encode()
    garbage = [
        b'If-Unmodified-Since: garbage', b'If-Modified-Since: garbage',
        b'If-None-Match: garbage', b'If-None-Match: "', b'If-None-Match: ,,,',
        b'If-None-Match: W/', b'If-Modified-Since: ', b'If-Unmodified-Since: ',
        b'If-Unmodified-Since: Mon, 99 Foo 2024 99:99:99 GMT',
        b'If-Unmodified-Since: 99999999999999999999',
        b'If-Modified-Since: Sat, 01 Jan 9999 00:00:00 GMT',  # later than now: invalid, §13.1.3
        b'If-Modified-Since: \xff\xfe', b'If-Match: *',
    ]
    for line in garbage:
        label = line.decode('latin-1').encode('unicode_escape').decode()
        yield Case('range', f'{label} on the logo -> 200 with the whole file',
                   ranged(LOGO_PATH, line), full_body(LOGO))
    yield Case('range', 'If-Modified-Since with a NUL on the logo -> 200 whole file, or 400',
               ranged(LOGO_PATH, b'If-Modified-Since: \x00\xff'),
               lambda reply: full_body(LOGO)(reply) or first_in(400)(reply))
    yield Case('range', 'If-Unmodified-Since: garbage on the page -> 200 page',
               ranged('/', b'If-Unmodified-Since: garbage'), page)
    yield Case('range', 'If-None-Match: garbage on the health check -> 200 Yay',
               ranged('/healthcheck', b'If-None-Match: garbage'), yay)
    yield Case('range', 'If-Range: garbage with bytes=0-99 -> whole file or that range',
               ranged(LOGO_PATH, b'If-Range: garbage', b'Range: bytes=0-99'),
               lambda reply: full_body(LOGO)(reply) or single_range(LOGO, 0, 99)(reply))
    yield Case('range', f'If-Modified-Since now ({now.decode()}) -> 304 or 200, <= file + 2 KB',
               ranged(LOGO_PATH, b'If-Modified-Since: ' + now), bounded(len(LOGO), 200, 304))


def smuggling_cases():
    """Request smuggling and desync (RFC 9112 §6.1, §6.3), and request-line oddities."""
    yield from content_length_with_transfer_encoding()
    yield from bad_content_lengths()
    yield from host_cases()
    yield from header_name_cases()
    yield from request_line_cases()
    yield from unread_body_cases()
    yield from pipelining_cases()


TE_DISGUISES = {
    'plain chunked': b'Transfer-Encoding: chunked',
    'chunked\\x0b': b'Transfer-Encoding: chunked\x0b',
    'space before colon': b'Transfer-Encoding : chunked',
    'obs-folded': b'Transfer-Encoding:\r\n chunked',
    'xchunked': b'Transfer-Encoding: xchunked',
    'chunked, identity': b'Transfer-Encoding: chunked, identity',
    'ChUnKeD value': b'Transfer-Encoding: ChUnKeD',
    'tRANSFER-eNCODING name': b'tRANSFER-eNCODING: chunked',
    'TE twice': b'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked',
    'identity then chunked': b'Transfer-Encoding: identity\r\nTransfer-Encoding: chunked',
    'tab before value': b'Transfer-Encoding:\tchunked',
    'quoted "chunked"': b'Transfer-Encoding: "chunked"',
    'NUL before chunked': b'Transfer-Encoding: \x00chunked',
    'trailing comma': b'Transfer-Encoding: chunked,',
    'gzip, chunked': b'Transfer-Encoding: gzip, chunked',
    'chunked;param': b'Transfer-Encoding: chunked;a=b',
}


def content_length_with_transfer_encoding():
    """CL + TE in both directions: 400, or one answer then close; the hidden request never."""
    prefix = b'%x\r\n' % len(HIDDEN)
    te_ends_early = b'0\r\n\r\n' + HIDDEN                   # a TE reader sees HIDDEN next
    cl_ends_early = prefix + HIDDEN + b'\r\n0\r\n\r\n'      # a CL reader sees HIDDEN next
    for label, te in TE_DISGUISES.items():
        for direction, body, length in (('TE', te_ends_early, len(te_ends_early)),
                                         ('CL', cl_ends_early, len(prefix))):
            data = req(b'POST / HTTP/1.1', HOST, b'Content-Length: %d' % length, te, body=body)
            yield Case('smuggling', f'CL + TE {label}, {direction} reader would see a hidden '
                       'request -> 400 or one answer then close', data, one_then_close(),
                       wait_close=True)
    yield Case('smuggling', 'TE chunked, identity without CL -> 400/501 then close',
               req(b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: chunked, identity',
                   body=b'0\r\n\r\n' + HIDDEN), one_then_close(400, 501), wait_close=True)
    yield Case('smuggling', 'Transfer_Encoding (underscore) + CL -> never two answers',
               req(b'POST / HTTP/1.1', HOST, b'Content-Length: %d' % len(te_ends_early),
                   b'Transfer_Encoding: chunked', body=te_ends_early), at_most_one)
    for version, extra in (('HTTP/1.0 + TE keep-alive', ()),
                           ('HTTP/1.0 + TE + CL keep-alive', (b'Content-Length: 5',))):
        yield Case('smuggling', f'{version} -> one answer then close (or 400)',
                   req(b'POST / HTTP/1.0', HOST, b'Connection: keep-alive',
                       b'Transfer-Encoding: chunked', *extra, body=te_ends_early),
                   one_then_close(), wait_close=True)
    yield Case('smuggling', 'GET HTTP/1.0 + TE chunked, keep-alive -> one answer then close',
               req(b'GET /healthcheck HTTP/1.0', HOST, b'Connection: keep-alive',
                   b'Transfer-Encoding: chunked', body=te_ends_early),
               one_then_close(), wait_close=True)


def bad_content_lengths():
    """Invalid or conflicting Content-Length: 400 then close (RFC 9112 §6.3 rule 5)."""
    body = b'hello' + HIDDEN  # read as 5 bytes, HIDDEN would follow as a second request
    values = {
        'two different values': [b'Content-Length: 5', b'Content-Length: 6'],
        'list 5, 6': [b'Content-Length: 5, 6'], '+5': [b'Content-Length: +5'],
        '0_5 (Python int)': [b'Content-Length: 0_5'], '"5 5"': [b'Content-Length: 5 5'],
        '-1': [b'Content-Length: -1'], 'hex 0x5': [b'Content-Length: 0x5'],
        'float 5.0': [b'Content-Length: 5.0'], 'exponent 5e0': [b'Content-Length: 5e0'],
        'empty': [b'Content-Length:'], '\\x0b5 (Python strip)': [b'Content-Length: \x0b5'],
        'Arabic-Indic digit five': [b'Content-Length: \xd9\xa5'],
        'NUL after 5': [b'Content-Length: 5\x00'], 'letters': [b'Content-Length: five'],
        'space before colon': [b'Content-Length : 5'],
    }
    for label, lines in values.items():
        yield Case('smuggling', f'Content-Length {label} -> 400 then close',
                   req(b'POST / HTTP/1.1', HOST, *lines, body=body), one_then_close(400),
                   wait_close=True)
    yield Case('smuggling', 'Content-Length of 30 digits -> 400 or 413, then close',
               req(b'POST / HTTP/1.1', HOST, b'Content-Length: ' + b'9' * 30, body=body),
               one_then_close(400, 413), wait_close=True)
    yield Case('smuggling', 'Content-Length 5, 5 (same twice) -> 400 or one answer',
               req(b'POST / HTTP/1.1', HOST, b'Content-Length: 5, 5', body=b'hello'),
               at_most_one)


def host_cases():
    """Duplicate, missing or invalid Host: 400 (RFC 9112 §3.2)."""
    hosts = {
        'duplicate Host (same value)': [HOST, HOST],
        'duplicate Host (two values)': [HOST, b'Host: example.invalid'],
        'no Host on HTTP/1.1': [],
        'Host with a space': [b'Host: local host'], 'Host with @': [b'Host: user@localhost'],
        'Host with /': [b'Host: localhost/path'], 'Host with a comma': [b'Host: a,b'],
        'Host with NUL': [b'Host: local\x00host'], 'Host 8 KB long': [b'Host: ' + b'a' * 8000],
        'Host with bad port': [b'Host: localhost:abc'],
        'Host with two ports': [b'Host: localhost:80:80'],
        'Host with unclosed [': [b'Host: [::1'], 'Host with <script>': [b'Host: a<script>'],
        'Host with \\': [b'Host: local\\host'],
    }
    for label, lines in hosts.items():
        codes = (400, 431) if '8 KB' in label else (400,)
        yield Case('smuggling', f'{label} -> 400',
                   req(b'GET / HTTP/1.1', *lines), first_in(*codes))


def header_name_cases():
    """Invalid header names (and the values RFC 9110 §5.5 calls dangerous) -> 400."""
    names = {
        'space before colon': b'X-Foo : bar', 'tab before colon': b'X-Foo\t: bar',
        'NUL in name': b'X\x00Foo: bar', 'bare CR in name': b'X\rFoo: bar',
        'parenthesis in name': b'X(Foo): bar', 'space in name': b'X Foo: bar',
        'slash in name': b'X/Foo: bar', 'quote in name': b'"X": bar',
        'bracket in name': b'[X]: bar',
        'DEL in name': b'X\x7fFoo: bar', 'byte 0xff in name': b'X\xffFoo: bar',
        'empty name': b': bar', 'no colon': b'Bad Header',
        'first header line folded': b' X-Folded: bar',
        'bare CR ends a line': b'X-Foo: bar\rX-Bar: baz',
    }
    for label, line in names.items():
        yield Case('smuggling', f'header {label} -> 400',
                   req(b'GET / HTTP/1.1', line, HOST), first_in(400))
    for label, line in (('NUL in value', b'X-Foo: a\x00b'), ('bare CR in value', b'X-Foo: a\rb')):
        yield Case('smuggling', f'header {label} -> 400 or served once',
                   req(b'GET / HTTP/1.1', HOST, line), first_in(400, 200))


def request_line_cases():
    """Odd request lines: 400/505/close, a 200 only when RFC 9112 allows it, never twice."""
    lines = {
        'bare LF line endings': (b'GET / HTTP/1.1\nHost: localhost\n\n', (200, 400)),
        'absolute-form target': (req(b'GET http://localhost/ HTTP/1.1', HOST), (200, 400)),
        'absolute-form, other host': (req(b'GET http://other.invalid/ HTTP/1.1', HOST),
                                      (200, 400, 404)),
        'double space GET  /': (req(b'GET  / HTTP/1.1', HOST), (200, 400)),
        'lowercase method get': (req(b'get / HTTP/1.1', HOST), (400, 405, 501)),
        'HTTP/2.0 in request line': (req(b'GET / HTTP/2.0', HOST), (400, 505)),
        'HTTP/9.9 in request line': (req(b'GET / HTTP/9.9', HOST), (400, 505)),
        'lowercase http/1.1': (req(b'GET / http/1.1', HOST), (400, 505)),
        'HTTP/1.1.1': (req(b'GET / HTTP/1.1.1', HOST), (400, 505)),
        'HTTP/01.1': (req(b'GET / HTTP/01.1', HOST), (400, 505)),
        'tab separators': (req(b'GET\t/\tHTTP/1.1', HOST), (200, 400)),
        'NUL in request line': (req(b'GET /\x00 HTTP/1.1', HOST), (400, 404)),
        'method with a slash': (req(b'G/T / HTTP/1.1', HOST), (400, 405, 501)),
        # hyper reads a bare word as an authority-form target and serves /: one answer, no
        # desync, so the page is accepted beside 400/404.
        'target without leading slash': (req(b'GET healthcheck HTTP/1.1', HOST),
                                         (200, 400, 404)),
        'asterisk target on GET': (req(b'GET * HTTP/1.1', HOST), (400, 404)),
        'empty lines before the request': (b'\r\n\r\n' + get('/'), (200, 400)),
    }
    for label, (data, codes) in lines.items():
        yield Case('smuggling', f'{label} -> {"/".join(map(str, codes))}, one answer at most',
                   data, lambda reply, codes=codes: at_most_one(reply) and (
                       not reply.answers or reply.statuses[0] in codes))
    yield Case('smuggling', 'request line with no version -> 400 or close, no HTTP/0.9 body',
               b'GET /\r\n\r\n',
               lambda reply: at_most_one(reply) and not reply.leftover.strip()
               and reply.statuses in ([], [400]))


def unread_body_cases():
    """A body the app never reads is skipped or the line closed; never parsed as a request."""
    chunk = b'%x\r\n' % len(HIDDEN) + HIDDEN + b'\r\n0\r\n\r\n'
    follow = get('/healthcheck', b'Connection: close')
    bodies = {
        'chunked body on POST / (405)': (b'POST / HTTP/1.1', b'Transfer-Encoding: chunked', chunk),
        'chunked body on GET /': (b'GET / HTTP/1.1', b'Transfer-Encoding: chunked', chunk),
        'Content-Length body on POST / (405)':
            (b'POST / HTTP/1.1', b'Content-Length: %d' % len(HIDDEN), HIDDEN),
        'Content-Length body on GET /healthcheck':
            (b'GET /healthcheck HTTP/1.1', b'Content-Length: %d' % len(HIDDEN), HIDDEN),
        'chunked body with extensions and a trailer':
            (b'POST / HTTP/1.1', b'Transfer-Encoding: chunked',
             b'%x;ext="x"\r\n' % len(HIDDEN) + HIDDEN
             + b'\r\n0\r\nX-Trailer: GET / HTTP/1.1\r\n\r\n'),
    }
    for label, (line, framing, body) in bodies.items():
        yield Case('smuggling', f'unread {label} -> never served as a request',
                   req(line, HOST, framing, body=body) + follow, body_skipped_or_closed,
                   expect=2)
    big = b'x' * (BODY_CAP + 6 * 1024)
    for label, data in (
            ('one chunk', b'%x\r\n' % len(big) + big + b'\r\n0\r\n\r\n'),
            ('1 KB chunks', b''.join(b'400\r\n' + b'x' * 1024 + b'\r\n' for _ in range(70))
             + b'0\r\n\r\n')):
        # / takes no POST: 405 before a byte of the body is read is as good as 413.
        yield Case('smuggling', f'chunked body over the 64 KiB cap in {label} -> 413, 400 '
                   'or 405', req(b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: chunked',
                                 body=data), first_in(400, 405, 413))
    yield Case('smuggling', 'Content-Length body over the 64 KiB cap -> 413 or 400',
               req(b'POST / HTTP/1.1', HOST, b'Content-Length: %d' % len(big), body=big),
               first_in(400, 413))
    for label, size_line in (('20 hex digits', b'f' * 20), ('negative', b'-5'), ('0x5', b'0x5'),
                             ('empty', b'')):
        yield Case('smuggling', f'chunk size {label} -> 400 or one answer, then close',
                   req(b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: chunked',
                       body=size_line + b'\r\nhello\r\n0\r\n\r\n' + HIDDEN),
                   one_then_close(), wait_close=True)
    yield Case('smuggling', 'chunked body with bare LF -> 400 or one answer, never two',
               req(b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: chunked',
                   body=b'5\nhello\n0\n\n' + HIDDEN), at_most_one)


def body_skipped_or_closed(reply):
    """First answer, then either the follow-up health check (Yay) or nothing; never the logo."""
    if not safe(reply) or not reply.answers:
        return False
    later = reply.answers[1:]
    if any('image' in answer.header('content-type', '') for answer in reply.answers):
        return False
    return not later or (len(later) == 1 and later[0].body == b'Yay' and reply.count == 2)


def pipelining_cases():
    """Pipelined valid requests are answered in order, each exactly once."""
    def in_order(*checks):
        def check(reply):
            return (safe(reply) and reply.count == len(checks)
                    and len(reply.answers) == len(checks)
                    and all(each(answer) for each, answer in zip(checks, reply.answers,
                                                                  strict=True)))
        return check

    def html(answer):
        return answer.status == 200 and 'text/html' in answer.header('content-type', '')

    def yay_answer(answer):
        return answer.status == 200 and answer.body == b'Yay'

    def png(answer):
        return answer.status == 200 and answer.body == LOGO

    def missing(answer):
        return answer.status == 404

    yield Case('smuggling', 'pipelined page, health check, logo -> answered in order, once each',
               get('/') + get('/healthcheck') + get(LOGO_PATH), in_order(html, yay_answer, png),
               expect=3)
    yield Case('smuggling', 'pipelined 404 then health check -> 404 then Yay',
               get('/no-such-page') + get('/healthcheck'), in_order(missing, yay_answer),
               expect=2)
    yield Case('smuggling', '50 pipelined health checks -> 50 Yays in order',
               get('/healthcheck') * 50, in_order(*[yay_answer] * 50), expect=50)
    yield Case('smuggling', 'pipelined HEAD between two GETs -> three answers, two Yays',
               get('/healthcheck') + req(b'HEAD / HTTP/1.1', HOST) + get('/healthcheck'),
               in_order(yay_answer, lambda answer: answer.status == 200, yay_answer),
               expect=3, head=frozenset({1}))
    yield Case('smuggling', 'pipelined requests ending with Connection: close -> all, then close',
               get('/healthcheck') * 2 + get('/healthcheck', b'Connection: close'),
               lambda reply: in_order(yay_answer, yay_answer, yay_answer)(reply) and reply.closed,
               expect=3, wait_close=True)


def header_cases():
    """Connection: close honoured in any spelling; no tracebacks, versions or reflections."""
    closes = {
        'close': [b'Connection: close'], 'Close': [b'Connection: Close'],
        'CLOSE': [b'Connection: CLOSE'], 'keep-alive, close': [b'Connection: keep-alive, close'],
        'close, keep-alive': [b'Connection: close, keep-alive'],
        'Upgrade, close': [b'Connection: Upgrade, close'],
        'close with spaces around': [b'Connection:   close   '],
        'close without a space': [b'Connection:close'],
        'two fields, close second': [b'Connection: keep-alive', b'Connection: close'],
        'lower-case name connection: close': [b'connection: close'],
    }
    for label, lines in closes.items():
        yield Case('headers', f'Connection: {label} -> one answer, then the server closes',
                   req(b'GET / HTTP/1.1', HOST, *lines), one_then_close(200), wait_close=True)
    for label, data, code in (
            ('on the health check', get('/healthcheck', b'Connection: close'), 200),
            ('on the logo', get(LOGO_PATH, b'Connection: close'), 200),
            ('on a 404', get('/nope', b'Connection: close'), 404),
            ('on a 405', req(b'DELETE / HTTP/1.1', HOST, b'Connection: close'), 405),
            ('HTTP/1.0 without keep-alive', req(b'GET / HTTP/1.0', HOST), 200),
            ('HTTP/1.0 with keep-alive, close', req(b'GET / HTTP/1.0', HOST,
                                                    b'Connection: keep-alive, close'), 200)):
        yield Case('headers', f'Connection: close {label} -> one answer, then close',
                   data, one_then_close(code), wait_close=True)
    yield Case('headers', 'HEAD with Connection: close -> one answer, then close',
               req(b'HEAD / HTTP/1.1', HOST, b'Connection: close'), one_then_close(200),
               wait_close=True, head=True)
    # Robustness rather than RFC: nc -N and some proxies half-close after sending. hyper
    # (http1_half_close off, and granian has no setting for it) may drop such a request:
    # the rule is that the client always gets Yay or a clean close, never a hang or garbage.
    yield Case('headers', f'request then half-close (SHUT_WR) -> Yay or a clean close, '
               f'{HALF_CLOSES} of {HALF_CLOSES} times', scenario=answered_despite_half_close)
    for label, data in ERROR_TRIGGERS.items():
        yield Case('headers', f'{label} -> no traceback or version in the body',
                   data, leaks_nothing)
    for label, data in (('page', get('/')), ('404', get('/nope')),
                        ('400', b'GARBAGE\r\n\r\n'), ('health check', get('/healthcheck'))):
        yield Case('headers', f'Server header on the {label} names no product or version',
                   data, server_header_names_no_version)
    marker = b'<script>alert(1)</script>'
    for label, data in (
            ('path', get('/%3Cscript%3Ealert(1)%3C/script%3E')),
            ('raw path', req(b'GET /' + marker + b' HTTP/1.1', HOST)),
            ('method', req(b'<script>alert(1)</script> / HTTP/1.1', HOST)),
            ('Host', req(b'GET / HTTP/1.1', b'Host: ' + marker))):
        yield Case('headers', f'HTML in the {label} is not reflected into the error page',
                   data, not_reflected(marker))


HALF_CLOSES = 10


def answered_despite_half_close(target):
    """Send GET /healthcheck and shut our write side, HALF_CLOSES times: Yay or a clean close.

    Several tries, because whether a server sees the request before the EOF is a race: one try
    would pass or fail by chance on a server that drops some.
    """
    replies = [talk(target.port, get('/healthcheck'), half_close=True)
               for _ in range(HALF_CLOSES)]
    answered = sum(yay(reply) for reply in replies)
    bad = [reply for reply in replies
           if not yay(reply) and not (reply.answers == [] and reply.ending == 'closed')]
    return Outcome(not bad, f'{answered} of {HALF_CLOSES} answered, the rest closed cleanly'
                   + (f'; a bad one: {bad[0].summary()}' if bad else ''))


ERROR_TRIGGERS = {
    '404 unknown page': get('/no-such-page'),
    '405 POST /': req(b'POST / HTTP/1.1', HOST, b'Content-Length: 0'),
    '405 DELETE /healthcheck': req(b'DELETE /healthcheck HTTP/1.1', HOST),
    '400 garbage request line': b'GARBAGE\r\n\r\n',
    '400 missing Host': req(b'GET / HTTP/1.1'),
    '400 broken chunked body': req(b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: chunked',
                                   body=b'zz\r\n'),
    '413 body over the cap': req(b'POST / HTTP/1.1', HOST, b'Content-Length: 99999999'),
    '414 20 KB request line': req(b'GET /' + b'a' * 20000 + b' HTTP/1.1', HOST),
    '431 20 KB header': req(b'GET / HTTP/1.1', HOST, b'X-Big: ' + b'a' * 20000),
    '431 600 headers': req(b'GET / HTTP/1.1', HOST,
                           *[b'X-%d: %s' % (i, b'v' * 40) for i in range(600)]),
    '505 HTTP/2.0': req(b'GET / HTTP/2.0', HOST),
    '416 unsatisfiable range': ranged(LOGO_PATH, b'Range: bytes=99999-'),
    '404 bad percent-encoding /%': get('/%'),
    '404 non-UTF-8 path /%ff': get('/%ff'),
    'unknown method FOO': req(b'FOO / HTTP/1.1', HOST),
    'unknown transfer coding': req(b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: gzip',
                                   body=b'0\r\n\r\n'),
}


def security_cases():
    """Every answer the server produces carries nosniff and a Content-Security-Policy."""
    now = formatdate(usegmt=True).encode()
    ordinary = {
        '200 page': get('/'), '200 health check': get('/healthcheck'), '200 logo': get(LOGO_PATH),
        '200 site.css': get(CSS_PATH), '200 favicon': get('/favicon.ico'),
        '200 HEAD page': req(b'HEAD / HTTP/1.1', HOST),
        '206 range of the logo': ranged(LOGO_PATH, b'Range: bytes=0-9'),
        '304 logo not modified': ranged(LOGO_PATH, b'If-Modified-Since: ' + now),
        '200 query string': get('/?utm_source=x'),
    }
    for label, data in {**ordinary, **ERROR_TRIGGERS}.items():
        may_close = label.startswith(('400 garbage', 'unknown transfer'))
        yield Case('security', f'{label} -> nosniff and CSP on every answer', data,
                   security_headers(optional=may_close), head=label.startswith('200 HEAD'))
    yield Case('security', 'pipelined 200, 404, 405 -> nosniff and CSP on each answer',
               get('/') + get('/nope') + req(b'DELETE / HTTP/1.1', HOST),
               lambda reply: reply.count == 3 and security_headers()(reply), expect=3)


def query_cases():
    """Query strings never turn a page into a 404 or 5xx."""
    long_query = '/?q=' + 'x' * 4096
    cases = {
        '/?utm_source=x&fbclid=y&gclid=z': page,
        '/?utm_source=newsletter&utm_medium=email&utm_campaign=launch': page,
        '/?': page, '/?a': page, '/?=': page, '/?&&&&': page,
        '/?a=1;b=2': page,
    }
    for path, check in cases.items():
        yield Case('query', f'GET {path} -> 200 with the page', get(path), check)
    for path in ('/?a=1&a=2', '/?%ZZ', '/?%', '/?a=%00', '/?a=%FF%FE', '/?a=' + 'x' * 8000,
                 long_query, '/?' + '&'.join(f'p{i}=1' for i in range(1000)),
                 '/?a[]=1&a[b]=2'):
        label = path if len(path) < 40 else f'{path[:20]}... ({len(path)} chars)'
        yield Case('query', f'GET {label} -> 200 page or 414, never 404/5xx', get(path),
                   lambda reply: page(reply) or first_in(414)(reply))
    yield Case('query', 'GET /healthcheck?ts=1 -> 200 Yay', get('/healthcheck?ts=1'), yay)
    yield Case('query', 'GET /healthcheck?format=json&x=1 -> 200 Yay',
               get('/healthcheck?format=json&x=1'), yay)
    yield Case('query', 'GET /logo.png?v=123 -> 200 with the logo', get(LOGO_PATH + '?v=123'),
               full_body(LOGO))
    yield Case('query', 'GET /static/site.css?v=1 -> 200 with the stylesheet',
               get(CSS_PATH + '?v=1'), full_body(CSS))
    yield Case('query', 'HEAD /?utm_source=x -> 200', req(b'HEAD /?utm_source=x HTTP/1.1', HOST),
               first_in(200), head=True)
    yield Case('query', 'GET /?callback=<script> -> the query is not reflected',
               get('/?callback=%3Cscript%3Ealert(1)'), not_reflected(b'alert(1)'))


def path_cases():
    """Traversal never returns a server file; long paths cost little CPU (slow)."""
    traversals = [
        '/static/../landing.py', '/static/%2e%2e/landing.py', '/static/..%2flanding.py',
        '/static/%2e%2e%2flanding.py', '/static/..%5clanding.py', '/static/..\\landing.py',
        '/static/....//landing.py', '/static/.%2e/landing.py', '/static/%252e%252e/landing.py',
        '/static/..;/landing.py', '/static/%c0%ae%c0%ae/landing.py', '/static/%00/../landing.py',
        '/static/site.css%00../../landing.py', '//etc/passwd', '/static//etc/passwd',
        '/static/../../../../etc/passwd', '/static/..%2f..%2f..%2f..%2fetc%2fpasswd',
        '/static/%2e%2e/prod.conf', '/static/../prod.conf', '/static/../requirements.txt',
        '/logo.png/../landing.py', '/static/./../landing.py', '/static/site.css/../../landing.py',
        '/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd', '/static/%2E%2E/landing.py',
        '/static/..%252flanding.py', '/%2e%2e/landing.py', '/static/.../landing.py',
        '/static/%2fetc%2fpasswd', '/static/../healthcheck.py',
    ]
    for path in traversals:
        yield Case('paths', f'GET {path} -> no server file in the answer',
                   req(b'GET ' + path.encode() + b' HTTP/1.1', HOST), traversal_refused)
    for label, data in (
            ('raw NUL', req(b'GET /static/\x00../landing.py HTTP/1.1', HOST)),
            ('absolute-form', req(b'GET http://localhost/static/../landing.py HTTP/1.1', HOST)),
            ('absolute-form file:', req(b'GET file:///etc/passwd HTTP/1.1', HOST)),
            ('raw backslashes', req(b'GET /static\\..\\landing.py HTTP/1.1', HOST))):
        yield Case('paths', f'traversal with {label} -> no server file in the answer',
                   data, traversal_refused)
    for label, (path, codes) in PATH_COSTS.items():
        shown = '/'.join(map(str, codes))
        yield Case('paths', f'{label} -> {shown} for < 10 ms of server CPU',
                   scenario=lambda target, path=path, codes=codes: path_cost(target, path, codes),
                   slow=True)


def traversal_refused(reply):
    """Never a server file's bytes, never 5xx, and no 200 that is not a shipped static file."""
    first = reply.first()
    if not safe(reply) or reply.count > 1:
        return False
    return first is None or first.status != 200 or first.body in (LOGO, CSS)


# label -> (path, acceptable statuses); a run of slashes may also be folded into the page.
PATH_COSTS = {
    '16 KB path of 8,000 /a segments': ('/a' * 8000, (404, 414)),
    '16 KB of %2e%2e/': ('/' + '%2e%2e/' * 2300, (400, 404, 414)),
    '16 KB of /static/a/a/...': ('/static' + '/a' * 7990, (404, 414)),
    '16 KB of %2f': ('/' + '%2f' * 5300, (400, 404, 414)),
    '16 KB of ;a path parameters': ('/' + ';a' * 8000, (400, 404, 414)),
    '16 KB of slashes': ('/' * 16000, (200, 301, 308, 400, 404, 414)),
}


def path_cost(target, path, codes):
    """Send one long-path request; the server tree's CPU for it must stay under 10 ms."""
    if not wait_for(target.healthy, 10):
        return Outcome(False, 'server not healthy before the measurement')
    before = tree_cpu(target.pid)
    reply = talk(target.port, get(path), timeout=10)
    spent = tree_cpu(target.pid) - before
    passed = spent < 0.010 and first_in(*codes)(reply)
    return Outcome(passed, f'server CPU {spent * 1000:.1f} ms; {reply.summary()}')


# --------------------------------------------------------------------------------------------
# Scenarios: memory, slow clients, descriptor exhaustion


WORST_REQUESTS = {
    '5000 ranges 0- on the logo': ranged(LOGO_PATH, b'Range: bytes=' + b','.join([b'0-'] * 5000)),
    '1500 one-byte ranges': ranged(LOGO_PATH, b'Range: bytes=' + b','.join(
        b'%d-%d' % (i, i) for i in range(0, 3000, 2))),
    '600 headers of 25 bytes': req(b'GET / HTTP/1.1', HOST,
                                   *[b'X-%d: %s' % (i, b'v' * 20) for i in range(600)]),
    'chunked body at the cap': req(b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: chunked',
                                   body=b'%x\r\n' % BODY_CAP + b'x' * BODY_CAP + b'\r\n0\r\n\r\n'),
}
MEMORY_BOUND_KB = 10 * 1024


def peak_memory_under_worst_requests(target):
    """Peak RSS growth of the server tree (VmHWM) for each worst request, one at a time."""
    growths = {}
    for label, data in WORST_REQUESTS.items():
        wait_for(target.healthy, 10)
        exact = reset_peaks(target.pid)  # peak := now, so the next peak is this request's
        before = tree_kb(target.pid, 'VmRSS' if exact else 'VmHWM')
        talk(target.port, data, limit=256 * 1024 * 1024, timeout=30)
        growths[label] = tree_kb(target.pid, 'VmHWM') - before
    worst = max(growths, key=growths.get)
    detail = ', '.join(f'{label}: +{kb / 1024:.1f} MB' for label, kb in growths.items())
    return Outcome(growths[worst] < MEMORY_BOUND_KB,
                   f'worst {worst}; {detail}' + ('' if exact else ' (VmHWM not resettable)'))


TRICKLERS, NON_READERS, PIPELINED = 20, 20, 200


def slow_clients(target):
    """20 clients trickling a header byte a second, 20 never reading: a probe answers in < 1 s."""
    raise_open_files()
    def trickler():
        sock = connect(target.port)
        sock.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ')
        return sock

    paths = iter([LOGO_PATH, '/'] * NON_READERS)
    with Sockets() as tricklers, Sockets() as stuck:
        open_many(TRICKLERS, trickler, tricklers)
        open_many(NON_READERS, lambda: non_reader(target.port, next(paths)), stuck)
        if len(tricklers) < TRICKLERS or len(stuck) < NON_READERS:
            return Outcome(False, f'set-up: {len(tricklers)} tricklers, {len(stuck)} non-readers')
        probes = trickle_and_probe(target, tricklers, ticks=5, probe_at=(2, 4))
    recovered = wait_for(target.healthy, 20)
    passed = all(seconds is not None and seconds < 1 for seconds in probes)
    return Outcome(passed, f'probe seconds while held: {probes}; recovered after: {recovered}')


def non_reader(port, path, pipelined=None):
    """A client with a tiny receive buffer that pipelines requests and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: small window
    sock.settimeout(2)
    try:
        sock.connect(('127.0.0.1', port))
        sock.sendall(get(path) * (pipelined or PIPELINED))
    except OSError:
        pass  # a server that refuses the flood is doing its job
    return sock


def trickle_and_probe(target, tricklers, ticks, probe_at):
    """Send one byte per trickler each second for `ticks` s; time a fresh probe at `probe_at`."""
    probes = []
    selector = selectors.DefaultSelector()  # epoll: descriptors may be past select()'s 1024
    for sock in tricklers:
        selector.register(sock, selectors.EVENT_READ)
    try:
        for tick in range(ticks):
            tick_end = time.monotonic() + 1
            for sock in tricklers:
                with contextlib.suppress(OSError):  # the server cut this one off: fine
                    sock.send(b'x')
            if tick in probe_at:
                probes.append(target.probe_seconds(timeout=2))
            # Wait out the second (the trickle rate is the attack), waking on server closes.
            for _ in range(100):
                left = tick_end - time.monotonic()
                if left <= 0:
                    break
                selector.select(timeout=left)
                left = tick_end - time.monotonic()
                if left > 0:
                    time.sleep(min(left, 0.1))  # readable sockets stay readable: do not spin
    finally:
        selector.close()
    return probes


def silent_and_idle(target, count=1000):
    """1,000 silent and 1,000 idle keep-alive connections held: a fresh probe answers in < 1 s."""
    soft = raise_open_files()
    if soft < 2 * count + 200:
        return Outcome(False, f'open-files limit {soft} too low for {2 * count} connections')
    deadline = time.monotonic() + 60
    with Sockets() as held:
        open_many(count, lambda: connect(target.port), held)
        idle = 0
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            sock = connect(target.port)
            held.append(sock)
            try:
                sock.sendall(get('/healthcheck'))
                idle += read_response(sock).status == 200
            except (OSError, ValueError, IndexError):
                pass  # counted as not set up
        if idle < count:
            return Outcome(False, f'only {idle} of {count} keep-alive set-ups answered in 60 s')
        held_count, seconds = len(held), target.probe_seconds(timeout=3)
    wait_for(target.healthy, 20)
    return Outcome(seconds is not None and seconds < 1,
                   f'probe with {held_count} connections held: {seconds} s')


EXHAUSTION_FILES, EXHAUSTION_CONNECTIONS, WINDOW = 256, 400, 3.0
_exhaustion_results = {}


def exhaustion_run(target):
    """Once per target: a server limited to 256 files, 400 silent connections, then released.

    Returns a dict with cpu_share, stderr_lines, recovered_in and alive; the three cases read it.
    """
    key = (target.app_dir, target.python)
    if key in _exhaustion_results:
        return _exhaustion_results[key]
    workdir = os.path.join(target.workdir, 'descriptor-exhaustion')
    os.makedirs(workdir, exist_ok=True)
    raise_open_files()
    server = AppProcess(target.app_dir, workdir, nofile=EXHAUSTION_FILES, python=target.python)
    result = {'error': None}
    try:
        server.wait_ready()
        with Sockets() as held:
            result['held'] = open_many(EXHAUSTION_CONNECTIONS,
                                       lambda: connect(server.port, timeout=2), held)
            cpu, lines = tree_cpu(server.pid), server.stderr_lines()
            time.sleep(WINDOW)  # the measurement window itself; nothing to poll
            result['cpu_share'] = (tree_cpu(server.pid) - cpu) / WINDOW
            result['stderr_lines'] = server.stderr_lines() - lines
        released = time.monotonic()
        result['recovered_in'] = (time.monotonic() - released
                                  if wait_for(server.healthy, 5) else None)
        result['alive'] = server.proc.poll() is None
    except (OSError, RuntimeError) as error:
        result['error'] = repr(error)
    finally:
        server.stop()
    _exhaustion_results[key] = result
    return result


def exhaustion_check(predicate, describe):
    """A scenario reading one figure of the shared exhaustion run."""
    def scenario(target):
        result = exhaustion_run(target)
        if result['error']:
            return Outcome(False, f'scenario failed: {result["error"]}')
        return Outcome(predicate(result), f'{describe(result)}; held {result["held"]} '
                                          f'connections to a 256-file server')
    return scenario


def scenario_cases():
    """The timing scenarios: slow clients and descriptor exhaustion (all slow)."""
    yield Case('slow-clients', '20 trickling + 20 non-reading clients, THREADS=10 -> '
               'fresh /healthcheck in < 1 s', scenario=slow_clients, slow=True)
    yield Case('slow-clients', '1,000 silent + 1,000 idle keep-alive connections -> '
               'fresh /healthcheck in < 1 s', scenario=silent_and_idle, slow=True)
    yield Case('descriptors', '400 connections to a 256-file server -> server CPU < 5 % of a core',
               scenario=exhaustion_check(lambda r: r['cpu_share'] < 0.05,
                                         lambda r: f'CPU {r["cpu_share"]:.1%} of a core'),
               slow=True)
    yield Case('descriptors', '400 connections to a 256-file server -> stderr <= ~1 line/s',
               scenario=exhaustion_check(lambda r: r['stderr_lines'] <= WINDOW + 1,
                                         lambda r: f'{r["stderr_lines"]} lines in {WINDOW} s'),
               slow=True)
    yield Case('descriptors', 'connections released -> /healthcheck 200 within 5 s, still running',
               scenario=exhaustion_check(lambda r: r['recovered_in'] is not None and r['alive'],
                                         lambda r: f'recovered in {r["recovered_in"]} s, '
                                                   f'alive={r["alive"]}'),
               slow=True)


# --------------------------------------------------------------------------------------------
# Issue 17: what a request costs (header CPU, bodies, static files, memory), and tracebacks


CPU_BOUND = 0.050   # s of server CPU one request may cost, whatever its headers or body
PROBE_MEDIAN = 0.100  # s: a fresh /healthcheck's median while 4 clients repeat the worst request
ATTACKERS = 4


def _encoded_words(count):
    """`count` RFC 2047 words in one value, each opened and never closed."""
    return b'=?a?q?' * count


# label -> request. Each is the worst of its kind within hyper's 16 KiB header buffer.
WORST_HEADERS = {
    'Accept of 8,000 `,"` on /healthcheck': get('/healthcheck', b'Accept: ' + b',"' * 8000),
    'Content-Type of 8,000 `,"` on a GET of /': get('/', b'Content-Type: a' + b',"' * 8000),
    'Content-Type of 8,000 `,"` on a GET of a 404': get('/nope', b'Content-Type: a' + b',"' * 8000),
    'Accept-Language of 15,000 commas': get('/', b'Accept-Language: ' + b',' * 15000),
    'Accept-Encoding of `;q=` x 5,000': get('/', b'Accept-Encoding: ' + b';q=' * 5000),
    'If-None-Match of 8,000 `,"` on the logo': get(LOGO_PATH, b'If-None-Match: ' + b',"' * 8000),
    'Cookie of 15,000 backslashes (CVE-2024-7592)': get('/', b'Cookie: a="' + b'\\' * 15000 + b'"'),
    'Cookie of 3,000 pairs': get('/', b'Cookie: ' + b'a=b; ' * 3000),
    'User-Agent of 2,600 open encoded words': get(
        '/healthcheck', b'User-Agent: ' + _encoded_words(2600)),
    '500 headers each one valid encoded word': get('/healthcheck', *[
        b'X-%d: =?utf-8?q?a?=' % i for i in range(500)]),
    '2,000 tiny headers': get('/', *[b'X%d:' % i for i in range(2000)]),
    'Content-Disposition of 8,000 `;"`': get('/', b'Content-Disposition: a' + b';"' * 8000),
    'TE of 8,000 `,"`': get('/', b'TE: ' + b',"' * 8000),
}
_PART = b'--x\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\na\r\n'
_PARTS = _PART * 950 + b'--x--\r\n'  # 63 KB: under the body cap
WORST_BODIES = {
    'multipart body of 950 file parts to a 404': req(
        b'POST /nope HTTP/1.1', HOST, b'Content-Type: multipart/form-data; boundary=x',
        b'Content-Length: %d' % len(_PARTS), body=_PARTS),
    'urlencoded body of 30,000 fields to a 404': req(
        b'POST /nope HTTP/1.1', HOST, b'Content-Type: application/x-www-form-urlencoded',
        b'Content-Length: %d' % (len(b'a&') * 30000), body=b'a&' * 30000),
}


def request_cost(target, data):
    """Server CPU for one request, the least of three tries (other threads' noise adds only)."""
    costs, reply = [], None
    for _ in range(3):
        wait_for(target.healthy, 10)
        before = tree_cpu(target.pid)
        reply = talk(target.port, data, timeout=10)
        costs.append(tree_cpu(target.pid) - before)
    return min(costs), reply


def cheap(target, data):
    """One request costs the server < 50 ms of CPU and gets a safe answer (no 5xx, no leak)."""
    spent, reply = request_cost(target, data)
    passed = spent < CPU_BOUND and safe(reply) and reply.ending != 'timeout'
    return Outcome(passed, f'server CPU {spent * 1000:.1f} ms; {reply.summary()}')


def costliest(target):
    """The worst header or body request for this server: the one costing it the most CPU."""
    costs = {label: request_cost(target, data)[0]
             for label, data in {**WORST_HEADERS, **WORST_BODIES}.items()}
    return max(costs, key=costs.get), costs


def probe_median_under_attack(target, data=None, seconds=6):
    """4 clients repeat the costliest request; a fresh /healthcheck's median must be < 100 ms."""
    import threading  # only this scenario needs threads
    label = 'given request'
    if data is None:
        label, _ = costliest(target)
        data = {**WORST_HEADERS, **WORST_BODIES}[label]
    stop = threading.Event()

    def attack():
        for _ in range(100_000):
            if stop.is_set():
                return
            with contextlib.suppress(OSError):
                talk(target.port, data, timeout=5, settle=0)

    attackers = [threading.Thread(target=attack, daemon=True) for _ in range(ATTACKERS)]
    for thread in attackers:
        thread.start()
    probes = []
    end = time.monotonic() + seconds
    try:
        for _ in range(1000):
            if time.monotonic() > end:
                break
            taken = target.probe_seconds(timeout=5)
            probes.append(taken if taken is not None else 5.0)
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in attackers:
            thread.join(10)
    probes.sort()
    median = probes[len(probes) // 2]
    return Outcome(median < PROBE_MEDIAN,
                   f'{label}: median fresh probe {median * 1000:.0f} ms over {len(probes)} '
                   f'probes, worst {probes[-1] * 1000:.0f} ms')


def cost_cases():
    """No request costs more than 50 ms of server CPU; 4 attackers leave the probe fast."""
    for label, data in {**WORST_HEADERS, **WORST_BODIES}.items():
        yield Case('cost', f'{label} -> < 50 ms of server CPU, no 5xx',
                   scenario=lambda target, data=data: cheap(target, data), slow=True)
    yield Case('cost', f'{ATTACKERS} clients repeating the costliest request -> fresh '
               '/healthcheck median < 100 ms', scenario=probe_median_under_attack, slow=True)


# Headers CherryPy read before the app's config applied (tracebacks on, its own error page).
BEFORE_CONFIG = {
    'User-Agent: =?x?q?a?= (unknown charset)': b'User-Agent: =?x?q?a?=',
    'Referer: a =?utf-8?q?b?= (mixed atoms)': b'Referer: a =?utf-8?q?b?=',
    'X-A: =?utf-8?b?#?= (bad base64)': b'X-A: =?utf-8?b?#?=',
    'X-A: =?utf-8?q?=FF?= (not UTF-8)': b'X-A: =?utf-8?q?=FF?=',
    'X-A: =?utf-7?q?+AGE?= (odd charset)': b'X-A: =?utf-7?q?+AGE?=',
    'X-A: =?utf-16?q?a?= (odd length)': b'X-A: =?utf-16?q?a?=',
    'Cookie: [a=b (illegal key)': b'Cookie: [a=b',
    'Cookie: a="\\x (broken quote)': b'Cookie: a="\\x',
    'Accept: a;q=x (bad q)': b'Accept: a;q=x',
}


def our_error_page(reply):
    """No 5xx, no traceback or version, and the security headers on the answer."""
    return safe(reply) and security_headers()(reply) and reply.count == 1


def traceback_cases():
    """Whatever a header holds, on any path: no traceback, version or bare 500."""
    for label, line in BEFORE_CONFIG.items():
        for path in ('/healthcheck', '/', LOGO_PATH, '/nope'):
            yield Case('tracebacks', f'{label} on {path} -> our page, no traceback',
                       get(path, line), our_error_page)


def slow_upload_answered(reply):
    """An answer (never a wait for the body) that is a 4xx, safe."""
    first = reply.first()
    return bool(first) and 400 <= first.status < 500 and safe(reply)


def body_cases():
    """Paths that take no body answer without reading it: an incomplete body is no wait."""
    for path in ('/nope', '/static/x', LOGO_PATH, '/', '/healthcheck', '/static/site.css'):
        for kind in (b'application/x-www-form-urlencoded', b'multipart/form-data; boundary=x'):
            data = req(b'POST ' + path.encode() + b' HTTP/1.1', HOST, b'Content-Type: ' + kind,
                       b'Content-Length: 60000', body=b'a=1&b=2')
            yield Case('bodies', f'POST {path} ({kind.split(b";")[0].decode()}), 7 of 60,000 '
                       'bytes sent -> 4xx at once, the body never waited for', data,
                       slow_upload_answered)


# --- a copy of the app with a big file, dotfiles and symlinks in static/ (scenarios below)

BIG_FILE = 4 * 1024 * 1024
DOT_ENTRIES = {'.env': b'SECRET=1\n', '.git/config': b'[core]\nsecret = 1\n',
               'sub/.hidden': b'hidden\n', '.well/inner.txt': b'dot folder\n'}
_copies = {}


def decorated_copy(target):
    """Once per target: its app copied, static/ given big.bin, dotfiles and symlinks; started."""
    import shutil  # only the copy needs it
    key = (target.app_dir, target.python)
    if key in _copies and _copies[key].proc.poll() is None:
        return _copies[key]
    # Named app/ under the pytest folder: coverage counts its lines as the app's (pyproject).
    app = os.path.join(target.workdir, 'app')
    if not os.path.exists(app):
        shutil.copytree(target.app_dir, app, symlinks=True, ignore=shutil.ignore_patterns(
            '.venv', '.git', 'tests', 'bench', 'docs', 'deploy', '__pycache__', 'test-output'))
        static = os.path.join(app, 'static')
        with open(os.path.join(static, 'big.bin'), 'wb') as handle:
            handle.write(os.urandom(BIG_FILE))
        for name, content in DOT_ENTRIES.items():
            os.makedirs(os.path.dirname(os.path.join(static, name)), exist_ok=True)
            with open(os.path.join(static, name), 'wb') as handle:
                handle.write(content)
        os.symlink('../landing.py', os.path.join(static, 'leak.txt'))
        os.symlink('/etc/passwd', os.path.join(static, 'passwd.txt'))
        os.symlink('..', os.path.join(static, 'up'))
        os.symlink('site.css', os.path.join(static, 'inside.css'))
    workdir = os.path.join(target.workdir, 'decorated-run')
    os.makedirs(workdir, exist_ok=True)
    server = AppProcess(app, workdir, python=target.python, env={'THREADS': '10'})
    server.wait_ready()
    _copies[key] = server
    return server


def stop_copies():
    """Stop every decorated copy started (by PID)."""
    for server in _copies.values():
        server.stop()
    _copies.clear()


def slow_reader(port, path):
    """A client asking for `path` with a tiny receive window, then never reading."""
    return non_reader(port, path, pipelined=1)


def slow_uploader(port, path):
    """A client sending a POST's head and 10 of 60,000 body bytes, then nothing."""
    sock = connect(port)
    sock.sendall(req(b'POST ' + path.encode() + b' HTTP/1.1', HOST,
                     b'Content-Type: application/x-www-form-urlencoded',
                     b'Content-Length: 60000', body=b'a=' + b'x' * 8))
    return sock


UPLOADERS, READERS = 20, 20


def slow_everything(target):
    """THREADS=10: 20 slow uploaders, 20 slow readers of a 4 MB file, tricklers, non-readers.

    A fresh /healthcheck must answer in < 1 s throughout.
    """
    raise_open_files()
    server = decorated_copy(target)
    paths = ['/nope', '/static/x', LOGO_PATH, '/', '/static/site.css']
    with Sockets() as uploaders, Sockets() as readers, Sockets() as tricklers, \
            Sockets() as stuck:
        open_many(UPLOADERS, lambda: slow_uploader(server.port, paths[len(uploaders) % 5]),
                  uploaders)
        open_many(READERS, lambda: slow_reader(server.port, '/static/big.bin'), readers)

        def trickler():
            sock = connect(server.port)
            sock.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ')
            return sock

        open_many(TRICKLERS, trickler, tricklers)
        open_many(NON_READERS, lambda: non_reader(server.port, LOGO_PATH), stuck)
        probes = trickle_and_probe(server, tricklers, ticks=4, probe_at=(1, 3))
    recovered = wait_for(server.healthy, 20)
    passed = all(seconds is not None and seconds < 1 for seconds in probes)
    return Outcome(passed, f'probe seconds while held: {probes}; recovered after: {recovered}')


def big_file_whole(target):
    """The 4 MB static file comes back whole and exact."""
    server = decorated_copy(target)
    with open(os.path.join(server.app_dir, 'static', 'big.bin'), 'rb') as handle:
        content = handle.read()
    reply = talk(server.port, get('/static/big.bin'), limit=BIG_FILE + 4096, timeout=20)
    return Outcome(full_body(content)(reply), reply.summary())


# Every way to name a dot entry or a symlink leaving static/, in any encoding.
STATIC_ESCAPES = [
    '/static/.env', '/static/%2eenv', '/static/%2Eenv', '/static/%252eenv', '/static/.git/config',
    '/static/%2egit/config', '/static/%252egit%252fconfig', '/static/.git%2fconfig',
    '/static/sub/.hidden', '/static/sub/%2ehidden', '/static/.well/inner.txt',
    '/static/%2ewell/inner.txt', '/static/sub/..%2f.env', '/static/leak.txt',
    '/static/%6ceak.txt', '/static/passwd.txt', '/static/up/landing.py', '/static/up/prod.conf',
    '/static/up%2flanding.py', '/static/\\.env', '/static/%5c.env',
]


def static_refused(path):
    """A scenario: GET `path` on the decorated copy gets no secret, no source, no dot entry."""
    def scenario(target):
        server = decorated_copy(target)
        reply = talk(server.port, get(path))
        secrets = [content for content in DOT_ENTRIES.values()] + [b'root:']
        first = reply.first()
        passed = (safe(reply) and first is not None and first.status in (400, 403, 404)
                  and not any(secret in reply.raw for secret in secrets))
        return Outcome(passed, reply.summary())
    return scenario


def static_inside_link(target):
    """A symlink whose real path stays in static/ is still served."""
    server = decorated_copy(target)
    reply = talk(server.port, get('/static/inside.css'))
    return Outcome(full_body(CSS)(reply), reply.summary())


def static_cases():
    """static/ serves only what is in it: no dot entry, no symlink out, in any encoding."""
    for path in STATIC_ESCAPES:
        yield Case('static', f'GET {path} -> no dotfile, dot-folder or file outside static/',
                   scenario=static_refused(path), slow=True)
    yield Case('static', 'a symlink inside static/ to a file in it -> still served',
               scenario=static_inside_link, slow=True)
    yield Case('static', 'the 4 MB static file -> whole and exact', scenario=big_file_whole,
               slow=True)
    yield Case('slow-clients', f'THREADS=10: {UPLOADERS} slow uploaders + {READERS} slow readers '
               f'of a 4 MB file + {TRICKLERS} tricklers + {NON_READERS} non-readers -> fresh '
               '/healthcheck < 1 s', scenario=slow_everything, slow=True)


# --- memory per connection

HEADER_HELD = 15 * 1024   # bytes of unfinished headers each connection sends
MEMORY_CONNECTIONS = 300  # connections per measurement (a reduced scale of the budget's)
# The per-connection budget docs/load-balancer.md derives MAX_CONNECTIONS from (kB).
CONNECTION_BUDGET_KB = 48


def held_headers(port):
    """A client that sends 15 KB of headers and never ends them."""
    sock = connect(port)
    sock.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: ' + b'a' * HEADER_HELD)
    return sock


def memory_per_connection(target, make, count=MEMORY_CONNECTIONS):
    """Worker-tree RSS growth (kB) per connection of `count` made by make(port)."""
    raise_open_files()
    wait_for(target.healthy, 10)
    before = tree_kb(target.pid, 'VmRSS')
    with Sockets() as held:
        open_many(count, lambda: make(target.port), held)
        # Let the server take in what each sent: poll until the growth stops.
        last, grown = -1, 0
        for _ in range(40):
            time.sleep(0.25)
            grown = tree_kb(target.pid, 'VmRSS') - before
            if grown == last:
                break
            last = grown
        opened = len(held)
    return grown / max(opened, 1), opened


def memory_case(make, label):
    """A scenario: per-connection RSS growth must stay within CONNECTION_BUDGET_KB."""
    def scenario(target):
        per, opened = memory_per_connection(target, make)
        wait_for(target.healthy, 20)
        return Outcome(opened == MEMORY_CONNECTIONS and per <= CONNECTION_BUDGET_KB,
                       f'{per:.1f} kB RSS per connection over {opened} {label}')
    return scenario


# Readers that stop reading a file bigger than the one-piece size: what each may cost (kB).
BIG_READERS, BIG_READER_BUDGET_KB = 100, 1024


def big_file_non_readers(target):
    """Clients that stop reading the 4 MB file cost well under a MiB each, not the file."""
    server = decorated_copy(target)
    per, opened = memory_per_connection(
        server, lambda port: slow_reader(port, '/static/big.bin'), count=BIG_READERS)
    wait_for(server.healthy, 20)
    return Outcome(opened == BIG_READERS and per <= BIG_READER_BUDGET_KB,
                   f'{per:.1f} kB RSS per connection over {opened} readers of the 4 MB file')


def memory_cases():
    """What one connection costs the server's memory, at a reduced scale."""
    yield Case('memory', f'{MEMORY_CONNECTIONS} connections holding 15 KB of unfinished headers '
               f'-> <= {CONNECTION_BUDGET_KB} kB RSS each', scenario=memory_case(
                   held_headers, 'with unfinished headers'), slow=True)
    yield Case('memory', f'{MEMORY_CONNECTIONS} clients not reading the page -> '
               f'<= {CONNECTION_BUDGET_KB} kB RSS each', scenario=memory_case(
                   lambda port: non_reader(port, '/', pipelined=1), 'not reading'), slow=True)
    yield Case('memory', f'{MEMORY_CONNECTIONS} clients not reading the logo -> '
               f'<= {CONNECTION_BUDGET_KB} kB RSS each', scenario=memory_case(
                   lambda port: non_reader(port, LOGO_PATH, pipelined=1), 'not reading'),
               slow=True)
    yield Case('memory', f'{MEMORY_CONNECTIONS} slow uploads to a 404 -> '
               f'<= {CONNECTION_BUDGET_KB} kB RSS each', scenario=memory_case(
                   lambda port: slow_uploader(port, '/nope'), 'slow uploads'), slow=True)
    yield Case('memory', f'{BIG_READERS} clients not reading a 4 MB static file -> '
               f'<= {BIG_READER_BUDGET_KB} kB RSS each, not the file held whole',
               scenario=big_file_non_readers, slow=True)


def build():
    """Every case, in table order; names are unique."""
    corpus = [*range_cases(), *smuggling_cases(), *header_cases(), *security_cases(),
              *query_cases(), *path_cases(), *scenario_cases(), *cost_cases(),
              *traceback_cases(), *body_cases(), *static_cases(), *memory_cases()]
    ids = [case.id for case in corpus]
    duplicates = {each for each in ids if ids.count(each) > 1}
    assert not duplicates, duplicates
    return corpus


CORPUS = build()


def cases(klass=None, slow=None):
    """The cases of one class (or all), optionally only slow or only quick ones.

    Quick cases come first: the slow scenarios load the server, the quick ones want it calm.
    """
    chosen = [case for case in CORPUS
              if (klass is None or case.klass == klass) and (slow is None or case.slow == slow)]
    return sorted(chosen, key=lambda case: case.slow)
