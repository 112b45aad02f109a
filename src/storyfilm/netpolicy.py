"""Where storyfilm may connect for what a storyboard (or a host's answer) names, and connecting only there.

One rule for every outbound request a storyboard can influence (asset downloads, a host's outputs):

- http(s) URLs only (assets: https), with a host, a port in 1-65535 and no `user:password@`;
- the host is resolved once and only public addresses are used: never private, loopback, link-local,
  multicast, reserved, shared (100.64/10), unspecified or a cloud metadata service, whatever the
  spelling (2130706433, 0x7f.1, 0177.0.0.1 and ::ffff:127.0.0.1 all reach 127.0.0.1; addresses
  embedded in IPv6 are checked as the IPv4 address they carry);
- private networks only when the user names them (`--allow-network 10.0.0.0/8`, or
  STORYFILM_ALLOW_NETWORKS="10.0.0.0/8,192.168.7.0/24"), never because a URL points there. A host's own
  outputs may come from private addresses when the host's API itself is private (the emulator on
  loopback), as before. Metadata, multicast and unspecified addresses are refused even then;
- the connection goes to the address that was checked (pinned.PinnedTransport), keeping the URL's Host
  header and TLS server name, so a DNS answer that changes between the check and the connection changes
  nothing.

Pure but for name resolution: no HTTP client is imported here (the planner imports this through the
storyboard); URLs are taken apart by httpx's parser, imported when a URL is first checked, so what is
checked is exactly what the download connects to.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storyfilm.errors import ConfigurationError, DownloadError

if TYPE_CHECKING:
    import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_NETWORKS_ENV = "STORYFILM_ALLOW_NETWORKS"

_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254"))  # AWS/GCP/Azure, ECS, Alibaba, AWS v6
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"})
_LOOPBACK_NAMES = ("localhost",)  # and every *.localhost (RFC 6761): resolved here, never by DNS
# Names only a local resolver answers, to addresses that are private by construction: refused before
# any lookup unless the user allowed some private network (then the resolved address decides).
_LOCAL_SUFFIXES = (".local", ".internal", ".home.arpa", ".lan", ".intranet", ".corp")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def parse_networks(values: Iterable[str], source: str) -> tuple[Network, ...]:
    """Networks named by the user ("10.0.0.0/8", "192.168.1.20"); a clear error naming `source` otherwise."""
    out = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            out.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ConfigurationError(f"{source}: '{text}' is not a network ({exc}); write it as 10.0.0.0/8, "
                                     "192.168.1.0/24 or one address such as 192.168.1.20") from None
    return tuple(out)


def embedded_ipv4(addr: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64 or (addr in _V4_COMPATIBLE and int(addr) > 1):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _kind(addr: Address) -> str | None:
    """What kind of non-public address `addr` is, or None for a public one."""
    if addr in _METADATA:
        return "link-local, a cloud metadata service" if addr.is_link_local else "a cloud metadata service"
    for kind, test in (("unspecified, this machine", addr.is_unspecified), ("loopback, this machine", addr.is_loopback),
                       ("link-local", addr.is_link_local), ("multicast", addr.is_multicast),
                       ("reserved", addr.is_reserved), ("private network", addr.is_private),
                       ("reserved", not addr.is_global)):
        if test:
            return kind
    return None


@dataclass(frozen=True)
class UrlPolicy:
    """Which addresses may be connected to. `networks`: private networks the user allowed by name.
    `host_private`: private and loopback addresses are fine (a private host's own outputs)."""

    networks: tuple[Network, ...] = ()
    host_private: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, host_private: bool = False) -> UrlPolicy:
        env = os.environ if env is None else env
        return cls(parse_networks(env.get(ALLOW_NETWORKS_ENV, "").split(","), ALLOW_NETWORKS_ENV), host_private)

    @classmethod
    def for_host(cls, base_url: str, env: Mapping[str, str] | None = None) -> UrlPolicy:
        """A host's outputs: as from_env, plus private addresses when the host's API itself is private."""
        return cls.from_env(env, host_private=is_private_host(base_url))

    def address_problem(self, addr: Address) -> str | None:
        """Why `addr` may not be connected to, or None. An IPv6 address that carries an IPv4 one is
        judged by the IPv4 address (that is where the packets go)."""
        inner = embedded_ipv4(addr)
        a = inner if inner is not None else addr
        kind = _kind(a)
        if kind is None:
            return None
        shown = f"{addr} ({a}: {kind})" if inner is not None else f"{addr} ({kind})"
        if a in _METADATA or a.is_multicast or a.is_unspecified:
            return f"{shown} is never fetched from"
        if any(a in net for net in self.networks if net.version == a.version):
            return None
        if self.host_private and (a.is_private or a.is_loopback) and not a.is_link_local:
            return None
        return f"{shown} is not a public address; allow its network explicitly if you trust it (--allow-network)"

    def static_problem(self, url: str, *, https_only: bool = False) -> str | None:
        """Every problem of `url` that needs no network: its form and any address it spells out."""
        try:
            target = Target.parse(url, https_only=https_only)
        except DownloadError as exc:
            return exc.detail
        return target.literal_problem(self)

    def resolve(self, url: str) -> tuple[Target, tuple[Address, ...]]:
        """Parse, resolve once and check: the addresses that may be connected to (at least one)."""
        target = Target.parse(url)
        if (problem := target.literal_problem(self)) is not None:
            raise DownloadError(problem)
        addrs = target.literal if target.literal is not None else _lookup(target.host, target.port)
        allowed = tuple(a for a in addrs if self.address_problem(a) is None)
        if not allowed:
            reasons = "; ".join(dict.fromkeys(str(self.address_problem(a)) for a in addrs))
            raise DownloadError(f"refusing {target.shown}: {target.host} resolves to {reasons}")
        return target, allowed


