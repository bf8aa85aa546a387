"""serving.proxies on its own: which hop is the client, and what a trusted peer may say.

tests/server/test_trusted_proxies.py sends the same shapes to a real server; here each rule
is one call.
"""
import ipaddress
import time

import pytest

from serving.proxies import MAX_HOPS, Proxies, address_of, parse_networks

TRUSTED = parse_networks('127.0.0.1/32, 10.0.0.0/8, fd00::/8')


def mended(headers, peer='127.0.0.1', header='x-forwarded-for'):
    """Return (REMOTE_ADDR, wsgi.url_scheme) after mending a request from `peer` with `headers`."""
    environ = {'REMOTE_ADDR': peer, 'wsgi.url_scheme': 'http', **headers}
    Proxies(TRUSTED, header).mend(environ)
    return environ['REMOTE_ADDR'], environ['wsgi.url_scheme']


@pytest.mark.parametrize('node, address', [
    ('203.0.113.9', '203.0.113.9'), (' 203.0.113.9 ', '203.0.113.9'),
    ('203.0.113.9:4711', '203.0.113.9'), ('2001:db8::1', '2001:db8::1'),
    ('[2001:db8::1]', '2001:db8::1'), ('[2001:db8::1]:4711', '2001:db8::1'),
    ('"[2001:DB8::1]:4711"', '2001:db8::1'), ('::ffff:10.1.2.3', '10.1.2.3'),
    ('[::ffff:10.1.2.3]:80', '10.1.2.3'),
    ('', None), ('unknown', None), ('_hidden', None), ('203.0.113.9:0', None),
    ('203.0.113.9:65536', None), ('203.0.113.9:http', None), ('203.0.113.9:', '203.0.113.9'),
    ('[2001:db8::1', None), ('[2001:db8::1]x', None), ('[2001:db8::1]:', '2001:db8::1'),
    ('999.1.1.1', None), ('01.2.3.4', None), ('1.2.3.4/32', None), ('"', None),
    ('\u0661.\u0662.\u0663.\u0664', None), ('1' * 200, None),
])
def test_a_hop_names_an_address_or_nothing(node, address):
    """Addresses with or without port, brackets, quotes; anything else names no address."""
    found = address_of(node)
    assert (str(found) if found else None) == address


def test_trusted_proxies_take_addresses_and_ranges_separated_by_commas_or_spaces():
    """'10.0.0.0/8, ::1 192.168.0.0/16' is three networks; '' is none."""
    assert parse_networks('10.0.0.0/8, ::1 192.168.0.0/16,') == (
        ipaddress.ip_network('10.0.0.0/8'), ipaddress.ip_network('::1/128'),
        ipaddress.ip_network('192.168.0.0/16'))
    assert parse_networks(' ') == ()
    with pytest.raises(ValueError, match='host bits set'):
        parse_networks('10.0.0.1/8')


@pytest.mark.parametrize('headers, peer, expected', [
    # An untrusted peer, or none: nothing it says counts.
    ({'HTTP_X_FORWARDED_FOR': '203.0.113.9', 'HTTP_X_FORWARDED_PROTO': 'https'}, '8.8.8.8',
     ('8.8.8.8', 'http')),
    ({'HTTP_X_FORWARDED_FOR': '203.0.113.9'}, '', ('', 'http')),
    # A trusted one, as IPv4 written as IPv6 too.
    ({'HTTP_X_FORWARDED_FOR': '203.0.113.9'}, '::ffff:127.0.0.1', ('203.0.113.9', 'http')),
    ({'HTTP_X_FORWARDED_FOR': '6.6.6.6, 203.0.113.9, 10.1.2.3', 'HTTP_X_FORWARDED_PROTO': 'HTTPS'},
     '127.0.0.1', ('203.0.113.9', 'https')),
    # The proto the peer wrote is the last one; a scheme other than http(s) is ignored.
    ({'HTTP_X_FORWARDED_PROTO': 'http, https'}, '127.0.0.1', ('127.0.0.1', 'https')),
    ({'HTTP_X_FORWARDED_PROTO': 'https, javascript'}, '127.0.0.1', ('127.0.0.1', 'http')),
    # Garbage ends the walk at the last address established.
    ({'HTTP_X_FORWARDED_FOR': '203.0.113.9, <x>, 10.1.2.3'}, '127.0.0.1', ('10.1.2.3', 'http')),
    ({'HTTP_X_FORWARDED_FOR': '203.0.113.9, '}, '127.0.0.1', ('127.0.0.1', 'http')),
    # All trusted: the furthest.
    ({'HTTP_X_FORWARDED_FOR': 'fd00::5, 10.1.2.3'}, '127.0.0.1', ('fd00::5', 'http')),
])
def test_the_client_is_the_rightmost_untrusted_hop(headers, peer, expected):
    """X-Forwarded-For read from the nearest hop back, through trusted ones only."""
    assert mended(headers, peer) == expected


