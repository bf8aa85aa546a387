"""compose.yaml: the Compose Specification, run.sh's image and hardening, and a dev service.

The fast tests read the file, and validate it against the Compose Specification's JSON
schema that Debian's docker-compose package ships. The slow ones run it on the engine with
Compose (`docker compose` where the plugin is, else docker-compose 1.29): up, healthy, a
request, an edit for the dev service, down. Containers are probed through `docker exec`
on their own loopback. Without Compose, the schema or an engine they skip with the reason;
REQUIRE_DOCKER=1 (CI) makes that a failure.
"""
import glob
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port, landing, wait_until
from containers import (
    BUILD_TIMEOUT,
    Container,
    copy_checkout,
    docker,
    edit_page,
    require_base_image,
    require_engine,
    unavailable,
)

COMPOSE_FILE = os.path.join(ROOT, 'compose.yaml')
# Debian's docker-compose (1.29) validates with the Compose Specification's schema.
SCHEMA_GLOB = '/usr/lib/python3/dist-packages/compose/config/compose_spec.json'
HEALTHY_DEADLINE = 10
LIVE_DEADLINE = 5
HARDENING = {'read_only': True, 'cap_drop': ['ALL'],
             'security_opt': ['no-new-privileges:true'], 'image': '${LANDING_IMAGE:-landing}',
             'restart': 'unless-stopped'}
@pytest.fixture(scope='module')
def compose_file():
    """compose.yaml as Compose reads it (YAML anchors and merge keys resolved)."""
    with open(COMPOSE_FILE) as file:
        return yaml.safe_load(file)


def dockerfile_default_base():
    """Return the Dockerfile's default PYTHON_IMAGE (its ARG line)."""
    with open(os.path.join(ROOT, 'Dockerfile')) as file:
        return re.search(r'^ARG PYTHON_IMAGE=(\S+)$', file.read(), re.MULTILINE).group(1)


# ---- The file -------------------------------------------------------------------------------

def test_compose_file_follows_the_compose_specification(compose_file):
    """compose.yaml validates against the Compose Specification's JSON schema."""
    try:
        import jsonschema
    except ImportError:
        unavailable('jsonschema is not installed (requirements-kubernetes.txt pins it)')
    schemas = glob.glob(SCHEMA_GLOB)
    if not schemas:
        unavailable(f'no Compose Specification schema at {SCHEMA_GLOB} '
                    '(apt-get install docker-compose ships it)')
    with open(schemas[0]) as file:
        schema = yaml.safe_load(file)
    # The file names draft 2019-09 by its http:// address, which jsonschema does not look up.
    assert schema['$schema'].startswith('http://json-schema.org/draft/2019-09/')
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in validator.iter_errors(compose_file)]
    assert errors == []


def test_web_serves_the_runtime_image_hardened_with_its_health_check_on_port(compose_file):
    """web: the runtime target, hardened, restarted after a crash, PORT -> 80."""
    web = compose_file['services']['web']
    assert web['build']['target'] == 'runtime'
    assert web['build']['context'] == '.'
    # pip's index is reached through the host's network, on engines with or without a bridge.
    assert web['build']['network'] == 'host'
    assert HARDENING.items() <= web.items()
    # The image's own HEALTHCHECK applies: the file neither replaces nor disables it.
    assert 'healthcheck' not in web
    assert web['ports'] == ['${PORT:-80}:80']
    assert 'profiles' not in web


def test_web_trusts_no_proxy_unless_told_and_passes_the_settings_on(compose_file):
    """Its port faces clients: TRUSTED_PROXIES (and ALLOWED_HOSTS) empty unless set."""
    assert compose_file['services']['web']['environment'] == {
        'TRUSTED_PROXIES': '${TRUSTED_PROXIES:-}',
        'FORWARDED_HEADER': '${FORWARDED_HEADER:-x-forwarded-for}',
        'ALLOWED_HOSTS': '${ALLOWED_HOSTS:-}'}


def test_build_defaults_to_the_dockerfile_base_and_takes_python_image(compose_file):
    """PYTHON_IMAGE picks the base, as for run.sh; unset, it is the Dockerfile's default."""
    args = compose_file['services']['web']['build']['args']
    assert args == {'PYTHON_IMAGE': f'${{PYTHON_IMAGE:-{dockerfile_default_base()}}}'}


def test_dev_service_mounts_the_source_read_only_over_app_and_reloads(compose_file):
    """The dev service (profile dev): same image and hardening, the source over /app, RELOAD=1."""
    dev = compose_file['services']['dev']
    assert dev['profiles'] == ['dev']
    assert dev['build'] == compose_file['services']['web']['build']
    assert HARDENING.items() <= dev.items()
    assert dev['environment'] == {'RELOAD': '1'}
    assert dev['volumes'] == [{'type': 'bind', 'source': '.', 'target': '/app',
                               'read_only': True}]
    assert dev['ports'] == ['${PORT:-8080}:80']


# ---- The file on the engine -----------------------------------------------------------------

