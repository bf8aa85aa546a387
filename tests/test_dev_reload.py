"""RELOAD=1 (what `./run.sh --dev` sets): an edit to the app is live within seconds.

The app is copied to a temporary folder, served from there, edited, and polled.
"""
import shutil

import pytest

from conftest import APP_FILES, ROOT, ServerProcess, request, wait_until

LIVE_DEADLINE = 10  # seconds; the issue asks for ~2, measured here at about 1


@pytest.fixture
def dev_app(tmp_path):
    """A copy of the app served with RELOAD=1 from its own folder; stopped by PID at the end."""
    app = tmp_path / 'app'
    app.mkdir()
    for name in APP_FILES:
        copy = shutil.copytree if name == 'static' else shutil.copy2
        copy(f'{ROOT}/{name}', app / name)
    workdir = tmp_path / 'run'
    workdir.mkdir()
    served = ServerProcess(workdir, env={'RELOAD': '1'}, script=str(app / 'landing.py'))
    try:
        served.wait_ready()
        yield app, served
    finally:
        served.kill()


def edit(path, old, new):
    """Replace `old` with `new` in the file at `path` (it must be there)."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_an_edit_to_the_page_is_live_without_a_restart(dev_app):
    """Change the heading in landing.py: the next answers show it, the process is the same."""
    app, served = dev_app
    edit(app / 'landing.py', '<h1>Landing</h1>', '<h1>Edited live</h1>')
    wait_until(lambda: b'Edited live' in request(served.port, 'GET', '/')[2],
               deadline=LIVE_DEADLINE, what='the edited page')
    assert served.proc.poll() is None
    assert 'reload=on' in served.stderr()


def test_an_edit_to_prod_conf_is_live(dev_app):
    """Change a cache header in prod.conf: the logo's answers carry the new one."""
    app, served = dev_app
    edit(app / 'prod.conf', 'public, max-age=3600")]\n\n[/favicon.ico]',
         'public, max-age=60")]\n\n[/favicon.ico]')
    wait_until(lambda: request(served.port, 'GET', '/logo.png')[1]['Cache-Control']
               == 'public, max-age=60', deadline=LIVE_DEADLINE, what='the new Cache-Control')


def test_an_edit_to_the_health_check_is_live(dev_app):
    """Change healthcheck.py's answer: probes get the new one."""
    app, served = dev_app
    edit(app / 'healthcheck.py', "return 'Yay' if", "return 'Yay!' if")
    wait_until(lambda: request(served.port, 'GET', '/healthcheck')[2] == b'Yay!',
               deadline=LIVE_DEADLINE, what='the edited health check')


def test_a_new_static_file_is_served_at_once(dev_app):
    """static/ is read from disk on each request: a file added is there on the next one."""
    app, served = dev_app
    (app / 'static' / 'new.txt').write_text('fresh')
    assert request(served.port, 'GET', '/static/new.txt')[::2] == (200, b'fresh')


def test_sigterm_stops_the_dev_server_with_exit_0(dev_app):
    """The reloading server still stops cleanly on SIGTERM."""
    _, served = dev_app
    assert served.stop() == 0
    assert 'Traceback' not in served.stderr()
