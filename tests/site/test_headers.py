"""Response headers: security headers on pages, a Server header that names no version."""
import re

import pytest

from conftest import request
from rawhttp import exchange

CSP_DIRECTIVES = {"default-src 'self'", "frame-ancestors 'none'"}


@pytest.mark.parametrize("path, status", [('/', 200), ('/no-such-page', 404)])
def test_html_answers_carry_security_headers(app_port, path, status):
    """Pages and error pages: nosniff, a strict CSP and a Referrer-Policy."""
    got, headers, _ = request(app_port, 'GET', path)
    assert got == status
    assert headers['X-Content-Type-Options'] == 'nosniff'
    directives = {d.strip() for d in headers['Content-Security-Policy'].split(';')}
    assert directives >= CSP_DIRECTIVES
    assert "'unsafe-inline'" not in headers['Content-Security-Policy']
    assert headers['Referrer-Policy']


@pytest.mark.parametrize('path', ['/', '/healthcheck', '/logo.png', '/no-such-page'])
def test_server_header_discloses_no_version(app_port, path):
    """No answer names CherryPy or a version number in its Server header."""
    _, headers, body = request(app_port, 'GET', path)
    assert headers['Server'] == 'Landing'
    assert not re.search(rb'CherryPy[/ ]\d', body)


def test_errors_before_routing_also_hide_the_version(app_port):
    """A request refused before routing (no Host) still gets our page and headers."""
    answer = exchange(app_port, b'GET / HTTP/1.1\r\n\r\n')
    assert answer.startswith(b'HTTP/1.1 400 ')
    head = answer.partition(b'\r\n\r\n')[0].lower()
    assert b'\r\nserver: landing\r\n' in head
    assert b'\r\nx-content-type-options: nosniff\r\n' in head
    assert not re.search(rb'CherryPy|\d+\.\d+\.\d+', answer.partition(b'\r\n\r\n')[2])


def test_landing_page_needs_nothing_the_csp_forbids():
    """The page has no inline script or style, so the strict CSP lets it render."""
    import landing
    assert '<script' not in landing.PAGE
    assert '<style' not in landing.PAGE
    assert 'style=' not in landing.PAGE
