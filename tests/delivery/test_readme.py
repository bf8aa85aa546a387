"""The README tells the truth: its snippets are real, its changes work, its outputs happen.

A fenced block names its file in the info string, ```python title="landing.py": such a block is
copied from that file and appears in it verbatim. A title starting `add to ` or `new ` is a change
the README asks a newcomer to make: these tests make each one in a copy of the app, serve the copy
as a real process and run the README's own tests against it. A ```console block shows commands
(`$ ...`) and what they print: each is run here and compared, apart from what changes between runs
(times, process ids, ports). The configuration table is read against what serving/settings.py reads.
"""
import ast
import collections
import email.utils
import glob
import http
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import serving.settings
from conftest import APP_FILES, ROOT, ServerProcess, request, wait_until
from readme_steps import (
    ADD_FILE_TEST,
    ADD_PAGE,
    ADD_PAGE_TEST,
    CHANGES,
    NEW_FILE,
    README,
    apply_changes,
    fenced_blocks,
    is_change,
    read,
    readme_block,
    undo_changes,
)

DOCS = sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
SCREENSHOT = os.path.join(ROOT, 'docs', 'landing.png')

# What the runtime image holds (the Dockerfile's COPY lines), and what the README's tests need.
TEST_FILES = ('pyproject.toml', 'tests/conftest.py', 'tests/site/test_landing.py',
              'tests/site/test_static.py')

# Processes started from a copy of the app are not measured: the copy is not the code under
# test, and its files would enter the coverage report. Coverage's start-up hook (its .pth
# file) measures a Python process only when one of these is set to something.
UNMEASURED = {'COVERAGE_PROCESS_CONFIG': '', 'COVERAGE_PROCESS_START': ''}


def transcripts(path):
    """Return {command: output lines} for each `$ command` in the file's console blocks."""
    shown = {}
    for block in fenced_blocks(path):
        if block.language != 'console':
            continue
        command = None
        for line in block.text.splitlines():
            if line.startswith('$ '):
                command = line[2:]
                shown[command] = []
            else:
                shown[command].append(line)
    return shown


def readme_transcript(command):
    """Return the output lines the README shows for `command`."""
    shown = transcripts(README)
    assert command in shown, f'README.md shows no output of {command!r}'
    return shown[command]


def quoted_copies():
    """Return the blocks in README.md and docs/ that quote a file of the repository as it is."""
    return [block for path in [README, *DOCS] for block in fenced_blocks(path)
            if block.title and not is_change(block.title)]


# ------------------------------------------------------------------ snippets are the real files


@pytest.mark.parametrize('block', quoted_copies(), ids=lambda block: f'{block.doc}:{block.title}')
def test_quoted_snippet_appears_verbatim_in_the_file_it_names(block):
    """A block titled with a file name is a copy of part of that file, character for character."""
    named = os.path.join(ROOT, block.title)
    assert os.path.isfile(named), f'{block.doc} quotes {block.title}, which does not exist'
    assert block.text in read(named), f'{block.doc} quotes {block.title} as it no longer is'


def test_readme_quotes_landing_py_for_the_page_handler_and_the_defaults():
    """The README shows index() and the seed's config.update as landing.py has them."""
    quoted = [block.text for block in fenced_blocks(README)
              if block.title == 'landing.py' and block.language == 'python']
    assert any('def index(self)' in text for text in quoted)
    assert any(text.startswith('cherrypy.config.update({') for text in quoted)


def test_every_change_the_readme_asks_for_is_made_by_these_tests():
    """Each `add to`/`new` block in the README is one of the changes applied below."""
    asked = {block.title for block in fenced_blocks(README)
             if block.title and is_change(block.title)}
    assert asked == CHANGES


# ------------------------------------------------------------------ the changes work


def copy_app(folder, names):
    """Copy the files and folders `names` of the repository into `folder`; return it."""
    for name in names:
        source, target = os.path.join(ROOT, name), folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(source):
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    return folder


