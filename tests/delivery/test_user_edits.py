"""A newcomer's edits keep the template green: the whole ./test.sh passes on an edited copy.

The copy gets what a user of the template does to it in the first week: another page (title,
text and length), another logo, the README's add-a-page, add-a-static-file and add-its-test
steps (applied from the README itself, once), and a second module of handlers mounted on the
root, with a test that reaches it only through the real server. Then the copy's own ./test.sh
runs in full: every test, 100 % branch coverage of every module (the new one too), and lint;
with Docker that includes the image's contract tests, run inside the image built from the copy.
"""
import ast
import os
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import ROOT
from readme_steps import add_to_class, apply_changes

pytestmark = pytest.mark.slow

# The copy leaves out this file: run there it would start the copy's suite again, forever.
THIS_TEST = os.path.basename(__file__)

# A whole suite runs inside this one test: generous, but bounded.
SUITE_DEADLINE = 1500

NEW_TITLE = 'Acme Widgets — hand-made in Dunedin'
NEW_SAYS = 'Widgets that last'
NEW_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{NEW_TITLE}</title>
<link rel="icon" href="/favicon.ico">
<link rel="stylesheet" href="/static/site.css">
</head>
<body>
<main>
<img src="/logo.png" alt="Acme logo" width="64" height="64">
<h1>Acme Widgets</h1>
<p>{NEW_SAYS}: each one turned, sanded and oiled by hand, then tested for a café's worth of
daily use before it leaves the workshop. Order by the dozen, or visit the
<a href="/shop">shop</a>.</p>
</main>
</body>
</html>
"""

# A second module of handlers, as a user splits a growing site.
SHOP_MODULE = '''"""The shop: a second module of handlers, mounted by landing.py at /shop."""
import html

import cherrypy


class Shop:
    """The /shop pages."""

    @cherrypy.expose
    @cherrypy.tools.allow(methods=('GET', 'HEAD'))
    def index(self, item='widget'):
        """Return the shop's page for one item, named safely."""
        return f'<!DOCTYPE html>\\n<title>Shop</title>\\n<p>Buy a {html.escape(item)}</p>\\n'
'''

SHOP_TEST = '''"""The shop pages, through the real server."""
from conftest import request


def test_shop_names_the_item_asked_for_escaped(app_port):
    """GET /shop?item=... answers 200 with the item named, HTML escaped."""
    status, headers, body = request(app_port, 'GET', '/shop?item=%3Cb%3E&utm_source=ad')
    assert status == 200
    assert headers.get_content_charset() == 'utf-8'
    assert b'Buy a &lt;b&gt;' in body
'''


def png(width, height, rgb):
    """Return a PNG image of one colour: another logo, made here."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack('>I', len(data)) + body + struct.pack('>I', zlib.crc32(body))

    rows = b''.join(b'\x00' + bytes(rgb) * width for _ in range(height))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(rows))
            + chunk(b'IEND', b''))


def replace_page(source, page):
    """Return landing.py's `source` with its PAGE string replaced by `page`."""
    [assignment] = [node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                    and any(getattr(target, 'id', None) == 'PAGE' for target in node.targets)]
    lines = source.splitlines(keepends=True)
    before = ''.join(lines[:assignment.lineno - 1])
    after = ''.join(lines[assignment.end_lineno:])
    return f'{before}PAGE = """{page}"""\n{after}'


def set_promise(source, name, value):
    """Return test_landing.py's `source` with the constant `name` set to `value`."""
    lines = source.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith(f'{name} = ')]
    assert found, f'tests/site/test_landing.py no longer sets {name}, which the README names'
    lines[found[0]] = f'{name} = {value!r}\n'
    return ''.join(lines)


def edit_like_a_user(site):
    """Make a first week's edits to the app in `site`: page, logo, README steps, a module."""
    landing_py = site / 'landing.py'
    source = replace_page(landing_py.read_text(), NEW_PAGE)
    source = source.replace('\nimport cherrypy\n', '\nimport cherrypy\nfrom shop import Shop\n', 1)
    landing_py.write_text(add_to_class(source, 'Landing', '    shop = Shop()\n'))
    test_landing = site / 'tests' / 'site' / 'test_landing.py'
    test_landing.write_text(set_promise(set_promise(
        test_landing.read_text(), 'TITLE', NEW_TITLE), 'SAYS', NEW_SAYS))
    (site / 'static' / 'logo.png').write_bytes(png(64, 64, (200, 30, 60)))
    apply_changes(site)
    (site / 'shop.py').write_text(SHOP_MODULE)
    (site / 'tests' / 'site' / 'test_shop.py').write_text(SHOP_TEST)


@pytest.fixture
def edited_site(tmp_path):
    """A copy of the checkout, edited as a user would, sharing this suite's .venv."""
    site = shutil.copytree(ROOT, tmp_path / 'site', ignore=shutil.ignore_patterns(
        '.git', '.venv', '__pycache__', '.*_cache', '.hypothesis', '.coverage*', 'htmlcov',
        'test-output', THIS_TEST))
    # A checkout's mode, which the container's user (UID 10001) can read, as run.sh --dev needs.
    os.chmod(site, 0o755)  # noqa: S103
    if sys.prefix != sys.base_prefix:  # this suite runs in a venv: the copy uses it too
        os.symlink(sys.prefix, site / '.venv')
    edit_like_a_user(site)
    return site


def test_the_whole_suite_passes_on_a_copy_edited_as_a_user_would(edited_site):
    """./test.sh with no arguments (all tests, coverage, lint) exits 0 on the edited copy."""
    # The copy's suite measures itself; none of this suite's coverage reaches it.
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(('COVERAGE_', 'PYTEST_'))}
    done = subprocess.run(['./test.sh'], cwd=edited_site, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=SUITE_DEADLINE)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    covered = {line.split()[0]: line.split()[-1] for line in done.stdout.splitlines()
               if line.endswith('%') and line.split()[0].endswith('.py')}
    assert covered.get('shop.py') == '100%', 'the new module is not measured in full'
    assert covered.get('landing.py') == '100%'
