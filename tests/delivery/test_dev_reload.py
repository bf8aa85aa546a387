"""RELOAD=1 (what `./run.sh --dev` sets): an edit is live within a second, a mistake is shown.

The app is copied to a temporary folder, served from there, edited, and polled. The edits add
handlers and options of the tests' own, so they hold whatever page landing.py serves.
"""
import os
import re
import sys
import time

import pytest

from conftest import ServerProcess, copy_app, request, wait_until

LIVE_DEADLINE = 10  # seconds; the issue asks for ~2, measured here at about 1


@pytest.fixture
def dev_app(tmp_path):
    """A copy of the app served with RELOAD=1 from its own folder; stopped by PID at the end."""
    app = copy_app(tmp_path / 'app')
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


def add_handler(path, name, answer):
    """Append to the app module at `path` a handler /`name` of Landing answering `answer`."""
    with open(path, 'a') as module:
        module.write(f'\n\nLanding.{name} = cherrypy.expose(lambda self: {answer!r})\n')


def answer(port, path):
    """Return (status, body) of GET `path`."""
    return request(port, 'GET', path)[::2]


def test_an_edit_to_the_app_is_live_without_a_restart(dev_app):
    """Add a handler to landing.py: the next answers serve it, the process is the same."""
    app, served = dev_app
    add_handler(app / 'landing.py', 'edited', 'edited live')
    wait_until(lambda: answer(served.port, '/edited') == (200, b'edited live'),
               deadline=LIVE_DEADLINE, what='the new handler')
    assert served.proc.poll() is None
    assert 'reload=on' in served.stderr()


def wait_for_report(served, count, what):
    """Wait until the server has reported `count` failed loads; return its stderr."""
    return wait_until(lambda: served.stderr().count('fix it and save') >= count
                      and served.stderr(), deadline=LIVE_DEADLINE, what=what)


def test_a_syntax_error_is_shown_in_one_block_and_the_next_save_serves(dev_app):
    """A typo saved in landing.py: one block naming file, line and error; the server watches on.

    The block carries the app's own lines only (no multiprocessing or server frames), and
    the save that fixes the typo serves again.
    """
    app, served = dev_app
    module = app / 'landing.py'
    good = module.read_text()
    module.write_text(good + '\ndef broken(:\n')
    log = wait_for_report(served, 1, 'the syntax error reported')
    block = log[log.index('landing: the app failed to load'):]
    block = block[:block.index('fix it and save')]
    assert f'{module}", line {good.count(chr(10)) + 2}' in block
    assert 'SyntaxError' in block
    assert 'multiprocessing' not in block
    assert f'{os.sep}serving{os.sep}' not in block
    assert 'Traceback' not in log
    assert served.proc.poll() is None
    module.write_text(good)
    add_handler(module, 'mended', 'mended')
    wait_until(lambda: answer(served.port, '/mended') == (200, b'mended'),
               deadline=LIVE_DEADLINE, what='the mended app')


def test_an_error_at_import_names_the_apps_own_line(dev_app):
    """A NameError at import time: the block shows landing.py's line and the error, no more."""
    app, served = dev_app
    with open(app / 'landing.py', 'a') as module:
        module.write('\nundefined_name_here\n')
    log = wait_for_report(served, 1, 'the NameError reported')
    assert re.search(r'landing\.py", line \d+, in <module>\n    undefined_name_here\n'
                     r"NameError: name 'undefined_name_here' is not defined", log)
    assert served.proc.poll() is None


def test_a_prod_conf_mistake_is_one_line_and_the_next_save_serves(dev_app):
    """A misspelled tool option saved in prod.conf: one line naming file, line and option.

    Nothing is served from the broken config (no 500s later); fixing it serves again.
    """
    app, served = dev_app
    config = app / 'prod.conf'
    good = config.read_text()
    config.write_text(good + '\n[/mine]\ntools.staticdir.dri = "static"\n')
    log = wait_for_report(served, 1, 'the prod.conf mistake reported')
    line = good.count('\n') + 3
    assert (f"landing: prod.conf line {line}: tools.staticdir.dri: tools.staticdir has no "
            "option 'dri'") in log
    assert served.proc.poll() is None
    config.write_text(good + '\n[/mine]\ntools.staticdir.on = True\n'
                      'tools.staticdir.dir = "static"\n')
    css = sorted(p.name for p in (app / 'static').iterdir() if p.is_file())[0]
    wait_until(lambda: answer(served.port, f'/mine/{css}')[0] == 200,
               deadline=LIVE_DEADLINE, what='the mended prod.conf')


def test_a_mended_save_serves_again_within_a_second(dev_app):
    """From the save that fixes a typo to the first answer of the new code: under 1 s.

    Generous here (the machine is shared): LIVE_DEADLINE bounds it; the figure is printed.
    """
    app, served = dev_app
    module = app / 'landing.py'
    good = module.read_text()
    module.write_text(good + '\ndef broken(:\n')
    wait_for_report(served, 1, 'the syntax error reported')
    module.write_text(good)
    add_handler(module, 'timed', 'timed')
    saved = time.monotonic()
    wait_until(lambda: answer(served.port, '/timed') == (200, b'timed'),
               deadline=LIVE_DEADLINE, what='the mended app')
    print(f'served again {time.monotonic() - saved:.2f} s after the fixing save')


def test_an_edit_to_prod_conf_is_live(dev_app):
    """Change a cache header in prod.conf: the logo's answers carry the new one."""
    app, served = dev_app
    edit(app / 'prod.conf', 'max-age=3600")]\n\n[/favicon.ico]',
         'max-age=60")]\n\n[/favicon.ico]')
    wait_until(lambda: request(served.port, 'GET', '/logo.png')[1]['Cache-Control']
               == 'max-age=60', deadline=LIVE_DEADLINE, what='the new Cache-Control')


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


def test_spawned_workers_find_the_root_class_by_module_and_name():
    """root_name: an imported app's module and class; keep_main... leaves a main with a spec."""
    import landing
    import serving.startup

    assert serving.startup.root_name(landing.Landing()) == ('landing', 'Landing')
    main = sys.modules['__main__']
    spec = main.__spec__
    serving.startup.keep_main_out_of_spawned_workers()
    assert main.__spec__ is spec
