"""deploy/kubernetes: valid for Kubernetes 1.37, and in agreement with the image and the app.

Two kinds of proof, both offline:
- every manifest validates against the Kubernetes 1.37 JSON schemas that `kubernetes-validate`
  ships, in strict mode (an unknown or misspelt field fails, not only a missing one);
- the manifests are read beside the Dockerfile, the image test and the app's own settings code,
  and any disagreement fails: probe path and port, the UID, the read-only/no-capabilities
  settings the image test runs the image with, and the grace period against the app's
  shutdown timeout.
"""
import functools
import glob
import ipaddress
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

import healthcheck
import serving.settings
from conftest import ROOT, SEED, request

KUBERNETES_VERSION = '1.37'
DEPLOY_DIR = os.path.join(ROOT, 'deploy', 'kubernetes')
DOCKERFILE = os.path.join(ROOT, 'Dockerfile')
IMAGE_TEST = os.path.join(ROOT, 'tests', 'delivery', 'test_image.py')
KUSTOMIZATION = 'kustomization.yaml'
MANIFESTS = sorted(
    name for name in os.listdir(DEPLOY_DIR)
    if name.endswith(('.yaml', '.yml')) and name != KUSTOMIZATION)
REQUIRED_KINDS = {'Deployment', 'Service', 'HorizontalPodAutoscaler', 'PodDisruptionBudget'}
# Seconds of preStop pause that let endpoint removal reach every node's proxy and ingress.
MIN_PRESTOP_PAUSE = 5


@functools.cache
def load_documents(name):
    """Return the non-empty YAML documents of deploy/kubernetes/`name` (parsed once; read-only)."""
    with open(os.path.join(DEPLOY_DIR, name)) as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def all_resources():
    """Return every resource in the manifests, as (file name, resource) pairs."""
    return [(name, doc) for name in MANIFESTS for doc in load_documents(name)]


def only(kind):
    """Return the one resource of `kind` in the manifests."""
    found = [doc for _, doc in all_resources() if doc['kind'] == kind]
    assert len(found) == 1, f'expected exactly one {kind}, found {len(found)}'
    return found[0]


def dockerfile_final_stage():
    """Return what the default build target runs with, as (INSTRUCTION, arguments) pairs.

    That is the last stage's instructions, preceded by those of the earlier stage it is built
    FROM, if any (`FROM runtime`), and so on; continuation lines are joined.
    """
    if not os.path.exists(DOCKERFILE):
        if os.environ.get('REQUIRE_DOCKER') == '1':
            pytest.fail(f'{DOCKERFILE} is missing')
        pytest.skip('no Dockerfile yet: nothing to compare the manifests with')
    stages, pending = [], ''
    with open(DOCKERFILE) as stream:
        for line in stream:
            stripped = line.strip()
            if not stripped or stripped.startswith('#'):
                continue
            if stripped.endswith('\\'):
                pending += stripped[:-1] + ' '
                continue
            keyword, _, arguments = (pending + stripped).partition(' ')
            pending = ''
            if keyword.upper() == 'FROM':
                stages.append([])
            if stages:  # ARGs before the first FROM only parameterise FROM lines
                stages[-1].append((keyword.upper(), arguments.strip()))
    names = {}
    for stage in stages:
        words = stage[0][1].split()
        names[words[-1].lower() if len(words) == 3 else None] = stage
        base = names.get(words[0].lower())
        if base is not None and base is not stage:
            stage[:0] = base
    return stages[-1]


def dockerfile_env(stage):
    """Return the variables the image's ENV instructions set."""
    env = {}
    for keyword, arguments in stage:
        if keyword != 'ENV':
            continue
        words = shlex.split(arguments)
        if '=' not in words[0]:  # legacy form: ENV NAME value with spaces
            env[words[0]] = arguments.split(None, 1)[1]
            continue
        env.update(word.split('=', 1) for word in words)
    return env


