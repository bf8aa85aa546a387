"""Prometheus metrics on METRICS_PORT: what they count, for the whole container, scraped for real.

The real-Prometheus and promtool tests need Debian's `prometheus` package: they skip with the
reason where it is missing, and fail instead with REQUIRE_PROMETHEUS=1 (CI installs it).
"""
import io
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from unittest import mock

import pytest
from prometheus_client.parser import text_string_to_metric_families

import landing
import serving.guard
import serving.request
from conftest import ROOT, free_port, request, wait_until
from serving import exporter, metrics

SLOW_APP = os.path.join(ROOT, 'tests', 'slow_landing.py')
RULES = os.path.join(ROOT, 'deploy', 'prometheus', 'alerts.yaml')


def scrape(port):
    """Return {(name, labels as a sorted tuple): value} from http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape_counted(port, requests):
    """Scrape until the request counter reaches `requests` (workers publish every 0.25 s)."""
    def counted():
        samples = scrape(port)
        return total(samples, 'landing_http_requests_total') >= requests and samples
    return wait_until(counted, deadline=10, what=f'{requests} requests counted')


def total(samples, name, **labels):
    """Sum the samples called `name` whose labels include `labels`."""
    return sum(value for (sample, got), value in samples.items()
               if sample == name and labels.items() <= dict(got).items())


@pytest.fixture
def metered(start_server):
    """Start landing.py with metrics on a free port; return (server, metrics port)."""
    def start(script=None, **env):
        port = free_port()
        served = start_server(env={'METRICS_PORT': str(port), **env}, script=script).wait_ready()
        wait_until(lambda: scrape(port), what='metrics answering')
        return served, port
    return start


def test_requests_are_counted_by_method_route_and_status_class(metered):
    """Each visit counts once under its handler, whatever its query string or 404 path."""
    served, port = metered()
    for query in ('', '?utm_source=a', '?fbclid=b'):
        request(served.port, 'GET', f'/{query}')
    request(served.port, 'HEAD', '/')
    for path in ('/no-such-page', '/x/y/z', '/random-1234'):
        request(served.port, 'GET', path)
    request(served.port, 'GET', '/logo.png')
    request(served.port, 'BREW', '/')
    samples = scrape_counted(port, 9)
    count = 'landing_http_requests_total'
    assert total(samples, count, method='GET', route='Landing.index', status='2xx') == 3
    assert total(samples, count, method='HEAD', route='Landing.index', status='2xx') == 1
    assert total(samples, count, method='GET', route='unmatched', status='4xx') == 3
    assert total(samples, count, route='static', status='2xx') == 1
    assert total(samples, count, method='other', status='4xx') == 1  # no label per method
    routes = {dict(labels)['route'] for name, labels in samples if name == count}
    assert routes <= {'Landing.index', 'HealthCheck.index', 'unmatched', 'static', 'refused'}


def test_latency_histogram_has_buckets_from_1_ms_to_5_s(metered):
    """The duration histogram's buckets fit a landing page; each visit is observed once."""
    served, port = metered()
    for _ in range(4):
        request(served.port, 'GET', '/')
    samples = scrape_counted(port, 4)
    name = 'landing_http_request_duration_seconds_bucket'
    bounds = sorted(float(dict(labels)['le']) for sample, labels in samples
                    if sample == name and dict(labels)['route'] == 'Landing.index')
    assert bounds[0] == 0.001
    assert bounds[-2:] == [5.0, float('inf')]
    assert total(samples, 'landing_http_request_duration_seconds_count',
                 route='Landing.index') == 4


def test_threads_and_process_readings_are_there(metered):
    """Pool size, busy threads, in-flight, and process readings for every process."""
    served, port = metered(THREADS='7')
    request(served.port, 'GET', '/')
    samples = scrape_counted(port, 1)
    assert total(samples, 'landing_threads_total') == 7
    assert total(samples, 'landing_threads_busy') == 0
    assert total(samples, 'landing_http_requests_in_flight') == 0
    processes = {dict(labels)['process'] for name, labels in samples
                 if name == 'process_resident_memory_bytes'}
    assert processes == {'supervisor', 'worker-1'}
    for name in ('process_cpu_seconds_total', 'process_open_fds', 'process_start_time_seconds'):
        assert total(samples, name) > 0


