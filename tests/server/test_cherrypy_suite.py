"""CherryPy's own test suite through the project's stack, beside cheroot (docs/cherrypy.md)."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

import cherrypy_suite
from conftest import ROOT

SCRIPT = os.path.join(ROOT, 'tests', 'cherrypy_suite.py')
# The floor of modules and ceiling of deliberate differences.
MIN_MODULES = 30
MAX_DELIBERATE = 15


def test_the_modules_exist_and_docs_name_each_with_the_lists_kept_short():
    """Every module run is in CherryPy's wheel and named in docs/cherrypy.md; few deliberate."""
    with open(cherrypy_suite.DOC, encoding='utf-8') as doc:
        text = doc.read()
    assert len(cherrypy_suite.MODULES) >= MIN_MODULES
    for module in cherrypy_suite.MODULES:
        assert importlib.util.find_spec(f'cherrypy.test.{module}') is not None, module
        assert module in text, module
    kinds = list(cherrypy_suite.listed().values())
    assert 0 < kinds.count('deliberate') <= MAX_DELIBERATE
    # Every other difference is granian's, each row naming the test that pins it.
    assert set(kinds) == {'deliberate', 'granian'}


def test_each_pin_the_granian_rows_name_is_a_test_that_exists():
    """A row decided by granian names the test that pins it: that test is really there."""
    with open(cherrypy_suite.DOC, encoding='utf-8') as doc:
        section = doc.read().split(cherrypy_suite.KINDS['granian'], 1)[1].split('\n## ', 1)[0]
    pins = re.findall(r'`(tests/[\w/]+\.py)::(test_\w+)`', section)
    assert len(pins) >= 10
    for path, name in pins:
        with open(os.path.join(ROOT, path), encoding='utf-8') as source:
            assert f'def {name}(' in source.read(), f'{path}::{name}'


@pytest.mark.slow
def test_every_test_passing_on_cheroot_passes_on_the_stack_or_is_listed():
    """Run both servers (about 3.5 min): no new difference, no listed one that passes now."""
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True,
                          timeout=1200, check=False)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = re.findall(r'^(test_\w+) +(\d+)/(\d+)/(\d+) +(\d+)/(\d+)/(\d+)$', done.stdout,
                       re.MULTILINE)
    assert [row[0] for row in table] == list(cherrypy_suite.MODULES)
    # Each module ran on both servers (a module that fails to import runs no test at all).
    assert all(sum(map(int, row[1:4])) > 0 and sum(map(int, row[4:7])) > 0 for row in table)
