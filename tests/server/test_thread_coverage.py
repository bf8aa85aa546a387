"""Coverage sees what runs in the server's threads, so the 100 % rule of ./test.sh is honest.

granian runs each request in a thread its Rust runtime starts, where coverage's per-thread
tracer is never installed; serving.workers.traced_in_every_thread hands it over. Here an app of the
test's own, with a handler that only a real request reaches, is served by a real process under
coverage, and the handler's lines must be in the data.
"""
import _thread
import inspect
import os
import subprocess
import sys
import textwrap
import threading

import coverage

import serving.startup
import serving.workers
from conftest import ROOT, free_port, request, wait_until

# The handler only a request runs; its body line is what coverage must see.
APP = textwrap.dedent('''\
    """An app whose one handler only a real request reaches."""
    import os
    import sys

    sys.path.insert(0, {root!r})

    import cherrypy

    import serving.startup


    class Root:
        """One page."""

        @cherrypy.expose
        def index(self):
            """Answer what only this line makes."""
            return 'reached by a request'  # the line coverage must see


    cherrypy.config.update({{'server.thread_pool': 4}})

    if __name__ == '__main__':
        serving.startup.serve(
            Root(), os.path.join(os.path.dirname(os.path.abspath(__file__)), 'app.conf'))
''')


def measured_lines(folder):
    """Combine the coverage data files in `folder`; return {file name: executed lines}."""
    measured = coverage.Coverage(data_file=str(folder / '.coverage'))
    measured.combine(data_paths=[str(folder)], keep=True)
    data = measured.get_data()
    return {os.path.basename(path): data.lines(path) for path in data.measured_files()}


def test_a_handler_only_a_real_request_reaches_is_measured(tmp_path):
    """Served by granian under coverage, the handler's line counts as run once it answered."""
    (tmp_path / 'app.py').write_text(APP.format(root=ROOT))
    (tmp_path / 'app.conf').write_text('[/]\n')
    (tmp_path / 'coverage.ini').write_text(textwrap.dedent(f'''\
        [run]
        branch = true
        parallel = true
        patch = fork, _exit
        data_file = {tmp_path / '.coverage'}
        include = {tmp_path / 'app.py'}
        '''))
    port = free_port()
    # This test's own coverage run: none of the suite's measuring reaches the child.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith('COVERAGE_')}
    env.update(HOST='127.0.0.1', PORT=str(port), METRICS_PORT='0')
    process = subprocess.Popen(
        [sys.executable, '-m', 'coverage', 'run', f'--rcfile={tmp_path / "coverage.ini"}',
         str(tmp_path / 'app.py')], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body = wait_until(lambda: request(port, 'GET', '/', timeout=2)[2],
                          what='the app under coverage answering')
        assert body == b'reached by a request'
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors.decode()

    handler_line = next(number for number, line in enumerate(
        (tmp_path / 'app.py').read_text().splitlines(), start=1)
        if 'the line coverage must see' in line)
    assert handler_line in measured_lines(tmp_path)['app.py']


def test_without_a_tracer_the_app_is_served_as_it_is():
    """In production no tracer is set: the app granian calls is the app itself, no wrapper."""
    def app(environ, start_response):
        """A WSGI app that is never called here."""

    tracer = threading.gettrace()
    threading.settrace(None)
    try:
        assert serving.workers.traced_in_every_thread(app) is app
    finally:
        threading.settrace(tracer)


def test_with_a_tracer_a_thread_python_did_not_start_is_traced():
    """A thread started below threading (as granian's are) runs the app under the tracer."""
    seen = []

    def tracer(frame, event, arg):
        seen.append(frame.f_code.co_name)

    def app(environ, start_response):
        """Note the tracer this thread has."""
        return [inspect.currentframe().f_code.co_name]

    previous = threading.gettrace()
    threading.settrace(tracer)
    try:
        traced = serving.workers.traced_in_every_thread(app)
    finally:
        threading.settrace(previous)
    assert traced is not app
    done = threading.Event()

    def in_a_bare_thread():
        # A thread of _thread's own gets no tracer from threading.settrace().
        sys.settrace(None)
        traced({}, None)
        sys.settrace(None)
        done.set()

    _thread.start_new_thread(in_a_bare_thread, ())
    assert done.wait(10)
    assert 'app' in seen