def dockerfile_uid(stage):
    """Return the numeric UID the image runs as (USER, or the UID of the user USER names)."""
    users = [arguments for keyword, arguments in stage if keyword == 'USER']
    assert users, 'the Dockerfile sets no USER: the image would run as root'
    user = users[-1].split(':')[0]
    if user.isdigit():
        return int(user)
    runs = ' '.join(arguments for keyword, arguments in stage if keyword == 'RUN')
    found = re.search(rf'(?:-u|--uid)[ =](\d+)\b[^&;|]*\b{re.escape(user)}\b', runs)
    assert found, f'USER {user} is created with no explicit UID in the Dockerfile'
    return int(found.group(1))


def container():
    """Return the Deployment's one container."""
    containers = only('Deployment')['spec']['template']['spec']['containers']
    assert len(containers) == 1, 'the pod is expected to run the landing container alone'
    return containers[0]


def pod_spec():
    """Return the Deployment's pod spec."""
    return only('Deployment')['spec']['template']['spec']


def container_env():
    """Return the environment the app sees in a pod: the image's ENV, then the Deployment's."""
    env = dockerfile_env(dockerfile_final_stage()) if os.path.exists(DOCKERFILE) else {}
    for variable in container().get('env', []):
        assert 'value' in variable, f"{variable['name']}: only literal values are checked"
        env[variable['name']] = variable['value']
    return env


def app_settings():
    """Return the server settings the app computes from the pod's environment."""
    return serving.settings.Settings.from_environ(container_env(), SEED)


def named_port(port):
    """Resolve a probe's or Service's target port (a name or a number) to the container port."""
    ports = container()['ports']
    if isinstance(port, int):
        assert port in [p['containerPort'] for p in ports], f'no container port {port}'
        return port
    by_name = {p.get('name'): p['containerPort'] for p in ports}
    assert port in by_name, f'no container port named {port!r}'
    return by_name[port]


def probes():
    """Return the container's startup, readiness and liveness probes by kind."""
    return {kind: container().get(f'{kind}Probe') for kind in ('startup', 'readiness', 'liveness')}


def failure_budget(probe):
    """Return the seconds a probe takes to act on a pod that stopped answering."""
    return probe.get('failureThreshold', 3) * (
        probe.get('periodSeconds', 10) + probe.get('timeoutSeconds', 1))


def image_test_source():
    """Return test_image.py's text, which runs the real image with hardening flags."""
    if not os.path.exists(IMAGE_TEST):
        if os.environ.get('REQUIRE_DOCKER') == '1':
            pytest.fail(f'{IMAGE_TEST} is missing')
        pytest.skip('no tests/delivery/test_image.py yet: nothing to compare the manifests with')
    with open(IMAGE_TEST) as stream:
        return stream.read()


# ---- The manifests are valid Kubernetes 1.37 objects ------------------------------------

def schemas():
    """Return kubernetes_validate; skip without it, or fail when REQUIRE_KUBERNETES=1 (CI)."""
    try:
        import kubernetes_validate
    except ImportError:
        reason = 'the Kubernetes schemas are not installed (requirements-kubernetes.txt)'
        if os.environ.get('REQUIRE_KUBERNETES') == '1':
            pytest.fail(f'REQUIRE_KUBERNETES=1 but {reason}')
        pytest.skip(reason)
    return kubernetes_validate


