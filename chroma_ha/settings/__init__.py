"""The one settings object (`Settings`), in groups, built once from flags, `CHROMA_HA_*` variables and defaults.

`groups` holds the groups and their named defaults, `fields` how each setting is defined on its field and walked
into a `Definition`, `rules` what a valid value is and how a secret is shown.
"""

from .fields import ENV_PREFIX, Definition
from .groups import (
    DEFAULT_HEALTH_RISE,
    DEFAULT_PORT,
    DEFINITIONS,
    AdminSettings,
    AlertSettings,
    ConsistencySettings,
    DeleteSettings,
    HealthSettings,
    HttpSettings,
    MonitorSettings,
    ReplicationSettings,
    Settings,
    definition,
)
from .rules import OneOf

__all__ = [
    "DEFAULT_HEALTH_RISE",
    "DEFAULT_PORT",
    "DEFINITIONS",
    "ENV_PREFIX",
    "AdminSettings",
    "AlertSettings",
    "ConsistencySettings",
    "Definition",
    "DeleteSettings",
    "HealthSettings",
    "HttpSettings",
    "MonitorSettings",
    "OneOf",
    "ReplicationSettings",
    "Settings",
    "definition",
]