def page_text():
    """Return the string the README's new handler returns, read from its return statement."""
    tree = ast.parse(textwrap.dedent(readme_block(ADD_PAGE)))
    [returned] = [node.value for node in ast.walk(tree) if isinstance(node, ast.Return)]
    return ast.literal_eval(returned)


def readme_test_names(block_title):
    """Return the names of the test functions in the README block titled `block_title`."""
    tree = ast.parse(readme_block(block_title))
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


@pytest.fixture(scope='module')
def changed_app(tmp_path_factory):
    """A copy of the app and its tests with every change the README asks for made (once)."""
    folder = copy_app(tmp_path_factory.mktemp('changed'), APP_FILES + TEST_FILES)
    apply_changes(folder)
    return folder


@pytest.fixture(scope='module')
def changed_server(changed_app, tmp_path_factory):
    """The changed copy served as `python landing.py` on a free loopback port."""
    served = ServerProcess(tmp_path_factory.mktemp('changed-run'), UNMEASURED,
                           str(changed_app / 'landing.py'))
    try:
        yield served.wait_ready()
    finally:
        served.kill()


def run_pytest(folder, *arguments):
    """Run pytest on `folder`, a copy of the app, unmeasured; return the finished process."""
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-v', '-p', 'no:cacheprovider', *arguments],
        cwd=folder, env=dict(os.environ, **UNMEASURED), capture_output=True, text=True,
        timeout=120)


def test_the_added_page_answers_200_with_its_text_as_utf8_html(changed_server):
    """GET /about on the changed app answers what the README's handler returns, as UTF-8 HTML."""
    status, headers, body = request(changed_server.port, 'GET', '/about')
    assert status == 200
    assert headers['Content-Type'] == 'text/html; charset=utf-8'
    assert body == page_text().encode('utf-8')


def test_the_added_page_ignores_query_parameters_it_does_not_take(changed_server):
    """/about?utm_source=x answers the page, as the README says."""
    status, _, body = request(changed_server.port, 'GET', '/about?utm_source=x')
    assert (status, body) == (200, page_text().encode('utf-8'))


def test_the_added_page_answers_other_methods_with_405(changed_server):
    """POST /about gets 405 naming GET and HEAD, from the tools.allow line of the snippet."""
    status, headers, _ = request(changed_server.port, 'POST', '/about', body=b'x')
    assert status == 405
    assert {method.strip() for method in headers['Allow'].split(',')} == {'GET', 'HEAD'}


@pytest.mark.parametrize('path', ['/robots.txt', '/static/robots.txt'])
def test_the_new_static_file_is_served_at_the_top_level_and_under_static(changed_server, path):
    """static/robots.txt answers at /robots.txt (the prod.conf section) and /static/robots.txt."""
    status, _, body = request(changed_server.port, 'GET', path)
    assert (status, body) == (200, readme_block(NEW_FILE).encode('utf-8'))


def test_the_readme_tests_pass_with_the_rest_of_their_files_on_the_changed_app(changed_app):
    """The README's two tests, added where it says, pass beside the tests already there."""
    done = run_pytest(changed_app, 'tests/site/test_landing.py', 'tests/site/test_static.py')
    assert done.returncode == 0, done.stdout + done.stderr
    for name in readme_test_names(ADD_PAGE_TEST) + readme_test_names(ADD_FILE_TEST):
        assert re.search(rf'::{name} PASSED', done.stdout), f'{name} did not run'


def test_the_readme_tests_fail_on_an_app_without_the_page_and_the_file(tmp_path):
    """Without the page and the file the README's tests fail: they test what they claim to."""
    folder = copy_app(tmp_path / 'unchanged', APP_FILES + TEST_FILES)
    undo_changes(folder)
    apply_changes(folder, {ADD_PAGE_TEST, ADD_FILE_TEST})
    names = readme_test_names(ADD_PAGE_TEST) + readme_test_names(ADD_FILE_TEST)
    done = run_pytest(folder, 'tests/site/test_landing.py', 'tests/site/test_static.py',
                      '-k', ' or '.join(names))
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    for name in names:
        assert re.search(rf'::{name} FAILED', done.stdout), f'{name} did not fail'


