"""The URL policy: every spelling of a non-public address refused, private networks only when named,
connections pinned to the address that was checked, and a deadline for every download."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from storyfilm.errors import ConfigurationError, DownloadError
from storyfilm.netpolicy import UrlPolicy, display_url, parse_networks
from storyfilm.providers.http import HostClient, RetryPolicy

from .helpers import write_image
from .netlab import HttpsServers, send, trickle, trusting

LOOPBACK_SPELLINGS = ["127.0.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0x7F.1", "127.1", "127.0.1",
                      "017700000001", "0177.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::1]", "localhost",
                      "LOCALHOST", "localhost.", "a.b.localhost", "127.0.0.2", "2130706434", "0x7f000002",
                      "[::ffff:127.0.0.2]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[::127.0.0.1]"]
OTHER_NON_PUBLIC = {
    "10.0.0.1": "private network", "167772161": "private network", "0xa000001": "private network",
    "172.16.0.1": "private network", "192.168.1.1": "private network", "[fd00::1]": "private network",
    "100.64.0.1": "reserved", "240.0.0.1": "reserved", "198.18.0.1": "private network",
    "169.254.169.254": "cloud metadata", "0xa9fea9fe": "cloud metadata", "2852039166": "cloud metadata",
    "[::ffff:169.254.169.254]": "cloud metadata", "[fd00:ec2::254]": "cloud metadata",
    "100.100.100.200": "cloud metadata", "169.254.1.1": "link-local", "[fe80::1]": "link-local",
    "[fe80::1%25eth0]": "link-local", "224.0.0.1": "multicast", "[ff02::1]": "multicast",
    "0.0.0.0": "unspecified", "0": "unspecified", "[::]": "unspecified",
}


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_refused_before_any_lookup(host: str) -> None:
    url = f"https://{host}:8443/still.png"
    problem = UrlPolicy().static_problem(url, https_only=True)
    assert problem is not None and "is not a public address" in problem and "--allow-network" in problem, problem
    with pytest.raises(DownloadError, match="not a public address"):
        UrlPolicy().resolve(url)


@pytest.mark.parametrize(("host", "kind"), list(OTHER_NON_PUBLIC.items()))
def test_private_link_local_metadata_multicast_reserved_are_refused(host: str, kind: str) -> None:
    problem = UrlPolicy().static_problem(f"https://{host}/x.png")
    assert problem is not None and kind in problem, problem


@pytest.mark.parametrize("name", ["metadata.google.internal", "metadata", "instance-data"])
def test_metadata_names_are_refused_without_a_lookup(name: str) -> None:
    policy = UrlPolicy(networks=(ipaddress.ip_network("0.0.0.0/0"),))  # not even when everything is allowed
    assert "cloud metadata" in str(policy.static_problem(f"https://{name}/computeMetadata/v1/"))


def test_an_allowed_network_opens_exactly_that_network() -> None:
    policy = UrlPolicy.from_env({"STORYFILM_ALLOW_NETWORKS": "127.0.0.2/32, 10.0.0.0/8"})
    for ok in ("127.0.0.2", "2130706434", "[::ffff:127.0.0.2]", "10.9.8.7"):
        assert policy.static_problem(f"https://{ok}/a.png") is None, ok
    for refused in ("127.0.0.1", "localhost", "192.168.0.1", "169.254.169.254", "224.0.0.1"):
        assert policy.static_problem(f"https://{refused}/a.png") is not None, refused
    assert "cloud metadata" in str(UrlPolicy.from_env({"STORYFILM_ALLOW_NETWORKS": "169.254.0.0/16"})
                                   .static_problem("https://169.254.169.254/"))


def test_a_private_host_may_serve_its_own_outputs_from_private_addresses_only() -> None:
    """Host outputs keep the rule they had: the emulator on loopback serves its outputs there."""
    policy = UrlPolicy.for_host("http://127.0.0.1:8787", env={})
    assert policy.host_private and policy.static_problem("http://127.0.0.1:8787/files/a.mp4") is None
    assert policy.static_problem("http://169.254.169.254/") is not None
    assert policy.static_problem("http://[fe80::1]/a.mp4") is not None
    public = UrlPolicy.for_host("https://8.8.8.8", env={})
    assert not public.host_private and public.static_problem("https://127.0.0.1/a.mp4") is not None


@pytest.mark.parametrize(("url", "words"), [
    ("https://[::1/x.png", "is not a valid URL"),
    ("https://example.com:99999/x.png", "port 99999 is outside 1-65535"),
    ("https://example.com:0/x.png", "port 0 is outside"),
    ("https:///x.png", "no host"),
    ("https://exa mple.com/x.png", "not a valid host name"),
    ("https://0177.0.0.1/x.png", "is not a valid URL"),
    ("http://example.com/x.png", "only https://"),
    ("file:///etc/passwd", "only https://"),
    ("https://x.internal/a.png", "local-network name"),
    ("https://printer.local/a.png", "local-network name"),
])
def test_malformed_and_local_urls_are_refused_clearly(url: str, words: str) -> None:
    problem = UrlPolicy().static_problem(url, https_only=True)
    assert problem is not None and words in problem, problem


def test_credentials_in_a_url_are_refused_and_never_shown() -> None:
    url = "https://user:s3cr3t-pw@example.com/a.png?X-Amz-Signature=abc"
    problem = UrlPolicy().static_problem(url, https_only=True)
    assert problem is not None and "user name or password" in problem
    assert "s3cr3t-pw" not in problem and "user" not in problem.split("carries")[0]
    assert display_url("https://u:p@h/a.png?token=zzz#f") == "https://***@h/a.png?…#f"
    assert display_url("https://h/a\x1b[2J.png") == "https://h/a\\x1b[2J.png"


def test_networks_named_wrong_are_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match=r"STORYFILM_ALLOW_NETWORKS: '10\.1\.2\.3/8' is not a network"):
        UrlPolicy.from_env({"STORYFILM_ALLOW_NETWORKS": "10.1.2.3/8"})
    with pytest.raises(ConfigurationError, match="'intranet' is not a network"):
        parse_networks(["intranet"], "--allow-network")


# --- over real sockets ----------------------------------------------------------------------------


@pytest.fixture
def png(tmp_path: Path) -> bytes:
    return write_image(tmp_path / "still.png").read_bytes()


def fake_resolver(monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]) -> list[str]:
    """`name` resolves to answers[0], then answers[1], ... (a DNS server rebinding between lookups);
    every other name, and numeric lookups, as usual. Returns the list of answers given."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        numeric_only = bool((kwargs.get("flags") or (args[3] if len(args) > 3 else 0)) & socket.AI_NUMERICHOST)
        if host == name and not numeric_only:
            given.append(answers[min(len(given), len(answers) - 1)])
            return real(given[-1], *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def test_the_connection_goes_to_the_address_that_was_checked(tmp_path: Path, png: bytes,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers 127.0.0.2 (allowed) at the check, then 127.0.0.1 (not allowed).
    Every connection goes to 127.0.0.2, with the name's Host header and TLS certificate."""
    with HttpsServers({"/still.png": send(png)}, tmp_path) as servers, trusting(servers.ca_file):
        given = fake_resolver(monkeypatch, "assets.example", ["127.0.0.2", "127.0.0.1"])
        policy = UrlPolicy(networks=(ipaddress.ip_network("127.0.0.2/32"),))
        client = HostClient("asset", "https://assets.example", {}, policy=policy, sleep=lambda s: None)
        out = client.download(f"https://assets.example:{servers.port}/still.png", tmp_path / "a.png", kind="image")
        assert out.read_bytes() == png
        assert given == ["127.0.0.2"]  # one lookup per download: the connection used its answer
        assert servers.counts == {"127.0.0.2": 1}
        assert servers.hosts == [("127.0.0.2", f"assets.example:{servers.port}")]  # the name's Host header
        # the next download looks again, and the name now says 127.0.0.1: refused, nothing connected
        with pytest.raises(DownloadError, match=r"resolves to 127\.0\.0\.1 \(loopback"):
            client.download(f"https://assets.example:{servers.port}/still.png", tmp_path / "b.png", kind="image")
        client.close()
    assert given == ["127.0.0.2", "127.0.0.1"] and servers.counts == {"127.0.0.2": 1}


def test_a_name_that_resolves_to_a_private_address_is_not_connected_to(tmp_path: Path, png: bytes,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with HttpsServers({"/still.png": send(png)}, tmp_path) as servers, trusting(servers.ca_file):
        fake_resolver(monkeypatch, "assets.example", ["127.0.0.1"])
        client = HostClient("asset", "https://assets.example", {}, policy=UrlPolicy(), sleep=lambda s: None)
        with pytest.raises(DownloadError, match=r"assets\.example resolves to 127\.0\.0\.1 \(loopback"):
            client.download(f"https://assets.example:{servers.port}/still.png", tmp_path / "x.png", kind="image")
    assert servers.total == 0 and not (tmp_path / "x.png").exists()


def only(network: str) -> UrlPolicy:
    return UrlPolicy(networks=(ipaddress.ip_network(network),))


def test_a_redirect_to_a_private_address_is_refused(tmp_path: Path, png: bytes) -> None:
    routes = {"/hop": send(b"", 302, {"Location": "https://127.0.0.1:1/still.png"}), "/still.png": send(png)}
    with HttpsServers(routes, tmp_path, addresses=("127.0.0.2",)) as servers, trusting(servers.ca_file):
        client = HostClient("asset", "https://x", {}, policy=only("127.0.0.2/32"))
        with pytest.raises(DownloadError, match=r"127\.0\.0\.1 \(loopback"):
            client.download(f"https://127.0.0.2:{servers.port}/hop", tmp_path / "x.png", kind="image")
    assert servers.counts["127.0.0.2"] == 1


def test_a_download_that_never_ends_stops_at_its_deadline(tmp_path: Path) -> None:
    """A server that sends a byte every 0.2 s forever: every read succeeds, only the deadline ends it."""
    with HttpsServers({"/still.png": trickle(b"\x89PNG\r\n\x1a\n")}, tmp_path, addresses=("127.0.0.1",)) as servers, \
            trusting(servers.ca_file):
        client = HostClient("asset", "https://x", {}, policy=only("127.0.0.0/8"),
                            retry=RetryPolicy(attempts=2, base_delay=0.01))
        with pytest.raises(DownloadError, match="did not finish within its deadline"):
            client.download(f"https://localhost:{servers.port}/still.png", tmp_path / "x.png", kind="image",
                            deadline=1.5)
    assert list(tmp_path.glob("*.png*")) == []