def test_two_workers_count_for_the_whole_container(metered):
    """WORKERS=2: the counts sum over both worker processes (multiprocess mode)."""
    served, port = metered(WORKERS='2')
    for _ in range(40):  # new connections: the kernel spreads them over both workers
        request(served.port, 'GET', '/')
    samples = scrape_counted(port, 40)
    assert total(samples, 'landing_http_requests_total', route='Landing.index') == 40
    assert total(samples, 'landing_threads_total') == 200
    processes = {dict(labels)['process'] for name, labels in samples
                 if name == 'process_resident_memory_bytes'}
    assert processes == {'supervisor', 'worker-1', 'worker-2'}


def test_metrics_are_not_on_the_public_port_nor_in_the_access_log(metered):
    """GET /metrics on the site is a 404; scrapes write no access-log line."""
    served, port = metered()
    assert request(served.port, 'GET', '/metrics')[0] == 404
    for _ in range(3):
        scrape(port)
    assert served.stop() == 0
    assert [line for line in served.stdout().splitlines() if 'metrics' in line] == [
        line for line in served.stdout().splitlines() if '"GET /metrics HTTP/1.1" 404' in line]


def test_metrics_port_0_turns_them_off(start_server):
    """METRICS_PORT=0: no metrics server, no multiprocess folder."""
    served = start_server(env={'METRICS_PORT': '0'}).wait_ready()
    assert not os.path.exists(f'/dev/shm/landing-metrics-{served.proc.pid}')
    assert served.stop() == 0


def test_the_multiprocess_folder_lives_in_shared_memory_and_goes_at_exit(metered):
    """Files under /dev/shm (writable in a read-only container), removed when the server stops."""
    served, _ = metered()
    folder = f'/dev/shm/landing-metrics-{served.proc.pid}'
    assert os.listdir(folder)
    assert served.stop() == 0
    assert not os.path.exists(folder)


def test_a_metrics_port_in_use_stops_start_up_with_one_line(start_server):
    """The metrics port is checked like the site's: one line naming it, exit 1."""
    blocker = start_server().wait_ready()
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'landing.py')],
        env=dict(os.environ, HOST='127.0.0.1', PORT=str(free_port()),
                 METRICS_PORT=str(blocker.port)),
        capture_output=True, text=True, timeout=15)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f'landing: cannot listen on 127.0.0.1:{blocker.port}: Address already in use']


@pytest.mark.slow
def test_a_saturated_pool_shows_before_the_health_check_slows(metered):
    """THREADS=2 and six slow requests: busy threads and in-flight reach the pool size.

    That shows on /metrics while a fresh /healthcheck waits for a thread: the saturation an
    operator must see before load balancers take every pod out of rotation.
    """
    served, port = metered(script=SLOW_APP, THREADS='2')
    slow = [threading.Thread(target=request, args=(served.port, 'GET', '/slow?seconds=4'),
                             kwargs={'timeout': 30}) for _ in range(6)]
    for thread in slow:
        thread.start()

    def saturated():
        samples = scrape(port)
        busy = total(samples, 'landing_threads_busy')
        in_flight = total(samples, 'landing_http_requests_in_flight')
        return busy == 2 and in_flight == 2 and (busy, in_flight)
    busy, in_flight = wait_until(saturated, deadline=10, what='saturation on /metrics')
    started = time.monotonic()
    status = request(served.port, 'GET', '/healthcheck', timeout=30)[0]
    probe_seconds = time.monotonic() - started
    for thread in slow:
        thread.join(timeout=30)
    assert (busy, status) == (2, 200)
    assert in_flight == 2
    assert probe_seconds > 1  # it had to wait for a thread: the metrics said so first


# ---- A real Prometheus ---------------------------------------------------------------------

def prometheus_or_skip(tool):
    """Return the path of Debian's `tool`; skip without it, or fail when REQUIRE_PROMETHEUS=1."""
    found = shutil.which(tool) or (f'/usr/bin/{tool}' if os.access(f'/usr/bin/{tool}', os.X_OK)
                                   else None)
    if found is None:
        reason = f'no {tool} (apt-get install prometheus)'
        if os.environ.get('REQUIRE_PROMETHEUS') == '1':
            pytest.fail(f'REQUIRE_PROMETHEUS=1 but {reason}')
        pytest.skip(reason)
    return found


