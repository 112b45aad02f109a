"""`storyfilm emulate`: the hosted providers' HTTP APIs on loopback, with real video and injectable faults."""

from storyfilm.emulator.app import create_app
from storyfilm.emulator.server import EmulatorServer, serve_forever
from storyfilm.emulator.state import EmulatorConfig

__all__ = ["EmulatorConfig", "EmulatorServer", "create_app", "serve_forever"]
