"""The landing page as a person's browser shows it: headless Chromium against a real server.

Debian's Chromium (/usr/bin/chromium), driven by Playwright for Python with no browser download
of its own, loads the page from the app served with the real prod.conf on a loopback port, the
way a visitor's tab would: the page, its stylesheet and logo, and the icon its <link rel=icon>
names. A screenshot lands in test-output/browser/ (git-ignored) for a person to look at.

Skipped, with the reason, where Chromium or Playwright is missing; with REQUIRE_BROWSER=1 (as
.ci/run sets) that is a failure instead.
"""
import html
import os
import re

import pytest

from conftest import ROOT

CHROMIUM = '/usr/bin/chromium'
# As root in a machine with no outside network: no sandbox, no GPU, and no background
# connections to Google's services (they would be refused, and fill the log).
CHROMIUM_ARGS = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
]
SCREENSHOT = os.path.join(ROOT, 'test-output', 'browser', 'landing.png')
VIEWPORT = {'width': 1280, 'height': 800}

# Runs in the page before any of its own content: records what the CSP blocks, if anything.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', event => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""

# Fetches the icon the page names, as the tab does, and tells what came back and whether it
# decodes as an image. Playwright's network events leave out every request for /favicon.ico
# (in Chromium), so the page reports this answer itself.
LOAD_ICON = """
async () => {
  const link = document.querySelector('link[rel~="icon"]');
  if (!link) return {href: null, status: 0, type: null, width: 0};
  const answer = await fetch(link.href, {cache: 'no-store'});
  const icon = new Image();
  icon.src = link.href;
  let width = 0;
  try { await icon.decode(); width = icon.naturalWidth; } catch (error) {}
  return {href: link.href, status: answer.status, type: answer.headers.get('content-type'),
          width: width};
}
"""


def unavailable(reason):
    """Skip for `reason`, or fail when REQUIRE_BROWSER=1 says the browser must be there."""
    if os.environ.get('REQUIRE_BROWSER') == '1':
        pytest.fail(f'REQUIRE_BROWSER=1 but {reason}')
    pytest.skip(reason)


@pytest.fixture(scope='module')
def browser():
    """Start Debian's headless Chromium through Playwright; close it after the module."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f'no browser at {CHROMIUM} (apt-get install chromium)')
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable('Playwright for Python is not installed (requirements-browser.txt)')
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


class Visit:
    """One visit to the landing page: the open page and what happened while it loaded."""

    def __init__(self, page, url):
        self.page = page
        self.url = url
        self.console = []      # (type, text) of every console message
        self.page_errors = []  # uncaught exceptions in the page
        self.failed = []       # requests that got no answer at all
        self.responses = []    # every answer, the document's first
        page.on('console', lambda message: self.console.append((message.type, message.text)))
        page.on('pageerror', lambda error: self.page_errors.append(str(error)))
        page.on('requestfailed', lambda req: self.failed.append((req.url, req.failure)))
        page.on('response', lambda response: self.responses.append(response))
        page.add_init_script(RECORD_CSP_VIOLATIONS)
        self.document = page.goto(url, wait_until='load')
        self.icon = page.evaluate(LOAD_ICON)
        self.csp_violations = page.evaluate('window.__cspViolations')
        os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
        page.screenshot(path=SCREENSHOT, full_page=True)

    def answer_to(self, path):
        """Return the response the browser got for `path` on the server."""
        matches = [r for r in self.responses if r.url == self.url.rstrip('/') + path]
        assert matches, f'the browser never requested {path}'
        return matches[-1]


@pytest.fixture(scope='module')
def visit(browser, app_port):
    """Open the landing page, served on loopback with the real prod.conf, in a fresh context."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield Visit(context.new_page(), f'http://127.0.0.1:{app_port}/')
    finally:
        context.close()


def test_page_answers_200_as_html(visit):
    """The document itself comes back 200 as UTF-8 HTML."""
    assert visit.document.status == 200
    content_type = visit.document.headers['content-type'].replace(' ', '').lower()
    assert content_type == 'text/html;charset=utf-8'


def test_tab_shows_the_title_the_page_names(visit):
    """The tab shows the <title> of the document the server sent, whatever the page says."""
    sent = re.search(r'<title>(.*?)</title>', visit.document.text(), re.DOTALL)
    assert sent, 'the page names no <title>'
    assert visit.page.title() == html.unescape(sent[1]).strip()


def test_first_heading_is_visible(visit):
    """The page's first heading has text and is on screen."""
    heading = visit.page.locator('h1').first
    assert heading.inner_text().strip()
    assert heading.is_visible()


def test_every_image_is_loaded_and_decoded(visit):
    """Each image the page shows arrived and the browser decoded it: it has a natural width."""
    images = visit.page.evaluate(
        '() => [...document.images].map(img => [img.src, img.complete, img.naturalWidth])')
    assert images, 'the page shows no image'
    for source, complete, natural_width in images:
        assert complete, source
        assert natural_width > 0, source
        assert visit.answer_to(source.removeprefix(visit.url.rstrip('/'))).status == 200


def test_favicon_the_page_links_is_served_as_an_image(visit):
    """The icon the page names answers 200 as an image and decodes (a 404 page would not)."""
    assert visit.icon['href'] == visit.url + 'favicon.ico'
    assert visit.icon['status'] == 200
    assert visit.icon['type'].startswith('image/')
    assert visit.icon['width'] > 0


def test_every_stylesheet_loads_and_applies(visit):
    """Each stylesheet the page links answered 200 and the browser holds its rules."""
    sheets = visit.page.evaluate(
        '() => [...document.styleSheets].map(sheet => [sheet.href, sheet.cssRules.length])')
    assert sheets, 'the page links no stylesheet'
    for href, rules in sheets:
        assert visit.answer_to(href.removeprefix(visit.url.rstrip('/'))).status == 200
        assert rules > 0, f'{href} holds no rule'


def test_no_request_failed_or_answered_an_error(visit):
    """Every request the page made (document, CSS, images, icon) got a 2xx or 3xx answer."""
    assert visit.failed == []
    assert [(r.url, r.status) for r in visit.responses if r.status >= 400] == []
    requested = {r.url for r in visit.responses}
    assert visit.url in requested
    assert visit.icon['status'] < 400  # unseen by the network events, reported by the page


def test_console_shows_no_errors(visit):
    """No console error (CSP violations and failed loads report there) and no page exception."""
    assert [text for kind, text in visit.console if kind == 'error'] == []
    assert visit.page_errors == []


def test_content_security_policy_is_sent_and_lets_the_page_render(visit):
    """The page carries a CSP, and nothing the page needs is blocked by it."""
    policy = visit.document.headers.get('content-security-policy')
    assert policy, 'the page is served without a Content-Security-Policy header'
    assert "default-src 'self'" in policy
    assert visit.csp_violations == []


def test_screenshot_is_saved_for_a_person_to_look_at(visit):
    """test-output/browser/landing.png holds the rendered page."""
    with open(SCREENSHOT, 'rb') as stream:
        png = stream.read()
    assert png.startswith(b'\x89PNG\r\n\x1a\n')
    width = int.from_bytes(png[16:20], 'big')
    assert width == VIEWPORT['width']