def query(port, promql):
    """Run an instant PromQL query against Prometheus on 127.0.0.1:port; return its result."""
    url = f'http://127.0.0.1:{port}/api/v1/query?' + urllib.parse.urlencode({'query': promql})
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)['data']['result']


@pytest.fixture
def prometheus(tmp_path):
    """Start a real Prometheus on loopback scraping a target every second; stop it by PID."""
    binary = prometheus_or_skip('prometheus')
    started = []

    def start(target_port):
        port = free_port()
        config = tmp_path / 'prometheus.yml'
        config.write_text(
            'global: {scrape_interval: 1s, evaluation_interval: 1s}\n'
            'scrape_configs:\n'
            '  - job_name: landing\n'
            f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n")
        with open(tmp_path / 'prometheus.log', 'w') as log:
            proc = subprocess.Popen(
                [binary, f'--config.file={config}', f'--storage.tsdb.path={tmp_path / "data"}',
                 f'--web.listen-address=127.0.0.1:{port}'],
                stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        return port

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_app_and_counts_what_was_sent(metered, prometheus):
    """Up == 1, and the request counter Prometheus stored equals the requests the test sent."""
    served, metrics_port = metered()
    sent = 17
    for index in range(sent):
        request(served.port, 'GET', f'/?n={index}')
    port = prometheus(metrics_port)

    def counted():
        up = query(port, 'up{job="landing"}')
        requests = query(port, 'sum(landing_http_requests_total{route="Landing.index"})')
        return (up and requests and up[0]['value'][1] == '1'
                and float(requests[0]['value'][1]) == sent)
    wait_until(counted, deadline=30, what='Prometheus to scrape the count')


def test_the_alert_rules_pass_promtool():
    """deploy/prometheus/alerts.yaml (pool saturation, error ratio) is a valid rules file."""
    promtool = prometheus_or_skip('promtool')
    done = subprocess.run([promtool, 'check', 'rules', RULES], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'SUCCESS: 2 rules found' in done.stdout


# ---- In this process: the guard's counting, rule by rule -------------------------------------

@pytest.fixture
def counted(in_process):
    """The in-process app with metrics in a private registry; yields (call, registry)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    counting = metrics.RequestMetrics(threads=3, registry=registry)
    guard = in_process.app
    in_process.app = guard.counting(counting)

    def call(*args, **kwargs):
        answer = in_process(*args, **kwargs)
        counting.publish()  # what the worker's sampler does every SAMPLE_EVERY seconds
        return answer
    try:
        yield call, registry
    finally:
        in_process.app = guard


def sample(registry, name, **labels):
    """Return one sample's value from `registry` (0 when absent)."""
    return registry.get_sample_value(name, labels) or 0


@pytest.mark.parametrize('method, path, headers, route, status', [
    ('GET', '/', {}, 'Landing.index', '2xx'),
    ('GET', '/?utm_source=x', {}, 'Landing.index', '2xx'),
    ('GET', '/healthcheck/', {}, 'HealthCheck.index', '2xx'),
    ('GET', '/logo.png', {}, 'static', '2xx'),
    ('GET', '/static/site.css', {}, 'static', '2xx'),
    ('GET', '/nope', {}, 'unmatched', '4xx'),
    ('POST', '/', {}, 'Landing.index', '4xx'),
    ('GET', '/', {'Host': 'a,b'}, 'refused', '4xx'),
    ('PROPFIND', '/', {}, 'Landing.index', '4xx'),
])
def test_each_request_is_counted_once_under_its_route(counted, method, path, headers, route,
                                                      status):
    """The guard labels every answer by handler (or static, unmatched, refused) and class."""
    call, registry = counted
    call(method, path, headers)
    label = method if method in metrics.METHODS else 'other'
    assert sample(registry, 'landing_http_requests_total',
                  method=label, route=route, status=status) == 1
    assert sample(registry, 'landing_http_request_duration_seconds_count', route=route) == 1
    assert sample(registry, 'landing_threads_busy') == 0
    assert sample(registry, 'landing_threads_total') == 3


def test_a_request_that_raises_is_counted_as_a_5xx_error():
    """An app that fails outright still leaves the count right and the thread free."""
    from prometheus_client import CollectorRegistry

    def broken(environ, start_response):
        raise RuntimeError('boom')

    registry = CollectorRegistry()
    guard = serving.guard.Guard(broken, multiprocessing.RawValue('b'), landing.HEADERS,
                                metrics=metrics.RequestMetrics(threads=1, registry=registry))
    answers = []
    guard({'HTTP_HOST': 'x', 'SERVER_PROTOCOL': 'HTTP/1.1', 'PATH_INFO': '/',
           'REQUEST_METHOD': 'GET', 'wsgi.input': io.BytesIO()},
          lambda status, *args: answers.append(status))
    assert answers == [serving.request.SERVER_ERROR]  # the guard's own 500 page
    guard.metrics.publish()
    assert sample(registry, 'landing_http_requests_total',
                  method='GET', route='error', status='5xx') == 1
    assert sample(registry, 'landing_threads_busy') == 0


def test_workers_that_are_gone_leave_no_busy_threads_behind(tmp_path):
    """A live gauge file of a dead worker is dropped at the next scrape."""
    import prometheus_client.values
    from prometheus_client import Gauge

    folder = str(tmp_path)
    with mock.patch.dict(os.environ, {metrics.MULTIPROC_ENV: folder}):
        prometheus_client.values.ValueClass = prometheus_client.values.get_value_class()
        try:
            dead = Gauge('landing_threads_busy', 'x', multiprocess_mode='livesum',
                         registry=None)
            dead.set(5)
            collector = exporter.MultiProcess(folder)

            def in_flight():
                return next(family.samples[0].value for family in collector.collect()
                            if family.name == 'landing_http_requests_in_flight')
            assert in_flight() == 5
            dead_file = next(tmp_path.glob('gauge_livesum_*.db'))
            dead_file.rename(tmp_path / 'gauge_livesum_999999999.db')  # no such process
            assert in_flight() == 0
        finally:
            prometheus_client.values.ValueClass = prometheus_client.values.MutexValue


def test_the_folder_falls_back_to_the_temp_dir_without_dev_shm(tmp_path):
    """Where /dev/shm is not writable the multiprocess folder goes to the temporary folder."""
    environ = {}
    with mock.patch.object(os, 'access', return_value=False), \
            mock.patch.object(metrics.tempfile, 'gettempdir', return_value=str(tmp_path)):
        folder = metrics.prepare_directory(environ)
    assert folder.startswith(str(tmp_path))
    assert environ[metrics.MULTIPROC_ENV] == folder
    metrics.remove_directory(folder)
    assert not os.path.exists(folder)


def test_child_pids_of_a_process_that_is_gone_are_none():
    """Reading the children of a finished process gives an empty list, not an error."""
    assert exporter.child_pids(999999999) == []


def test_the_sampler_publishes_counts_and_busy_threads_on_its_own(tmp_path):
    """With sample_every, a thread writes what requests noted, without anyone asking."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    counting = metrics.RequestMetrics(threads=2, registry=registry, sample_every=0.01)
    started = counting.started()
    wait_until(lambda: sample(registry, 'landing_threads_busy') == 1, deadline=5,
               what='busy thread published')
    counting.finished(started, 'GET', 'Landing.index', 200)
    wait_until(lambda: sample(registry, 'landing_http_requests_total', method='GET',
                              route='Landing.index', status='2xx') == 1, deadline=5,
               what='request published')
    assert sample(registry, 'landing_threads_busy') == 0


def threads_of(pid):
    """Return how many threads process `pid` runs, from /proc."""
    return len(os.listdir(f'/proc/{pid}/task'))


def test_the_metrics_port_names_no_version_and_refuses_other_methods(metered):
    """Answers say `Server: Landing`, no version; GET and HEAD scrape, POST gets 405."""
    _, port = metered()
    status, headers, body = request(port, 'GET', '/metrics')
    assert (status, headers['Server']) == (200, 'Landing')
    assert b'landing_threads_total' in body
    status, headers, body = request(port, 'HEAD', '/metrics')
    assert (status, body) == (200, b'')
    assert int(headers['Content-Length']) > 0
    assert request(port, 'POST', '/metrics', body=b'x')[0] == 405


def test_200_silent_connections_cost_no_thread_and_a_scrape_still_answers(metered):
    """200 connections that send nothing: at most 2 more threads, a scrape answers in < 1 s."""
    served, port = metered()
    scrape(port)
    before = threads_of(served.proc.pid)
    silent = [socket.create_connection(('127.0.0.1', port), timeout=5) for _ in range(200)]
    try:
        started = time.monotonic()
        assert request(port, 'GET', '/metrics', timeout=1)[0] == 200
        assert time.monotonic() - started < 1
        assert threads_of(served.proc.pid) <= before + 2
    finally:
        for conn in silent:
            conn.close()


@pytest.mark.slow
def test_a_silent_metrics_connection_is_closed_after_the_io_timeout(metered):
    """A connection that sends nothing is closed after exporter.IO_TIMEOUT seconds."""
    _, port = metered()
    with socket.create_connection(('127.0.0.1', port), timeout=exporter.IO_TIMEOUT + 5) as conn:
        started = time.monotonic()
        assert conn.recv(1) == b''
        assert exporter.IO_TIMEOUT - 0.5 < time.monotonic() - started < exporter.IO_TIMEOUT + 3


def listening_addresses(port):
    """Return the IPv4 addresses a socket listens on at `port`, from /proc/net/tcp."""
    found = []
    with open('/proc/net/tcp') as table:
        for line in list(table)[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(':')
            if int(local_port, 16) == port and state == '0A':
                found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_metrics_bind_metrics_host_not_host(start_server):
    """METRICS_HOST sets the metrics' bind address, apart from the site's HOST."""
    port = free_port()
    served = start_server(env={'METRICS_PORT': str(port), 'METRICS_HOST': '127.0.0.2'})
    served.wait_ready()
    wait_until(lambda: request(port, 'GET', '/metrics', host='127.0.0.2')[0] == 200,
               what='metrics answering on 127.0.0.2')
    assert listening_addresses(port) == ['127.0.0.2']
    assert listening_addresses(served.port) == ['127.0.0.1']


def test_the_kubernetes_manifest_opens_the_metrics_to_the_pod_network():
    """Prometheus scrapes pods over the pod network: the Deployment sets METRICS_HOST."""
    with open(os.path.join(ROOT, 'deploy', 'kubernetes', 'deployment.yaml')) as manifest:
        text = manifest.read()
    assert '- name: METRICS_HOST\n              value: "0.0.0.0"' in text


def test_leftover_folders_of_processes_that_are_gone_are_removed(tmp_path):
    """remove_leftovers: folders of dead PIDs go; of live PIDs, and other names, stay."""
    gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f'landing-metrics-{int(gone.stdout)}'
    alive = tmp_path / f'landing-metrics-{os.getpid()}'
    other = tmp_path / 'landing-metrics-notapid'
    for folder in (dead, alive, other):
        folder.mkdir()
    metrics.remove_leftovers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


def histogram_samples(durations, bucketed):
    """Return the samples of a histogram that took `durations`: bucketed here, or observed."""
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    timer = Histogram('t_seconds', 'durations', ['route'], buckets=metrics.BUCKETS,
                      registry=registry).labels('r')
    if bucketed:
        metrics.observe_all(timer, durations)
    else:
        for elapsed in durations:
            timer.observe(elapsed)
    return [(s.name, s.labels, s.value) for family in registry.collect()
            for s in family.samples if not s.name.endswith('_created')]


# On a bound, just past one, far past the last, and many alike.
DURATIONS = [0.0, 0.001, 0.0010001, 0.003, 0.25, 0.2500001, 5.0, 7.5, 99.0] + [0.002] * 50


def test_durations_bucketed_at_once_read_as_observed_one_by_one():
    """publish() buckets a batch itself: the histogram reads as with observe() for each."""
    assert histogram_samples(DURATIONS, bucketed=True) == \
        histogram_samples(DURATIONS, bucketed=False)


def test_a_histogram_without_the_fields_bucketing_reads_is_observed_one_by_one():
    """Another prometheus_client, without the private fields: observe() each, as before."""
    seen = []

    class Plain:
        def observe(self, elapsed):
            seen.append(elapsed)

    metrics.observe_all(Plain(), [0.1, 0.2])
    assert seen == [0.1, 0.2]