@pytest.mark.parametrize('forwarded, expected', [
    ('for=203.0.113.9', ('203.0.113.9', 'http')),
    ('for=6.6.6.6;proto=http, FOR = "[2001:db8::1]:4711" ; Proto=HTTPS, for=10.1.2.3;proto=http',
     ('2001:db8::1', 'https')),
    ('for=203.0.113.9;proto=https, for=10.1.2.3', ('203.0.113.9', 'https')),
    # No address named: the nearest element's own proto.
    ('for=unknown;proto=https', ('127.0.0.1', 'https')),
    ('by=10.0.0.1;proto=https', ('127.0.0.1', 'https')),
    ('proto=ftp;proto=https', ('127.0.0.1', 'http')),
    ('', ('127.0.0.1', 'http')),
])
def test_forwarded_names_the_client_and_its_proto(forwarded, expected):
    """RFC 7239: each element's for= and proto=, read from the nearest element back."""
    assert mended({'HTTP_FORWARDED': forwarded}, header='forwarded') == expected


def test_only_the_chosen_header_counts():
    """X-Forwarded-For by default, Forwarded when chosen: never the other one."""
    both = {'HTTP_FORWARDED': 'for=203.0.113.7;proto=https',
            'HTTP_X_FORWARDED_FOR': '203.0.113.8', 'HTTP_X_FORWARDED_PROTO': 'http'}
    assert mended(both) == ('203.0.113.8', 'http')
    assert mended(both, header='forwarded') == ('203.0.113.7', 'https')


def test_more_trusted_hops_than_are_read_end_at_the_furthest_read():
    """A list longer than MAX_HOPS is read back MAX_HOPS hops at most."""
    hops = [f'10.0.0.{n}' for n in range(1, 40)]
    assert mended({'HTTP_X_FORWARDED_FOR': ', '.join(hops)})[0] == hops[-MAX_HOPS]


@pytest.mark.parametrize('header, value', [
    ('HTTP_X_FORWARDED_FOR', '10.0.0.1,' * 2000), ('HTTP_FORWARDED', ';for="\\"' * 2000),
    ('HTTP_FORWARDED', 'for=10.0.0.1;' * 1000 + ', for=10.0.0.2'),
    ('HTTP_FORWARDED', ' ;' * 8000)])
def test_long_hostile_values_cost_little(header, value):
    """16 KB built to make the parse slow: under 50 ms of CPU, as any header (it takes ~0.1 ms)."""
    kind = 'forwarded' if header == 'HTTP_FORWARDED' else 'x-forwarded-for'
    started = time.process_time()
    for _ in range(10):
        mended({header: value}, header=kind)
    assert (time.process_time() - started) / 10 < 0.05


def test_the_guard_reads_no_forwarded_header_unless_proxies_are_trusted(in_process):
    """Without TRUSTED_PROXIES (the default) the served app has no Proxies at all."""
    assert in_process.app.proxies is None
