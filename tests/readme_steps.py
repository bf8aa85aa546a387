"""The README's fenced blocks, and the changes its `add to` / `new` blocks ask a newcomer to make.

A block names its file in the info string, ```python title="landing.py". A title starting
`add to ` or `new ` is a change to make; `apply_changes` makes each one in a folder holding the
app, and makes it once: a folder where the newcomer already followed the README is left as it is.
"""
import collections
import os
import re

from conftest import ROOT

README = os.path.join(ROOT, 'README.md')

# The changes the README asks for, by the titles of their blocks.
ADD_PAGE = 'add to landing.py, class Landing'
NEW_FILE = 'new static/robots.txt'
ADD_CONFIG = 'add to prod.conf'
ADD_PAGE_TEST = 'add to tests/site/test_landing.py'
ADD_FILE_TEST = 'add to tests/site/test_static.py'
CHANGES = {ADD_PAGE, NEW_FILE, ADD_CONFIG, ADD_PAGE_TEST, ADD_FILE_TEST}

Block = collections.namedtuple('Block', 'doc language title text')

_FENCE = re.compile(
    r'^```(?P<language>[\w-]*)(?:[ \t]+title="(?P<title>[^"]*)")?[ \t]*\n(?P<text>.*?)^```[ \t]*$',
    re.MULTILINE | re.DOTALL)


def read(path):
    """Return the text of the file at `path`."""
    with open(path, encoding='utf-8') as handle:
        return handle.read()


def fenced_blocks(path):
    """Return the fenced code blocks of the Markdown file at `path`, in order."""
    return [Block(os.path.relpath(path, ROOT), match['language'], match['title'], match['text'])
            for match in _FENCE.finditer(read(path))]


def readme_block(title):
    """Return the text of the one README block with `title`."""
    found = [block.text for block in fenced_blocks(README) if block.title == title]
    assert len(found) == 1, f'README.md has {len(found)} blocks titled {title!r}, not 1'
    return found[0]


def is_change(title):
    """Tell whether a block title names a change to make, not a copy of a file as it is."""
    return title.startswith(('add to ', 'new '))


def add_to_class(source, class_name, snippet):
    """Return `source` with `snippet` appended to the body of class `class_name`."""
    lines = source.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f'class {class_name}'))
    end = next(i for i in range(start + 1, len(lines))
               if lines[i].strip() and not lines[i][0].isspace())
    while not lines[end - 1].strip():
        end -= 1
    return ''.join(lines[:end] + ['\n', snippet] + lines[end:])


def append(path, snippet, blank_lines):
    """Append `snippet` to the file at `path` after `blank_lines` empty lines."""
    text = read(path).rstrip('\n') + '\n' * (blank_lines + 1) + snippet
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)


def apply_changes(folder, titles=CHANGES):
    """Make each README change in `titles` to the app in `folder`, unless it is made already."""
    landing_py = folder / 'landing.py'
    steps = {
        ADD_PAGE: (landing_py, lambda snippet: landing_py.write_text(
            add_to_class(landing_py.read_text(), 'Landing', snippet))),
        NEW_FILE: (folder / 'static' / 'robots.txt',
                   (folder / 'static' / 'robots.txt').write_text),
        ADD_CONFIG: (folder / 'prod.conf',
                     lambda snippet: append(folder / 'prod.conf', snippet, blank_lines=1)),
        ADD_PAGE_TEST: (folder / 'tests' / 'site' / 'test_landing.py', lambda snippet: append(
            folder / 'tests' / 'site' / 'test_landing.py', snippet, blank_lines=2)),
        ADD_FILE_TEST: (folder / 'tests' / 'site' / 'test_static.py', lambda snippet: append(
            folder / 'tests' / 'site' / 'test_static.py', snippet, blank_lines=2)),
    }
    for title in titles:
        path, make = steps[title]
        snippet = readme_block(title)
        if not (path.exists() and snippet in path.read_text()):
            make(snippet)


def undo_changes(folder):
    """Take every README change out of the app in `folder`, where a newcomer made it."""
    (folder / 'static' / 'robots.txt').unlink(missing_ok=True)
    for title, name in ((ADD_PAGE, 'landing.py'), (ADD_CONFIG, 'prod.conf'),
                        (ADD_PAGE_TEST, 'tests/site/test_landing.py'),
                        (ADD_FILE_TEST, 'tests/site/test_static.py')):
        path = folder / name
        if path.exists():
            path.write_text(path.read_text().replace(readme_block(title), ''))