# ------------------------------------------------------------------ outputs shown happen

# Commands the README shows with their output, each checked by a test below.
CHECKED_COMMANDS = {
    './run.sh --local',
    'curl -i localhost:8080/healthcheck',
    "curl -s -o /dev/null -w '%{http_code} %{content_type}\\n' localhost:8080/",
    './test.sh -h',
    'PORT=eighty .venv/bin/python landing.py',
}
# Scripts whose -h output README.md or docs/ may show.
HELP = {'./run.sh -h': 'run.sh', './test.sh -h': 'test.sh'}

_LOG_TIME = re.compile(r'\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\]')
_PID = re.compile(r'PID: \d+')
# An access-log line's byte count: the length of whatever page the user now serves.
_LENGTH = re.compile(r'(?<=" \d{3} )\d+(?= ")')


def as_shown(line, port=8080):
    """Return a log line with what varies as the README shows it: times, PIDs, port, length."""
    line = _LENGTH.sub('N', _PID.sub('PID: N', _LOG_TIME.sub('[TIME]', line)))
    return re.sub(rf'(?<=[:=]){port}\b', '8080', line)


def test_every_command_the_readme_shows_with_output_is_checked():
    """Each `$ command` in the README's console blocks is one these tests run and compare."""
    assert set(transcripts(README)) == CHECKED_COMMANDS


def test_start_up_transcript_is_what_run_sh_and_the_server_print(start_server):
    """`./run.sh --local`: run.sh's own lines, then the server's start-up and access-log lines."""
    shown = readme_transcript('./run.sh --local')
    run_sh = read(os.path.join(ROOT, 'run.sh'))
    for line in shown:
        if line.startswith('run.sh: '):
            message = line.removeprefix('run.sh: ').replace('8080', '$port')
            assert f'say "{message}"' in run_sh, f'run.sh does not say {message!r}'
    access = [line for line in shown if line.startswith('127.0.0.1 - - ')]
    logged = sorted(as_shown(line) for line in shown
                    if not line.startswith('run.sh: ') and line not in access)

    app = start_server().wait_ready()
    request(app.port, 'GET', '/', headers={'User-Agent': 'curl/7.88.1'})

    def printed():
        return sorted(as_shown(line, app.port) for line in app.stderr().splitlines())

    def lines_shown_are_printed():
        return not collections.Counter(logged) - collections.Counter(printed())

    wait_until(lines_shown_are_printed, what='the start-up lines the README shows')
    assert printed() == logged
    wait_until(lambda: app.stdout(), what='the access-log line')
    assert [as_shown(line) for line in app.stdout().splitlines()] == \
        [as_shown(line) for line in access]


def test_health_check_transcript_is_a_real_answer_but_for_its_date(app_port):
    """`curl -i .../healthcheck`: the status line, every header in order, and Yay."""
    shown = readme_transcript('curl -i localhost:8080/healthcheck')
    blank = shown.index('')
    status_line, header_lines, body = shown[0], shown[1:blank], '\n'.join(shown[blank + 1:])
    shown_headers = [tuple(line.split(': ', 1)) for line in header_lines]

    status, headers, answer = request(app_port, 'GET', '/healthcheck')
    assert status_line == f'HTTP/1.1 {status} {http.HTTPStatus(status).phrase}'
    assert [(name, value) for name, value in shown_headers if name != 'date'] == \
        [(name, value) for name, value in headers.items() if name != 'date']
    [shown_date] = [value for name, value in shown_headers if name == 'date']
    assert email.utils.parsedate_to_datetime(shown_date)
    assert body == answer.decode()


