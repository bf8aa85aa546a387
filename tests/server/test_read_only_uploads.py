"""The hardened container (--read-only) and request bodies: never a 500; uploads with a tmpfs.

CherryPy spills multipart file parts over 1,000 bytes to a temporary file. In a read-only
container there is no writable temporary folder: the shipped app never reads a body (no
handler of it takes one), and an app that takes uploads is given a tmpfs at /tmp, as
docs/load-balancer.md says. Real image, real engine; names of this module's own.
"""
import base64
import json

import pytest

from containers import Container, Containers, build, docker, require_base_image, require_engine

pytestmark = pytest.mark.slow

TAG = 'landing:pytest-read-only-uploads'
HARDENED = ('--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges')
HEALTHY_DEADLINE = 20

# Runs inside the container: one multipart POST of a 5 KB file part, the answer as JSON.
POST_FILE = """
import base64, http.client, json, sys
boundary = 'b0undary'
body = ('--' + boundary + '\\r\\nContent-Disposition: form-data; name="file"; filename="a.bin"'
        '\\r\\nContent-Type: application/octet-stream\\r\\n\\r\\n' + 'x' * 5000 + '\\r\\n--'
        + boundary + '--\\r\\n').encode()
conn = http.client.HTTPConnection('127.0.0.1', 80, timeout=5)
conn.request('POST', sys.argv[1], body=body,
             headers={'Content-Type': 'multipart/form-data; boundary=' + boundary})
answer = conn.getresponse()
print(json.dumps({'status': answer.status, 'body': base64.b64encode(answer.read()).decode()}))
"""

# An app of the user's that takes an upload: landing with one more handler.
UPLOAD_APP = """
import cherrypy, landing

@cherrypy.expose
def upload(self, file):
    return str(len(file.file.read()))

landing.Landing.upload = upload
landing.main()
"""


@pytest.fixture(scope='module')
def image():
    """The runtime image of this checkout, under this module's own tag."""
    require_engine()
    require_base_image()
    build(TAG)
    return TAG


@pytest.fixture
def containers(image):
    """Containers for one test, removed (by name) when it ends."""
    started = Containers()
    try:
        yield started
    finally:
        started.remove_all()


def post_file(container, path):
    """POST a 5 KB multipart file part to `path` from inside `container`; (status, body)."""
    answer = json.loads(container.exec('python', '-c', POST_FILE, path).stdout)
    return answer['status'], base64.b64decode(answer['body'])


def start_upload_app(containers, image, *options):
    """Run the upload app detached without a network, with `options`; return its Container."""
    name = containers._new_name()  # recorded, so the fixture removes it whatever happens
    docker('run', '--detach', '--name', name, '--network', 'none', *options, image,
           'python', '-c', UPLOAD_APP)
    return Container(name)


@pytest.mark.parametrize('path', ['/', '/healthcheck', '/nope', '/static/x', '/logo.png'])
def test_no_multipart_body_gets_a_500_in_the_hardened_container(containers, image, path):
    """The shipped app reads no body: 404/405, never the temporary-folder 500."""
    container = containers.start(image, *HARDENED)
    container.wait_healthy(HEALTHY_DEADLINE)
    status, body = post_file(container, path)
    assert 400 <= status < 500
    assert b'Traceback' not in body


def test_an_upload_app_given_a_tmpfs_takes_uploads_read_only(containers, image):
    """--tmpfs /tmp (Compose: tmpfs, Kubernetes: an emptyDir) gives CherryPy its folder."""
    container = start_upload_app(containers, image, *HARDENED, '--tmpfs', '/tmp')
    container.wait_healthy(HEALTHY_DEADLINE)
    assert post_file(container, '/upload') == (200, b'5000')


def test_without_the_tmpfs_an_upload_gets_our_500_page_not_a_traceback(containers, image):
    """What the docs warn of: no temporary folder, a 500 — our page, no traceback or path."""
    container = start_upload_app(containers, image, *HARDENED)
    container.wait_healthy(HEALTHY_DEADLINE)
    status, body = post_file(container, '/upload')
    assert status == 500
    assert b'Traceback' not in body
    assert b'/opt/venv' not in body
