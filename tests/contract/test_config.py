"""Configuration: landing.py's seed, environment overrides, and what prod.conf declares."""
import os
import re

import pytest
from cherrypy.lib import reprconf

import landing
import serving.app_config
import serving.settings
import serving.startup
from conftest import ROOT, SEED


def test_defaults_are_the_seeds_in_landing_py(fresh_settings):
    """With no environment: 0.0.0.0:80, 100 threads, no slash redirects, production."""
    assert (fresh_settings['host'], fresh_settings['port'], fresh_settings['threads']) == (
        '0.0.0.0', 80, 100)
    assert {key: fresh_settings['cherrypy'][key] for key in SEED} == SEED
    assert fresh_settings['cherrypy']['environment'] == 'production'


def test_production_keeps_screen_logging_on(fresh_settings):
    """Production turns screen logging off; ours turns it back on, or a container is silent."""
    assert fresh_settings['cherrypy']['log.screen'] is True


def test_load_balancer_defaults_absorb_bursts_and_outlast_idle_timeouts(fresh_settings):
    """Backlog 1024, keep-alive longer than AWS's 60 s, one worker, no drain, a body cap."""
    assert fresh_settings['backlog'] == 1024
    assert fresh_settings['keepalive_timeout'] > 60
    assert fresh_settings['workers'] == 1
    assert fresh_settings['drain_seconds'] == 0
    assert 0 < fresh_settings['cherrypy']['request.body.maxbytes'] <= 1024 * 1024


def test_environment_overrides_host_port_and_threads():
    """HOST, PORT and THREADS override the seed."""
    settings = serving.settings.Settings.from_environ(
        {'HOST': '127.0.0.1', 'PORT': '8080', 'THREADS': '10'}, SEED)
    assert (settings.host, settings.port, settings.threads) == ('127.0.0.1', 8080, 10)


def test_the_seed_gives_host_port_and_threads_with_cherrypys_keys():
    """landing.py's config.update names them as CherryPy does; the environment wins over it."""
    seed = {'server.socket_host': '::1', 'server.socket_port': 8081, 'server.thread_pool': 7}
    settings = serving.settings.Settings.from_environ({}, seed)
    assert (settings.host, settings.port, settings.threads) == ('::1', 8081, 7)
    assert serving.settings.Settings.from_environ({'PORT': '8082'}, seed).port == 8082


@pytest.mark.parametrize('variable', [
    variable for variable in serving.settings.VARIABLES if variable.high],
    ids=lambda variable: variable.name)
def test_each_whole_number_variable_overrides_its_setting(variable):
    """Every documented number sets its field, parsed as a number (RELOAD as a flag)."""
    value = min(42, variable.high)
    settings = serving.settings.Settings.from_environ({variable.name: str(value)}, SEED)
    assert getattr(settings, variable.field) == value


def test_unrelated_environment_is_ignored():
    """Only the documented variables change anything."""
    unrelated = serving.settings.Settings.from_environ({'PATH': '/bin', 'LANG': 'C'}, SEED)
    assert unrelated == serving.settings.Settings.from_environ({}, SEED)


@pytest.mark.parametrize('name, value', [
    ('PORT', 'eighty'),
    ('PORT', '70000'),
    ('PORT', '0'),
    ('PORT', '-1'),
    ('PORT', ''),
    ('PORT', '8.5'),
    ('PORT', '+8080'),
    ('PORT', '3_4829'),
    ('PORT', ' 8080'),
    ('PORT', '8080\n'),
    ('PORT', '\u0668\u0660\u0668\u0660'),  # Arabic-Indic digits: int() takes them
    ('PORT', '\uff18\uff10'),  # full-width digits
    ('PORT', '0x50'),
    ('THREADS', '0'),
    ('THREADS', 'many'),
    ('THREADS', '1e3'),
    ('WORKERS', '0'),
    ('WORKERS', '65'),
    ('BACKLOG', '0'),
    ('KEEPALIVE_TIMEOUT', 'forever'),
    ('SHUTDOWN_TIMEOUT', '1e3'),
    ('SHUTDOWN_TIMEOUT', '0'),
    ('DRAIN_SECONDS', 'ten'),
    ('HOST', ''),
    ('HOST', '  '),
    ('HOST', 'local host'),
    ('HOST', '\u0661\u0662\u0667.0.0.1'),
])
def test_bad_values_are_refused_with_a_message_naming_the_variable(name, value):
    """A value the server cannot run with raises ConfigError naming the variable and value."""
    with pytest.raises(serving.settings.ConfigError) as refused:
        serving.settings.Settings.from_environ({name: value}, SEED)
    assert str(refused.value).startswith(f'{name} ')
    assert repr(value) in str(refused.value)


@pytest.mark.parametrize('host', ['999.1.1.1', 'no-such-host.invalid'])
def test_an_address_this_machine_lacks_is_refused_naming_host(host):
    """HOST must name an address to bind; the message says which variable is wrong."""
    with pytest.raises(serving.settings.ConfigError, match=f"^HOST '{host}'"):
        serving.startup.bindable_address(host, 8080)


