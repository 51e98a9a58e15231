"""A loopback HTTP emulator of the Graph API (Messenger + Instagram) and the X API v2 DM endpoints.

Stdlib only, so it starts in milliseconds and needs nothing installed. It never imports the rest of the
project: it is the other side of the wire.
"""

from __future__ import annotations

from sandbox.core import Sandbox
from sandbox.state import Call, SandboxAccount

__all__ = ["Call", "Sandbox", "SandboxAccount"]
