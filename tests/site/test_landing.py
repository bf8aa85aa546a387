"""The landing page: what `GET /` and `HEAD /` promise to visitors and probes."""
from html.parser import HTMLParser

import pytest

import landing
from conftest import request

# What the page promises a reader: change these with the page (README, "Change the page").
TITLE = 'Landing'
SAYS = 'It works'


class PageOutline(HTMLParser):
    """Collect what a reader of the landing page sees: doctype, title, images, text."""

    def __init__(self):
        super().__init__()
        self.doctype = None
        self.title = ''
        self.images = []
        self.text = []
        self._in_title = False
        self.open_tags = []

    def handle_decl(self, decl):
        """Keep the doctype."""
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        """Note the title, images and elements left open."""
        if tag == 'title':
            self._in_title = True
        if tag == 'img':
            self.images.append(dict(attrs))
        if tag not in ('meta', 'link', 'img', 'br'):
            self.open_tags.append(tag)

    def handle_endtag(self, tag):
        """Close the innermost element, which must be this one."""
        if tag == 'title':
            self._in_title = False
        assert self.open_tags.pop() == tag, f'</{tag}> closes the wrong element'

    def handle_data(self, data):
        """Keep the title and the lines of text."""
        if self._in_title:
            self.title += data
        elif data.strip():
            self.text.append(data.strip())


def outline(body):
    """Parse the page, asserting every element is closed in order."""
    parser = PageOutline()
    parser.feed(body)
    parser.close()
    assert parser.open_tags == [], 'unclosed elements'
    return parser


def test_get_root_serves_the_landing_page_as_utf8_html(app_port):
    """GET / answers 200 with the page, declared as UTF-8 HTML."""
    status, headers, body = request(app_port, 'GET', '/')
    assert status == 200
    assert headers.get_content_type() == 'text/html'
    assert headers.get_content_charset() == 'utf-8'
    assert body == landing.PAGE.encode()


def test_landing_page_is_valid_html5_with_title_text_and_logo():
    """The page is HTML5 with a title, a line of text and the logo from /logo.png."""
    page = outline(landing.PAGE)
    assert page.doctype.lower() == 'doctype html'
    assert page.title == TITLE
    assert any(SAYS in line for line in page.text)
    assert [image['src'] for image in page.images] == ['/logo.png']
    assert page.images[0]['alt']


def test_landing_page_is_built_once_not_per_request():
    """Index returns the same str object every time: nothing is rendered per request."""
    root = landing.Landing()
    assert root.index() is root.index() is landing.PAGE


def test_head_root_answers_headers_without_a_body(app_port):
    """HEAD / answers 200 with the page's length and no body."""
    status, headers, body = request(app_port, 'HEAD', '/')
    assert status == 200
    assert int(headers['Content-Length']) == len(landing.PAGE.encode())
    assert body == b''


@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
@pytest.mark.parametrize('path', ['/', '/healthcheck', '/healthcheck/'])
def test_other_methods_are_refused_with_405_and_allow(app_port, method, path):
    """Methods other than GET and HEAD answer 405 and name the allowed ones."""
    status, headers, _ = request(app_port, method, path, body=b'x')
    assert status == 405
    assert {m.strip() for m in headers['Allow'].split(',')} == {'GET', 'HEAD'}


def test_health_check_is_mounted_on_the_root():
    """Landing carries a HealthCheck as its `healthcheck` attribute."""
    from healthcheck import HealthCheck
    assert isinstance(landing.Landing.healthcheck, HealthCheck)