@dataclass(frozen=True)
class Target:
    """A URL taken apart by the same parser that sends the request (httpx), so what is checked is what
    is connected to."""

    url: httpx.URL
    host: str  # lower case, no brackets, no trailing dot
    port: int
    literal: tuple[Address, ...] | None  # the host spelled as an address (in any spelling the resolver takes)

    @property
    def shown(self) -> str:
        return display_url(str(self.url))

    @classmethod
    def parse(cls, url: str, *, https_only: bool = False) -> Target:
        import httpx

        allowed = ("https",) if https_only else ("http", "https")
        try:
            parsed = httpx.URL(url)
            port = parsed.port
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise DownloadError(f"{display_url(url)} is not a valid URL ({exc})") from None
        if parsed.scheme not in allowed:
            only = " or ".join(f"{s}://" for s in allowed)
            raise DownloadError(f"refusing a {parsed.scheme or 'scheme-less'} URL (only {only})")
        if parsed.userinfo:
            raise DownloadError(f"refusing {display_url(url)}: it carries a user name or password (never put "
                                "credentials in a URL: they end up in logs; use a pre-signed or public URL)")
        host = parsed.host.rstrip(".").lower()
        if not host:
            raise DownloadError(f"refusing {display_url(url)}: it has no host")
        if port is not None and not 1 <= port <= 65535:
            raise DownloadError(f"refusing {display_url(url)}: port {port} is outside 1-65535")
        literal = _literal_addresses(host)
        if literal is None and not _HOST_NAME.fullmatch(host):
            raise DownloadError(f"refusing {display_url(url)}: '{host}' is not a valid host name")
        return cls(parsed, host, port or (443 if parsed.scheme == "https" else 80), literal)

    def literal_problem(self, policy: UrlPolicy) -> str | None:
        """What can be refused before any lookup: a spelled-out address, localhost, metadata names."""
        if self.host in _METADATA_NAMES:
            return f"refusing {self.shown}: {self.host} is a cloud metadata service"
        if self.literal is not None:
            problems = [policy.address_problem(a) for a in self.literal]
            if all(problems):  # localhost is two addresses: one allowed is enough (only it is connected to)
                return f"refusing {self.shown}: {problems[0]}"
            return None
        if not policy.networks and not policy.host_private and self.host.endswith(_LOCAL_SUFFIXES):
            return (f"refusing {self.shown}: {self.host} is a local-network name; allow its network explicitly "
                    "if you trust it (--allow-network)")
        return None


def _literal_addresses(host: str) -> tuple[Address, ...] | None:
    """The addresses `host` spells out (decimal, octal, hex, shortened IPv4, IPv6), or None for a name.

    Asks the system resolver in numeric-only mode, so every spelling it would connect to is recognised."""
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
    if ":" in host:  # an IPv6 literal, perhaps with a zone ("fe80::1%25eth0")
        try:
            return (ipaddress.ip_address(host.replace("%25", "%", 1)),)
        except ValueError:
            raise DownloadError(f"'{host}' is not a valid IPv6 address") from None
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return tuple(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))


def _lookup(host: str, port: int) -> tuple[Address, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DownloadError(f"cannot resolve {host}: {exc}") from None
    return tuple(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))


def is_private_host(url: str) -> bool:
    """Whether a host's base URL is on this machine or a private network (its outputs may be too)."""
    try:
        target = Target.parse(url)
        addrs = target.literal if target.literal is not None else _lookup(target.host, target.port)
    except DownloadError:
        return False
    return any(a.is_private or a.is_loopback for a in addrs)


def display_url(url: str) -> str:
    """`url` safe to show: no user:password, no query (a pre-signed URL's query is its credential)."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(url))[:300]
    text = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@", r"\1***@", text)
    return re.sub(r"\?[^#]*", "?…", text, count=1)
