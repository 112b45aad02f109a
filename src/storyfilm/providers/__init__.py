"""Video providers behind one interface (base.py): the registry, configuration (keys, base URLs) and factory."""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from storyfilm.errors import ConfigurationError, PlanError
from storyfilm.providers import apiframe, gateway, local, wavespeed
from storyfilm.providers.base import Provider, ProviderSpec
from storyfilm.providers.http import HostClient

SPECS: dict[str, ProviderSpec] = {s.name: s for s in (local.SPEC, wavespeed.SPEC, gateway.SPEC, apiframe.SPEC)}
PLANNED: tuple[str, ...] = ()

KeyLookup = Callable[[str], str | None]  # secret name -> value (e.g. a Prefect Secret block)


def spec_for(name: str) -> ProviderSpec:
    if name in SPECS:
        return SPECS[name]
    raise PlanError(f"unknown provider '{name}'; available: {', '.join(SPECS)}")


def secret_name(provider: str) -> str:
    """The Prefect Secret block an API key may be kept in."""
    return f"storyfilm-{provider}-api-key"


@dataclass(frozen=True)
class HostConfig:
    provider: str
    base_url: str
    api_key: str = field(repr=False)


def host_config(name: str, env: Mapping[str, str] | None = None, key_lookup: KeyLookup | None = None) -> HostConfig:
    """Base URL and API key of a hosted provider, from the environment or a secret store; clear errors if absent."""
    spec = spec_for(name)
    env = os.environ if env is None else env
    assert spec.api_key_env and spec.base_url_env
    key = env.get(spec.api_key_env) or (key_lookup(secret_name(name)) if key_lookup else None)
    if not key:
        raise ConfigurationError(f"no API key: set {spec.api_key_env} or save a Prefect Secret block named "
                                 f"'{secret_name(name)}' (or rehearse for free with `storyfilm run --emulate`)",
                                 provider=name)
    base = env.get(spec.base_url_env) or spec.default_base_url
    if not base:
        raise ConfigurationError(f"no address: set {spec.base_url_env} to your gateway's base URL", provider=name)
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{spec.base_url_env}={base!r} is not an http(s) URL", provider=name)
    return HostConfig(name, base.rstrip("/"), key.strip())


def _client(cfg: HostConfig) -> HostClient:
    headers = {"X-API-Key": cfg.api_key} if cfg.provider == "apiframe" else {"Authorization": f"Bearer {cfg.api_key}"}
    return HostClient(cfg.provider, cfg.base_url, {**headers, "User-Agent": "storyfilm"}, secrets=[cfg.api_key])


def data_uri(path: Path, shot: str = "") -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def media_host(env: Mapping[str, str], key_lookup: KeyLookup | None) -> Callable[[Path, str], str]:
    """Where the gateway's local images go: it has no upload endpoint of its own.

    A WaveSpeed or Apiframe account's upload endpoint when one is configured (public URLs, as the
    reference recommends); otherwise a data: URI, which new-api style gateways commonly accept.
    """
    for name, cls in (("wavespeed", wavespeed.WaveSpeedProvider), ("apiframe", apiframe.ApiframeProvider)):
        try:
            return cls(_client(host_config(name, env, key_lookup))).upload
        except ConfigurationError:
            continue
    return data_uri


def make_provider(name: str, work_dir: Path, *, env: Mapping[str, str] | None = None,
                  key_lookup: KeyLookup | None = None) -> Provider:
    spec_for(name)
    if name == "local":
        return local.LocalProvider(work_dir)
    env = os.environ if env is None else env
    client = _client(host_config(name, env, key_lookup))
    if name == "wavespeed":
        return wavespeed.WaveSpeedProvider(client)
    if name == "apiframe":
        return apiframe.ApiframeProvider(client)
    return gateway.GatewayProvider(client, media_host(env, key_lookup))