@pytest.mark.parametrize('name', MANIFESTS)
def test_manifest_validates_strictly_against_the_kubernetes_schemas(name):
    """Every resource in the file matches the 1.37 schema exactly: no unknown fields."""
    kubernetes_validate = schemas()
    documents = load_documents(name)
    assert documents, f'{name} holds no resource'
    for resource in documents:
        try:
            validated = kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = '.'.join(str(part) for part in error.path)
            pytest.fail(f"{name}: {resource['kind']} {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f'{name}: {error.message}')
        # No silent fallback to an older schema set.
        assert validated == KUBERNETES_VERSION


def test_manifests_declare_deployment_service_autoscaler_and_disruption_budget():
    """The folder holds exactly one of each resource the deployment needs, all named landing."""
    kinds = [doc['kind'] for _, doc in all_resources()]
    assert sorted(kinds) == sorted(REQUIRED_KINDS)
    assert {doc['metadata']['name'] for _, doc in all_resources()} == {'landing'}


def test_kustomization_deploys_every_manifest_in_the_folder():
    """`kubectl apply -k deploy/kubernetes` applies each manifest file, and only those."""
    kustomization, = load_documents(KUSTOMIZATION)
    assert kustomization['apiVersion'] == 'kustomize.config.k8s.io/v1beta1'
    assert kustomization['kind'] == 'Kustomization'
    assert sorted(kustomization['resources']) == MANIFESTS


def test_kustomization_images_entry_retags_the_deployment_image():
    """The images: entry names the Deployment's image, so setting newName/newTag retags it."""
    kustomization, = load_documents(KUSTOMIZATION)
    image_name = container()['image'].rsplit(':', 1)[0]
    assert [entry['name'] for entry in kustomization['images']] == [image_name]


# ---- Objects point at each other ---------------------------------------------------------

def test_deployment_selector_matches_its_pod_labels():
    """The Deployment owns the pods its template makes."""
    deployment = only('Deployment')
    selector = deployment['spec']['selector']['matchLabels']
    assert selector.items() <= deployment['spec']['template']['metadata']['labels'].items()


@pytest.mark.parametrize('kind, selector', [
    ('Service', lambda doc: doc['spec']['selector']),
    ('PodDisruptionBudget', lambda doc: doc['spec']['selector']['matchLabels']),
])
def test_selector_picks_the_deployment_pods(kind, selector):
    """The Service routes to, and the disruption budget protects, the Deployment's pods."""
    labels = only('Deployment')['spec']['template']['metadata']['labels']
    assert selector(only(kind)).items() <= labels.items()


def test_service_serves_port_80_from_the_container_port():
    """The Service listens on 80 and forwards to the port the container declares."""
    port, = only('Service')['spec']['ports']
    assert port['port'] == 80
    assert named_port(port['targetPort']) == container()['ports'][0]['containerPort']


def test_autoscaler_scales_the_deployment_on_cpu_around_its_replica_count():
    """The HPA targets the Deployment, on CPU, and its range holds the 3 replicas."""
    hpa = only('HorizontalPodAutoscaler')
    target = hpa['spec']['scaleTargetRef']
    assert (target['kind'], target['name']) == ('Deployment', 'landing')
    assert [metric['resource']['name'] for metric in hpa['spec']['metrics']] == ['cpu']
    replicas = only('Deployment')['spec']['replicas']
    assert replicas == 3
    assert hpa['spec']['minReplicas'] <= replicas <= hpa['spec']['maxReplicas']
    # CPU utilization is a share of the request: without one the HPA cannot compute it.
    assert 'cpu' in container()['resources']['requests']


def test_disruption_budget_lets_a_node_drain_proceed():
    """At the HPA's minimum, the budget still allows one pod to be evicted at a time."""
    spec = only('PodDisruptionBudget')['spec']
    minimum = only('HorizontalPodAutoscaler')['spec']['minReplicas']
    if 'maxUnavailable' in spec:
        assert spec['maxUnavailable'] >= 1
    else:
        assert spec['minAvailable'] < minimum


def test_container_has_resource_requests_and_limits():
    """CPU and memory are both requested (scheduling, HPA) and limited (noisy neighbours)."""
    resources = container()['resources']
    for section in ('requests', 'limits'):
        assert {'cpu', 'memory'} <= resources[section].keys(), section


# ---- Probes and draining agree with the app ---------------------------------------------

@pytest.mark.parametrize('kind', ['startup', 'readiness', 'liveness'])
def test_probe_gets_the_health_check_on_the_app_port(kind):
    """Each probe asks /healthcheck, the path the image's HEALTHCHECK asks, on the app's port."""
    probe = probes()[kind]
    assert probe, f'the container has no {kind} probe'
    get = probe['httpGet']
    health_url = urlsplit(healthcheck.default_url(container_env()))
    assert get['path'] == health_url.path == '/healthcheck'
    assert get.get('scheme', 'HTTP') == 'HTTP'
    assert named_port(get['port']) == app_settings().port == health_url.port


def test_container_port_is_the_port_the_app_binds():
    """The container port named http is the port landing.py listens on with the pod's env."""
    assert named_port('http') == app_settings().port


def test_probe_path_answers_200_on_the_real_app(app_port):
    """The probe path is served by the app (no redirect): what the kubelet will get."""
    path = probes()['readiness']['httpGet']['path']
    status, _, body = request(app_port, 'GET', path)
    assert (status, body) == (200, b'Yay')


def test_liveness_is_more_tolerant_than_readiness():
    """A slow pod leaves the endpoints quickly but is restarted only after a long outage."""
    readiness, liveness = probes()['readiness'], probes()['liveness']
    assert failure_budget(liveness) >= 3 * failure_budget(readiness)
    assert liveness.get('failureThreshold', 3) >= readiness.get('failureThreshold', 3)
    assert liveness.get('timeoutSeconds', 1) >= readiness.get('timeoutSeconds', 1)


def test_deployment_env_names_only_variables_the_app_reads():
    """Every env var the Deployment sets is one the serving package reads (a typo is ignored)."""
    source = ''.join(Path(path).read_text()
                     for path in glob.glob(os.path.join(ROOT, 'serving', '*.py')))
    for variable in container().get('env', []):
        assert re.search(rf"""['"]{variable['name']}['"]""", source), variable['name']
    app_settings()  # and the app accepts each value (ConfigError otherwise)


@pytest.mark.parametrize('peer, trusted', [
    ('10.244.1.7', True),     # a pod on kind's and flannel's pod network
    ('10.42.0.9', True),      # k3s
    ('172.31.5.9', True),     # an ALB (IP mode) or a pod in AWS's default VPC
    ('192.168.3.4', True),    # Calico's default pool
    ('fd12:3456::1', True),   # an IPv6 pod network (unique local)
    ('8.8.8.8', False), ('203.0.113.9', False), ('2001:db8::1', False),
])
def test_pods_trust_the_private_ranges_ingresses_send_from_and_nothing_public(peer, trusted):
    """TRUSTED_PROXIES covers the pod network and VPC ranges of common clusters, all private."""
    networks = app_settings().trusted_proxies
    assert networks
    assert all(network.is_private for network in networks)
    assert any(ipaddress.ip_address(peer) in network for network in networks) is trusted
    assert app_settings().forwarded_header == 'x-forwarded-for'  # what ingresses and ALBs write


def test_pre_stop_pause_lets_endpoints_go_before_sigterm():
    """PreStop pauses long enough for every proxy to drop the pod before the app hears SIGTERM."""
    pause = container()['lifecycle']['preStop']['sleep']['seconds']
    assert pause >= MIN_PRESTOP_PAUSE


def test_grace_period_outlasts_pause_plus_app_shutdown_timeout():
    """SIGKILL comes only after the pause and the app's own drain and shutdown have run out.

    The app's numbers are what Settings.from_environ makes of the pod's environment, so a
    SHUTDOWN_TIMEOUT (or DRAIN_SECONDS) set in the Deployment is the one that counts.
    """
    settings = app_settings()
    pause = container()['lifecycle']['preStop']['sleep']['seconds']
    after_sigterm = settings.drain_seconds + settings.shutdown_timeout
    grace = pod_spec()['terminationGracePeriodSeconds']
    assert grace > pause + after_sigterm


def test_rolling_update_keeps_every_replica_serving():
    """A rollout adds a pod before taking one away, so capacity never drops."""
    rolling = only('Deployment')['spec']['strategy']['rollingUpdate']
    assert rolling['maxUnavailable'] == 0
    assert rolling['maxSurge'] >= 1


# ---- Security matches the image ------------------------------------------------------------

def test_pod_runs_as_the_image_user_and_never_as_root():
    """RunAsUser is the Dockerfile's UID, and Kubernetes refuses to start the pod as root."""
    security = pod_spec()['securityContext']
    assert security['runAsNonRoot'] is True
    assert security['runAsUser'] == dockerfile_uid(dockerfile_final_stage()) == 10001


def test_pod_uses_the_runtime_default_seccomp_profile():
    """System calls are filtered by the container runtime's default profile."""
    assert pod_spec()['securityContext']['seccompProfile'] == {'type': 'RuntimeDefault'}


def test_non_root_process_may_bind_the_container_port():
    """The pod sysctl makes the app's port unprivileged, as Docker does, with no capability."""
    sysctls = {s['name']: s['value'] for s in pod_spec()['securityContext']['sysctls']}
    start = int(sysctls['net.ipv4.ip_unprivileged_port_start'])
    assert start <= container()['ports'][0]['containerPort']


def test_image_exposes_the_container_ports():
    """The Dockerfile's EXPOSE names the ports the Deployment declares: the site and metrics."""
    exposed = [port.split('/')[0] for keyword, arguments in dockerfile_final_stage()
               if keyword == 'EXPOSE' for port in arguments.split()]
    assert [str(port['containerPort']) for port in container()['ports']] == exposed


def test_scrape_annotations_name_the_apps_metrics_port_and_path():
    """prometheus.io/port and /path are where the app serves metrics with the pod's env."""
    annotations = only('Deployment')['spec']['template']['metadata']['annotations']
    assert annotations['prometheus.io/scrape'] == 'true'
    assert annotations['prometheus.io/path'] == '/metrics'
    metrics_port = named_port('metrics')
    assert int(annotations['prometheus.io/port']) == metrics_port
    assert app_settings().metrics_port == metrics_port


def test_the_service_publishes_the_site_not_the_metrics():
    """Clients reach port 80 through the Service; the metrics port stays pod-only."""
    targets = [port['targetPort'] for port in only('Service')['spec']['ports']]
    assert targets == ['http']


# Each docker run flag the image test runs the image with, and the container setting that
# asks the same of Kubernetes.
HARDENING = [
    ('--read-only', r"--read-only\b",
     lambda security: security['readOnlyRootFilesystem'] is True),
    ('--cap-drop ALL', r"""--cap-drop['",\s=]+ALL\b""",
     lambda security: security['capabilities'] == {'drop': ['ALL']}),
    ('--security-opt no-new-privileges', r"no-new-privileges",
     lambda security: security['allowPrivilegeEscalation'] is False),
]


@pytest.mark.parametrize('flag, pattern, holds', HARDENING, ids=[h[0] for h in HARDENING])
def test_container_is_hardened_as_the_image_test_proved_it_runs(flag, pattern, holds):
    """The image test runs the image with `flag`; the container asks Kubernetes for the same."""
    assert re.search(pattern, image_test_source()), (
        f'tests/delivery/test_image.py no longer runs the image with {flag}: '
        'the Deployment relies on that proof')
    assert holds(container()['securityContext'])


def test_container_mounts_a_volume_wherever_the_image_test_needed_tmpfs():
    """Each --tmpfs the image needs under --read-only is an emptyDir in the pod, and no more."""
    tmpfs = set(re.findall(r"""--tmpfs['",\s=]+(/[\w./-]*)""", image_test_source()))
    mounts = {mount['mountPath'] for mount in container().get('volumeMounts', [])}
    assert mounts == tmpfs
