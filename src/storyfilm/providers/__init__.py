"""Video providers behind one interface (base.py), described by their specs (specs.py).

Light on purpose: importing this package loads the specs only. A provider's code (and httpx) is loaded
when one is made (`make_provider`, through factory.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from storyfilm.providers.specs import SPECS, ProviderSpec, secret_name, spec_for

if TYPE_CHECKING:
    import httpx

    from storyfilm.providers.base import Provider
    from storyfilm.providers.factory import KeyLookup

__all__ = ["SPECS", "ProviderSpec", "make_provider", "secret_name", "spec_for"]


def make_provider(name: str, work_dir: Path, *, env: Mapping[str, str] | None = None,
                  key_lookup: KeyLookup | None = None, transport: httpx.BaseTransport | None = None) -> Provider:
    """The provider `name`, configured from `env` (default: the environment) or a secret store.

    `transport` replaces the network for every request it makes (API calls, uploads and downloads).
    """
    from storyfilm.providers.factory import make

    return make(name, work_dir, env=env, key_lookup=key_lookup, transport=transport)
