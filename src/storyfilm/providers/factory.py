"""Making a provider from its spec: the key and base URL (environment or a secret store), the host client
with the spec's auth, and the spec's factory function."""

from __future__ import annotations

import base64
import importlib
import mimetypes
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import httpx

from storyfilm.errors import ConfigurationError
from storyfilm.providers.base import Provider, Uploads
from storyfilm.providers.http import HostClient
from storyfilm.providers.specs import SPECS, ProviderSpec, secret_name, spec_for

KeyLookup = Callable[[str], str | None]  # secret name -> value (e.g. a Prefect Secret block)
MediaHost = Callable[[Path, str], str]  # a local file (and the shot it is for) -> a URL a host can fetch


@dataclass(frozen=True)
class HostConfig:
    provider: str
    base_url: str
    api_key: str = field(repr=False)


def host_config(name: str, env: Mapping[str, str] | None = None, key_lookup: KeyLookup | None = None) -> HostConfig:
    """Base URL and API key of a hosted provider, from the environment or a secret store; clear errors if absent."""
    spec = spec_for(name)
    env = os.environ if env is None else env
    if not (spec.api_key_env and spec.base_url_env):
        raise ConfigurationError("not a hosted provider: it takes no key or address", provider=name)
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


@dataclass(frozen=True)
class Setup:
    """What a spec's factory builds its provider from."""

    spec: ProviderSpec
    work_dir: Path
    env: Mapping[str, str]
    key_lookup: KeyLookup | None = None
    transport: httpx.BaseTransport | None = None

    def client(self) -> HostClient:
        """This host's client: its auth, its idempotency rule, this setup's transport."""
        cfg = host_config(self.spec.name, self.env, self.key_lookup)
        assert self.spec.auth is not None
        return HostClient(self.spec.name, cfg.base_url, self.spec.auth.headers(cfg.api_key),
                          secrets=[cfg.api_key], transport=self.transport,
                          idempotency_header=self.spec.idempotency_header)

    def media_host(self) -> MediaHost:
        """Where a host without an upload endpoint gets its local images from.

        A configured account of a host that has one (public URLs, as the reference recommends); otherwise a
        data: URI, which new-api style gateways commonly accept.
        """
        for other in SPECS.values():
            if other.name == self.spec.name or not other.capabilities.uploads:
                continue
            try:
                provider = make(other.name, self.work_dir, env=self.env, key_lookup=self.key_lookup,
                                transport=self.transport)
            except ConfigurationError:
                continue
            if isinstance(provider, Uploads):
                return provider.upload
        return data_uri


def data_uri(path: Path, shot: str = "") -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def make(name: str, work_dir: Path, *, env: Mapping[str, str] | None = None, key_lookup: KeyLookup | None = None,
         transport: httpx.BaseTransport | None = None) -> Provider:
    spec = spec_for(name)
    module, _, function = spec.factory.partition(":")
    build = cast(Callable[[Setup], Provider], getattr(importlib.import_module(module), function))
    return build(Setup(spec, Path(work_dir), os.environ if env is None else env, key_lookup, transport))
