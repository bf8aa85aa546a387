"""The hostile corpus as a specification: each class of attack and what must hold of the answer.

Every case of tests/hostile_corpus.py runs against one real `python landing.py` process for the
module (THREADS=10). A case states what SHOULD hold, so where today's server falls short, the
test fails and says what came back. The long scenarios (slow clients, descriptor exhaustion,
path cost) are marked slow:  python -m pytest tests/test_hostile.py -m 'not slow'
"""
import resource

import pytest

import hostile_corpus as corpus
from conftest import ROOT, free_port, request, wait_until


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """One landing.py for the module, started with the open-files limit raised for it to inherit.

    2,000 held connections need more descriptors than a default soft limit; both ends get the
    hard limit. The process is stopped by its PID (SIGTERM, then SIGKILL) when the module ends.
    """
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    corpus.raise_open_files()
    process = corpus.AppProcess(
        ROOT, tmp_path_factory.mktemp('hostile'), env={'THREADS': '10'}, port=free_port())

    def ready():
        if process.proc.poll() is not None:
            raise AssertionError(f'server exited {process.proc.returncode}: {process.stderr()}')
        return request(process.port, 'GET', '/healthcheck', timeout=2)[0] == 200

    try:
        wait_until(ready, what='hostile-corpus server ready')
        yield process
    finally:
        process.stop()
        corpus.stop_copies()
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def spec(klass):
    """The cases of one class as pytest params, ids stating the rule, long ones marked slow."""
    return [pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else [])
            for case in corpus.cases(klass)]


def holds(case, server):
    """Run one case against the server and fail with what came back if its rule does not hold."""
    outcome = case.run(server)
    assert outcome.passed, f'{case.id}\n    got: {outcome.detail}'


def test_every_class_of_the_corpus_is_specified_below():
    """The corpus has cases in every class of the table, and only in those."""
    assert {case.klass for case in corpus.CORPUS} == set(corpus.CLASS_LABELS)


@pytest.mark.parametrize('case', spec('range'))
def test_no_range_header_amplifies_the_answer_and_garbage_validators_are_ignored(server, case):
    """Answers stay within the file + 2 KB; malformed ranges get 200/416; valid ones exact 206."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('smuggling'))
def test_no_request_is_smuggled_and_each_request_gets_at_most_one_answer(server, case):
    """CL/TE conflicts, bad lengths, hosts, names, request lines: 400 or one answer, then close."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('headers'))
def test_connection_close_is_honoured_and_no_answer_leaks_a_traceback_or_version(server, case):
    """Connection: close in any spelling closes; bodies name no traceback, framework or input."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('security'))
def test_every_answer_carries_nosniff_and_a_content_security_policy(server, case):
    """2xx, 3xx, 4xx and 5xx answers alike carry both security headers."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('query'))
def test_query_strings_never_turn_a_page_into_a_404_or_5xx(server, case):
    """Tracking parameters, repeats, bad escapes and long queries still get the page (or 414)."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('paths'))
def test_no_path_reaches_a_server_file_and_long_paths_cost_little_cpu(server, case):
    """Traversal in every encoding gets no file; a 16 KB path costs the server < 10 ms of CPU."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('slow-clients'))
def test_slow_and_idle_clients_cannot_starve_the_health_check(server, case):
    """Trickling, non-reading, silent and idle clients held: a fresh probe answers in < 1 s."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('descriptors'))
def test_running_out_of_descriptors_is_cheap_quiet_and_recoverable(server, case):
    """At 256 open files with 400 connections: < 5 % CPU, ~1 log line/s, healthy once released."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('cost'))
def test_no_request_costs_more_than_50_ms_of_cpu_whatever_its_headers_or_body(server, case):
    """Quadratic header parsing, cookies, encoded words, bodies: < 50 ms each; probe < 100 ms."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('tracebacks'))
def test_headers_read_before_the_config_applies_never_get_a_traceback(server, case):
    """Broken encoded words and cookies on any path: our page with the security headers."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('bodies'))
def test_a_body_is_never_waited_for_where_nothing_takes_one(server, case):
    """404s, static files and GET-only pages answer before an incomplete body arrives."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('static'))
def test_static_serves_only_what_is_in_static(server, case):
    """No dotfile, dot-folder or symlink out of static/, in any encoding; big files whole."""
    holds(case, server)


@pytest.mark.parametrize('case', spec('memory'))
def test_one_connection_costs_at_most_the_budgeted_memory(server, case):
    """Unfinished headers, non-readers, slow uploads: RSS per connection within the budget.

    A reader that stops reading a big static file costs under a MiB, not the file.
    """
    holds(case, server)


def test_the_server_is_still_serving_after_the_whole_corpus(server):
    """Nothing above killed or wedged the module's server: the health check answers Yay."""
    assert server.proc.poll() is None, server.stderr()[-2000:]
    assert corpus.wait_for(server.healthy, 20), 'no 200 Yay within 20 s'
