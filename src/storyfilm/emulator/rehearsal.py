"""`storyfilm run --emulate`: the emulator in-process, with every hosted provider pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from storyfilm.emulator.server import EmulatorServer
from storyfilm.emulator.state import EmulatorConfig
from storyfilm.providers import SPECS


@contextmanager
def rehearsal(latency: float = 2.0) -> Iterator[str]:
    """Serve the emulator and set every host's base URL and key to it (real keys never leave this process)."""
    saved = dict(os.environ)
    with EmulatorServer(EmulatorConfig(latency=latency)) as server:
        for spec in SPECS.values():
            if spec.base_url_env and spec.api_key_env:
                os.environ[spec.base_url_env] = server.url
                os.environ[spec.api_key_env] = "emulated-key"
        os.environ.setdefault("STORYFILM_POLL_INTERVAL", "0.5")
        os.environ["STORYFILM_REHEARSAL"] = "1"
        try:
            yield server.url
        finally:
            os.environ.clear()
            os.environ.update(saved)
