"""Trusted proxies: the client's address and scheme, from forwarded headers of listed peers only.

Behind a load balancer every request comes from the balancer; it names the client in
`X-Forwarded-For` (and the scheme in `X-Forwarded-Proto`) or in RFC 7239 `Forwarded`. Anyone
can send those headers, so they count only when the peer is in TRUSTED_PROXIES, and then only
as far back as the hops are trusted: the client is the rightmost address that is not itself
trusted (each trusted proxy appends the address it received the request from; whatever a
client wrote is to the left of that). The guard mends the environ before CherryPy reads it, so
`request.remote`, `request.scheme`, `request.base` and the access log all name the same client.

One header only, FORWARDED_HEADER's: a proxy that appends to one passes the other on as the
client sent it, so reading both, or whichever is present, lets a client forge its address.

granian's own `granian.utils.proxies` is not used: it reads X-Forwarded-For only, takes any
string there as the client's address (garbage from behind a trusted proxy became REMOTE_ADDR),
and accepts anything in its trusted list as a literal name, so a typo there trusts nobody
silently.
"""
import functools
import ipaddress
import re
from wsgiref.types import WSGIEnvironment

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The hops read back from the peer at most: a chain of more trusted proxies than this is not
# a real deployment, and a long forged list costs no more than this to walk.
MAX_HOPS = 16

# The for= and proto= values of one Forwarded element (RFC 7239 §4), quotes left to
# address_of(). Elements are split at every comma: a quoted value with a comma in it is no
# address a proxy writes, and only what proxies wrote is read (the walk stops at the client).
_FOR = re.compile(r'(?:^|;)\s*for\s*=([^;]*)', re.IGNORECASE)
_PROTO = re.compile(r'(?:^|;)\s*proto\s*=([^;]*)', re.IGNORECASE)

# The longest hop that can name an address: a quoted, bracketed IPv6 address with a zone and
# a port.
MAX_NODE = 100

SCHEMES = frozenset({'http', 'https'})


def parse_networks(raw: str) -> tuple[Network, ...]:
    """Return the addresses and CIDR ranges in `raw` (separated by commas or spaces) as networks.

    Raise ValueError (its message names the entry) for one that is neither, or a range with
    host bits set (10.0.0.1/8: 10.0.0.0/8 or 10.0.0.1/32 was meant, and which one matters).
    """
    return tuple(ipaddress.ip_network(entry) for entry in raw.replace(',', ' ').split())


def address_of(node: str) -> Address | None:
    """Return the address one forwarded hop names, or None if it names none.

    Takes `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`, each optionally
    quoted as Forwarded writes them; `unknown`, obfuscated names and garbage give None.
    An IPv4 address written as IPv6 (::ffff:10.0.0.1) is the IPv4 one.
    """
    node = node.strip()
    if len(node) > MAX_NODE:
        return None
    if node[:1] == '"' and node[-1:] == '"' and len(node) > 1:
        node = node[1:-1].replace('\\', '')
    host, port = node, ''
    if node[:1] == '[':
        host, bracket, port = node[1:].partition(']')
        if not bracket or port and port[0] != ':':
            return None
        port = port[1:]
    elif node.count(':') == 1:
        host, _, port = node.partition(':')
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address


def _value(pattern: re.Pattern[str], element: str) -> str:
    """Return the value of one Forwarded pair in `element`, unquoted ('' if it has none)."""
    found = pattern.search(element)
    return found.group(1).strip().strip('"') if found else ''


class Proxies:
    """The trusted proxies, and the header they name the client in: mends a request's environ."""

    def __init__(self, networks: tuple[Network, ...], header: str = 'x-forwarded-for') -> None:
        self.networks = networks
        # 'x-forwarded-for' (with X-Forwarded-Proto) or 'forwarded' (RFC 7239).
        self.header = header
        # Each hop's text is parsed and looked up once: the peers are a few balancers, and
        # clients come back. 4,096 entries of at most MAX_NODE characters: under 2 MB.
        self.lookup = functools.lru_cache(maxsize=4096)(self._lookup)

    def trusts(self, address: Address) -> bool:
        """Tell whether `address` is one of the trusted proxies."""
        return any(address in network for network in self.networks)

    def _lookup(self, node: str) -> tuple[str, bool] | None:
        """Return (the address `node` names, written plainly; whether it is trusted), or None."""
        address = address_of(node)
        return None if address is None else (str(address), self.trusts(address))

    def hops(self, environ: WSGIEnvironment) -> list[tuple[str, str]]:
        """Return the forwarded hops as (node, scheme) pairs, the nearest last; MAX_HOPS at most.

        Forwarded gives each hop the proto= of its own element; with X-Forwarded-For every
        hop has the peer's X-Forwarded-Proto (its last value: the one the peer wrote).
        """
        if self.header == 'forwarded':
            elements = environ.get('HTTP_FORWARDED', '').rsplit(',', MAX_HOPS)[-MAX_HOPS:]
            return [(_value(_FOR, element.strip()), _value(_PROTO, element.strip()))
                    for element in elements]
        proto = environ.get('HTTP_X_FORWARDED_PROTO', '').rsplit(',', 1)[-1].strip()
        return [(node, proto) for node in
                environ.get('HTTP_X_FORWARDED_FOR', '').rsplit(',', MAX_HOPS)[-MAX_HOPS:]]

    def mend(self, environ: WSGIEnvironment) -> None:
        """Put the client's address and scheme in `environ` if its peer is trusted.

        A hop's port is not kept: granian passes no REMOTE_PORT, so CherryPy's
        request.remote.port is -1 for every request, forwarded or not.

        Walks the hops from the nearest: each trusted address passes on to the one before it;
        the first untrusted one is the client (if all are trusted, the furthest). A hop that
        names no address (garbage, `unknown`, none at all) ends the walk: the client is then
        the last address established, the peer itself at first. The scheme is the one the
        hop naming the client gives (the nearest hop's, if none does), if http or https.
        """
        peer = self.lookup(environ.get('REMOTE_ADDR', ''))
        if peer is None or not peer[1]:
            return
        hops = self.hops(environ)
        scheme = hops[-1][1]
        for node, proto in reversed(hops):
            found = self.lookup(node)
            if found is None:
                break
            environ['REMOTE_ADDR'], scheme = found[0], proto
            if not found[1]:
                break
        scheme = scheme.lower()
        if scheme in SCHEMES:
            environ['wsgi.url_scheme'] = scheme
