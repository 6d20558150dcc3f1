"""HTTP out: the client of Chroma instances, the instance's own API paths, and the incarnation marker.

Below everything that talks to an instance (the read path, the appliers, health, the catalog's tools): nothing
here knows about the gateway's own HTTP server, the log or the catalog.
"""

from .client import HeaderPairs, Headers, InstanceClient, Upstream
from .paths import API, HEARTBEAT
from .transport import InProcessTransport, Transport

__all__ = [
    "API",
    "HEARTBEAT",
    "HeaderPairs",
    "Headers",
    "InProcessTransport",
    "InstanceClient",
    "Transport",
    "Upstream",
]