def test_a_name_resolves_to_the_address_granian_binds():
    """HOST=localhost works: granian is given the address it names."""
    assert serving.startup.bindable_address('localhost', 0) in ('127.0.0.1', '::1')


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
    assert os.path.isfile(os.path.join(ROOT, logo['tools.staticfile.filename']))


def test_prod_conf_serves_static_dir_with_staticdir(prod_conf):
    """/static is declared with tools.staticdir, relative to the app folder."""
    static = prod_conf['/static']
    assert static['tools.staticdir.on'] is True
    assert static['tools.staticdir.dir'] == 'static'


def test_config_path_is_beside_landing_py():
    """landing.py finds prod.conf next to itself, whatever the working directory."""
    assert os.path.join(ROOT, 'prod.conf') == landing.CONFIG_PATH


# (edit of prod.conf: old text -> new text, start of the one line it must give)
CONFIG_MISTAKES = {
    'misspelled tool option': (
        'tools.staticdir.dir', 'tools.staticdir.dri',
        "tools.staticdir.dri: tools.staticdir has no option 'dri'"),
    'unknown tool': (
        'tools.staticdir.on', 'tools.staticdri.on', "tools.staticdri.on: there is no tool"),
    'tool without option': ('tools.staticdir.on', 'tools.staticdir', 'tools.staticdir: a tool'),
    'bad value': ('= True', '= Ture(', 'tools.'),
    'missing ]': ('[/static]', '[/static', "'[/static' lacks its closing ]"),
    'option given twice': ('tools.staticdir.on = True', 'tools.staticdir.on = True\n'
                           'tools.staticdir.on = True', "option 'tools.staticdir.on' in"),
    'line that is no option': ('tools.staticdir.on = True', 'tools.staticdir.on = True\njunk',
                               "'junk' is neither a [section] nor an option = value"),
}


def broken_copy(tmp_path, old, new):
    """Write prod.conf with the first `old` replaced by `new`; return its path and that line."""
    with open(landing.CONFIG_PATH) as shipped:
        text = shipped.read()
    assert old in text
    line = text[:text.index(old)].count('\n') + 1
    path = tmp_path / 'prod.conf'
    path.write_text(text.replace(old, new, 1))
    return path, line


@pytest.mark.parametrize('mistake', CONFIG_MISTAKES)
def test_a_prod_conf_mistake_names_file_line_and_option(tmp_path, mistake):
    """Each mistake in prod.conf: one ConfigError naming prod.conf, its line and what is wrong."""
    old, new, says = CONFIG_MISTAKES[mistake]
    path, line = broken_copy(tmp_path, old, new)
    with pytest.raises(serving.settings.ConfigError) as error:
        serving.app_config.check_app_config(str(path))
    message = str(error.value)
    assert '\n' not in message
    assert re.match(r'prod\.conf line (\d+): ', message)
    number = int(re.match(r'prod\.conf line (\d+): ', message)[1])
    assert number in (line, line + 1)  # the line edited, or the one it added
    assert says in message


def test_an_option_before_any_section_is_named(tmp_path):
    """An option above the first [section]: its line, and why."""
    path = tmp_path / 'prod.conf'
    path.write_text('# a comment\ntools.gzip.on = True\n')
    with pytest.raises(serving.settings.ConfigError,
                       match=r"^prod\.conf line 2: 'tools.gzip.on = True' "
                       r'comes before any \[section\]$'):
        serving.app_config.check_app_config(str(path))


def test_the_shipped_prod_conf_passes_the_check():
    """The prod.conf the template ships has no mistake the check finds."""
    serving.app_config.check_app_config(landing.CONFIG_PATH)


def test_tool_options_taking_any_keyword_are_accepted(tmp_path):
    """A tool whose callable takes **kwargs accepts any option name; priority is every tool's."""
    path = tmp_path / 'app.conf'
    path.write_text('[/]\ntools.caching.anything = 1\ntools.gzip.priority = 80\n')
    serving.app_config.check_app_config(str(path))


def test_metrics_port_equal_to_port_is_refused():
    """METRICS_PORT == PORT: one line saying they must differ."""
    with pytest.raises(serving.settings.ConfigError, match='METRICS_PORT must differ from PORT'):
        serving.settings.Settings.from_environ({'PORT': '8080', 'METRICS_PORT': '8080'}, SEED)


def test_metrics_listen_on_loopback_unless_metrics_host_says_otherwise(fresh_settings):
    """METRICS_HOST: 127.0.0.1 by default, whatever HOST says; an address when set."""
    assert fresh_settings['metrics_host'] == '127.0.0.1'
    settings = serving.settings.Settings.from_environ(
        {'HOST': '0.0.0.0', 'METRICS_HOST': '::'}, SEED)
    assert settings.metrics_host == '::'
    with pytest.raises(serving.settings.ConfigError, match='METRICS_HOST must be an address'):
        serving.settings.Settings.from_environ({'METRICS_HOST': ' '}, SEED)


def test_worker_timeout_defaults_to_10_s_and_0_turns_it_off(fresh_settings):
    """WORKER_TIMEOUT: 10 s unless set; 0 allowed (no watchdog)."""
    assert fresh_settings['worker_timeout'] == 10
    settings = serving.settings.Settings.from_environ({'WORKER_TIMEOUT': '0'}, SEED)
    assert settings.worker_timeout == 0