def test_page_transcript_is_the_status_and_type_of_the_page(app_port):
    """`curl -s -o /dev/null -w ... localhost:8080/` prints the page's status and content type."""
    shown = readme_transcript("curl -s -o /dev/null -w '%{http_code} %{content_type}\\n' "
                              'localhost:8080/')
    status, headers, _ = request(app_port, 'GET', '/')
    assert shown == [f"{status} {headers['Content-Type']}"]


def test_bad_value_transcript_is_what_landing_py_prints(tmp_path):
    """`PORT=eighty .venv/bin/python landing.py` prints one line on stderr and exits 1."""
    shown = readme_transcript('PORT=eighty .venv/bin/python landing.py')
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'landing.py')], cwd=tmp_path,
        env=dict(os.environ, PORT='eighty'), capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, '', shown)


@pytest.mark.parametrize('doc, command', [
    (os.path.relpath(path, ROOT), command) for path in [README, *DOCS]
    for command in transcripts(path) if command in HELP])
def test_help_transcript_is_what_the_script_prints(doc, command):
    """A script's -h output, where shown, is what it prints today."""
    done = subprocess.run(['bash', HELP[command], '-h'], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0
    assert done.stdout.splitlines() == transcripts(os.path.join(ROOT, doc))[command]


# ------------------------------------------------------------------ the configuration table


class NamesAskedFor(dict):
    """An empty environment that notes every variable name it is asked about."""

    def __init__(self):
        super().__init__()
        self.asked = set()

    def __contains__(self, name):
        self.asked.add(name)
        return super().__contains__(name)

    def get(self, name, default=None):
        """Note `name`, then answer as a dict does."""
        self.asked.add(name)
        return super().get(name, default)


def configuration_table():
    """Return {variable: (default, accepts)} from the README's Configuration table."""
    section = read(README).split('\n## Configuration\n', 1)[1].split('\n## ', 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if line.startswith('| `') and len(cells) == 4:
            rows[cells[0].strip('`')] = (cells[1].strip('`'), cells[2])
    return rows


def test_configuration_table_lists_exactly_the_variables_the_server_reads():
    """The table's variables are VARIABLES, the ones Settings.from_environ looks up."""
    environ = NamesAskedFor()
    serving.settings.Settings.from_environ(environ, seed={})
    assert environ.asked == {variable.name for variable in serving.settings.VARIABLES}
    assert set(configuration_table()) == environ.asked


@pytest.mark.parametrize('variable', serving.settings.VARIABLES, ids=lambda variable: variable.name)
def test_configuration_table_gives_each_variable_its_default_and_values(fresh_settings, variable):
    """Each default is what a fresh start uses; each range or choice what the server accepts."""
    default, accepts = configuration_table()[variable.name]
    value = fresh_settings[variable.field]
    if variable.networks or variable.hosts:
        assert default == (', '.join(value) or variable.unset)
    elif variable.path:
        assert default == (value or variable.unset)
    else:
        assert default == str(int(value) if isinstance(value, bool) else value)
    if variable.choices:
        assert accepts == ', '.join(f'`{choice}`' for choice in variable.choices)
    elif not (variable.address or variable.networks or variable.hosts or variable.path):
        assert accepts == f'{variable.low}–{variable.high}'


# ------------------------------------------------------------------ the screenshot


def test_readme_shows_a_small_png_screenshot_of_the_page():
    """docs/landing.png, shown at the top of the README, is a PNG under 100 KB."""
    assert '](docs/landing.png)' in read(README)
    with open(SCREENSHOT, 'rb') as handle:
        assert handle.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(SCREENSHOT) < 100 * 1024


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file():
    """Links between README.md, docs/ and the repository's files all resolve."""
    pages = [README, *glob.glob(os.path.join(ROOT, 'docs', '*.md'))]
    for page in pages:
        for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', read(page)):
            if '://' in target or target.startswith('mailto:'):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), target))
            assert os.path.exists(path), f'{os.path.relpath(page, ROOT)} links to {target}'
