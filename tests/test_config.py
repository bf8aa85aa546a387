"""Configuration: defaults, environment overrides, and what prod.conf declares."""
import os

import cherrypy
import pytest
from cherrypy.lib import reprconf

import landing


def test_defaults_are_the_documented_ones():
    """With no environment, the server binds 0.0.0.0:80 with 100 threads, no slash redirects."""
    settings = landing.settings_from({})
    assert settings['server.socket_host'] == '0.0.0.0'
    assert settings['server.socket_port'] == 80
    assert settings['server.thread_pool'] == 100
    assert settings['tools.trailing_slash.on'] is False
    assert settings['environment'] == 'production'


def test_production_keeps_screen_logging_on():
    """Production turns screen logging off; ours turns it back on, or a container is silent."""
    assert landing.settings_from({})['log.screen'] is True


def test_environment_overrides_host_port_and_threads():
    """HOST, PORT and THREADS override the defaults."""
    settings = landing.settings_from({'HOST': '127.0.0.1', 'PORT': '8080', 'THREADS': '10'})
    assert settings['server.socket_host'] == '127.0.0.1'
    assert settings['server.socket_port'] == 8080
    assert settings['server.thread_pool'] == 10


def test_load_balancer_defaults_absorb_bursts_and_outlast_idle_timeouts():
    """Backlog 1024, keep-alive longer than AWS's 60 s, hundreds of kept connections."""
    settings = landing.settings_from({})
    assert settings['server.socket_queue_size'] == 1024
    assert settings['server.keepalive_timeout'] > 60
    assert settings['server.keep_alive_conn_limit'] >= 100
    assert settings['server.drain_seconds'] == 0
    assert 0 < settings['server.max_request_header_size'] <= 64 * 1024
    assert 0 < settings['server.max_request_body_size'] <= 1024 * 1024


@pytest.mark.parametrize('name, key', [
    (name, key) for name, (key, _, _) in landing.WHOLE_NUMBER_VARIABLES.items()])
def test_each_whole_number_variable_overrides_its_setting(name, key):
    """Every documented variable sets its CherryPy key, parsed as a number."""
    assert landing.settings_from({name: '42'})[key] == 42


def test_unrelated_environment_is_ignored():
    """Only the documented variables change anything."""
    assert landing.settings_from({'PATH': '/bin', 'LANG': 'C'}) == landing.settings_from({})


@pytest.mark.parametrize('name, value', [
    ('PORT', 'eighty'),
    ('PORT', '70000'),
    ('PORT', '0'),
    ('PORT', '-1'),
    ('PORT', ''),
    ('PORT', '8.5'),
    ('THREADS', '0'),
    ('THREADS', 'many'),
    ('BACKLOG', '0'),
    ('KEEPALIVE_TIMEOUT', 'forever'),
    ('KEEPALIVE_LIMIT', '-5'),
    ('REQUEST_TIMEOUT', '0'),
    ('SHUTDOWN_TIMEOUT', '1e3'),
    ('DRAIN_SECONDS', 'ten'),
    ('HOST', ''),
    ('HOST', '  '),
])
def test_bad_values_are_refused_with_a_message_naming_the_variable(name, value):
    """A value the server cannot run with raises ConfigError naming the variable and value."""
    with pytest.raises(landing.ConfigError) as refused:
        landing.settings_from({name: value})
    assert str(refused.value).startswith(f'{name} ')
    assert repr(value) in str(refused.value)


def test_configure_applies_settings_to_cherrypy(monkeypatch):
    """configure() puts the effective settings into cherrypy.config."""
    applied = {}
    monkeypatch.setattr(cherrypy.config, 'update', applied.update)
    landing.configure({'PORT': '8123'})
    assert applied['server.socket_port'] == 8123
    assert applied['log.screen'] is True


def test_main_exits_with_one_line_on_a_bad_variable(monkeypatch):
    """main() turns ConfigError into SystemExit with a one-line message, before serving."""
    monkeypatch.setattr(cherrypy, 'quickstart', pytest.fail)
    with pytest.raises(SystemExit) as stopped:
        landing.main({'PORT': 'eighty'})
    assert stopped.value.code == "landing: PORT must be a whole number from 1 to 65535, got 'eighty'"


def test_main_serves_landing_with_prod_conf(monkeypatch):
    """main() configures, then runs quickstart(Landing(), '/', prod.conf next to landing.py)."""
    calls = []
    monkeypatch.setattr(cherrypy.config, 'update', lambda settings: None)
    monkeypatch.setattr(cherrypy.engine, 'subscribe', lambda *args, **kwargs: None)
    monkeypatch.setattr(cherrypy, 'quickstart', lambda *args: calls.append(args))
    landing.main({'PORT': '8123'})
    [(root, script_name, config)] = calls
    assert isinstance(root, landing.Landing)
    assert script_name == '/'
    assert config == os.path.join(os.path.dirname(landing.__file__), 'prod.conf')


@pytest.fixture(scope='module')
def prod_conf():
    """prod.conf as CherryPy parses it."""
    return reprconf.Parser().dict_from_file(landing.CONFIG_PATH)


def test_prod_conf_parses_and_sets_no_server_settings(prod_conf):
    """prod.conf parses, and leaves host, port and threads to landing.py and the environment."""
    for section in prod_conf.values():
        assert not any(key.startswith('server.') for key in section)


def test_prod_conf_serves_the_logo_with_staticfile(prod_conf):
    """/logo.png is declared with tools.staticfile, relative to the app folder."""
    logo = prod_conf['/logo.png']
    assert logo['tools.staticfile.on'] is True
    assert logo['tools.staticfile.filename'] == 'static/logo.png'
    assert os.path.isfile(os.path.join(landing.APP_DIR, logo['tools.staticfile.filename']))


def test_prod_conf_serves_static_dir_with_staticdir(prod_conf):
    """/static is declared with tools.staticdir, relative to the app folder."""
    static = prod_conf['/static']
    assert static['tools.staticdir.on'] is True
    assert static['tools.staticdir.dir'] == 'static'


def test_static_paths_resolve_against_the_app_folder_not_the_cwd():
    """Landing roots static tools at the app folder, so any working directory works."""
    assert landing.Landing._cp_config['tools.staticdir.root'] == landing.APP_DIR
    assert landing.Landing._cp_config['tools.staticfile.root'] == landing.APP_DIR
    assert os.path.isabs(landing.APP_DIR)