def compose_command():
    """Return the Compose command line: the v2 plugin where installed, else docker-compose."""
    try:
        if docker('compose', 'version', check=False).returncode == 0:
            return ['docker', 'compose']
        subprocess.run(['docker-compose', 'version'], capture_output=True, check=True,
                       timeout=60)
    except (FileNotFoundError, subprocess.CalledProcessError):
        unavailable('no Compose: neither `docker compose` nor docker-compose runs '
                    '(apt-get install docker-compose)')
    return ['docker-compose']


class Project:
    """One Compose project of a folder's compose.yaml, with its own name, image tag and port."""

    def __init__(self, folder):
        self.name = f'landing-pytest-{uuid.uuid4().hex[:10]}'
        self.image = f'landing:{self.name}'
        self.port = free_port()
        # The file as it is: no override, on engines with or without a bridge network.
        self.files = ['-f', str(folder / 'compose.yaml')]
        self.command = compose_command()
        self.env = dict(os.environ, LANDING_IMAGE=self.image, PORT=str(self.port))

    def run(self, *args, timeout=120):
        """Run Compose with `args` on this project; fail the test if it exits non-zero."""
        result = subprocess.run([*self.command, '--project-name', self.name, *self.files, *args],
                                env=self.env, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f'{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
        return result

    def containers(self, service=None):
        """Return the IDs of the project's containers (of `service` only, if given)."""
        filters = ['--filter', f'label=com.docker.compose.project={self.name}']
        if service:
            filters += ['--filter', f'label=com.docker.compose.service={service}']
        return docker('ps', '--all', '--quiet', *filters).stdout.split()

    def up(self, service):
        """Build and start `service` detached; return its Container."""
        self.run('up', '--detach', '--build', service, timeout=BUILD_TIMEOUT)
        (container,) = self.containers(service)
        return Container(container)

    def remove(self):
        """Take the project down; remove whatever it left behind and its image tag."""
        subprocess.run([*self.command, '--project-name', self.name, *self.files, '--profile',
                        'dev', 'down', '--volumes', '--timeout', '5'], env=self.env,
                       capture_output=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
        for container in self.containers():
            docker('rm', '--force', '--volumes', container, check=False)
        if docker('network', 'inspect', f'{self.name}_default', check=False).returncode == 0:
            docker('network', 'rm', f'{self.name}_default', check=False)
        docker('rmi', self.image, check=False)


@pytest.fixture
def project_of():
    """Compose projects on the engine for a test; each is taken down at the end, failed or not."""
    require_engine()
    require_base_image()
    compose_command()
    projects = []

    def start(folder):
        project = Project(folder)
        projects.append(project)
        return project

    yield start
    for project in projects:
        project.remove()


def crash(container):
    """Kill the container's server from the host, as the kernel's OOM killer would."""
    pid = int(docker('inspect', '--format', '{{.State.Pid}}', container.name).stdout)
    os.kill(pid, signal.SIGKILL)


def restarts(container):
    """Return how many times Docker has started the container again."""
    return int(docker('inspect', '--format', '{{.RestartCount}}', container.name).stdout)


@pytest.mark.slow
def test_compose_up_serves_the_hardened_image_healthy_then_down_removes_it(project_of):
    """`up` builds and serves web: healthy by the image's check, hardened, answering; `down`.

    A crash of its server is not the end: Docker starts it again (restart: unless-stopped).
    """
    project = project_of(Path(ROOT))
    web = project.up('web')
    web.wait_healthy(HEALTHY_DEADLINE)
    status, _, body = web.http('GET', '/')
    assert (status, body) == (200, landing.PAGE.encode())
    host = docker('inspect', '--format',
                  '{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.CapDrop}} '
                  '{{json .HostConfig.SecurityOpt}} {{.HostConfig.RestartPolicy.Name}} '
                  '{{json .HostConfig.PortBindings}}',
                  web.name).stdout.split()
    assert host[:4] == ['true', '["ALL"]', '["no-new-privileges:true"]', 'unless-stopped']
    assert f'"HostPort":"{project.port}"' in host[4]
    assert '"80/tcp"' in host[4]

    crash(web)
    wait_until(lambda: restarts(web) == 1, deadline=10, what='web started again')
    wait_until(lambda: web.page('/healthcheck') == 'Yay\n', deadline=HEALTHY_DEADLINE,
               what='web serving again')

    project.run('down', '--timeout', '5')
    assert project.containers() == []


@pytest.mark.slow
def test_compose_dev_serves_an_edit_to_the_mounted_source_within_2_s(project_of, tmp_path):
    """The dev service mounts the source read-only over /app; an edit is live without a restart."""
    source = copy_checkout(tmp_path / 'source')
    project = project_of(source)
    dev = project.up('dev')
    mounts = docker('inspect', '--format', '{{json .Mounts}}', dev.name).stdout
    assert f'"Source":"{source}","Destination":"/app"' in mounts
    assert '"RW":false' in mounts
    wait_until(lambda: dev.page('/healthcheck') == 'Yay\n', what='dev serving')

    marker = edit_page(source, 'Edited').decode()
    edited = time.monotonic()
    wait_until(lambda: marker in (dev.page() or ''), deadline=LIVE_DEADLINE,
               what='the edit live')
    print(f'compose dev: edit live after {time.monotonic() - edited:.1f} s')
