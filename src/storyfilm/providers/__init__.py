"""Video providers behind one interface (base.py); the registry of what is available."""

from __future__ import annotations

from pathlib import Path

from storyfilm.errors import PlanError
from storyfilm.providers import local
from storyfilm.providers.base import Provider, ProviderSpec

SPECS: dict[str, ProviderSpec] = {local.SPEC.name: local.SPEC}
PLANNED = ("wavespeed", "gateway", "apiframe")  # in the format already; their clients are not built yet


def spec_for(name: str) -> ProviderSpec:
    if name in SPECS:
        return SPECS[name]
    if name in PLANNED:
        raise PlanError(f"provider '{name}' is not supported yet; available: {', '.join(SPECS)}")
    raise PlanError(f"unknown provider '{name}'; available: {', '.join(SPECS)}")


def make_provider(name: str, work_dir: Path) -> Provider:
    spec_for(name)
    return local.LocalProvider(work_dir)
