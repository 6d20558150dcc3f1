"""The gateway's own credentials to its instances, read from the settings: the headers it sends to each instance,
and every secret value the settings hold (for the scrubber of logs and errors).

An instance is known by its URL *without* userinfo, everywhere (logs, the store's cursors, answers, alerts): a
`user:password@` in an instance URL is taken out at start and sent as that instance's `Authorization: Basic`.
Which header wins, the most specific first: a header given for that instance (`<url or index>=Name: value`), then
the instance URL's userinfo, then a header given for every instance (`Name: value`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

from ..errors import SettingsError
from ..redaction import Redaction, header_item, url_redacted, url_without_userinfo, userinfo

# Set by the client itself, or meaningless for one hop: a configured header may not replace them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "expect"}
)
# libpq reads a password from this variable when the DSN gives none: the process holds it, so it is scrubbed too.
PASSWORD_VARIABLES = ("PGPASSWORD",)

InstanceHeaders = dict[str, tuple[tuple[str, str], ...]]


def without_userinfo(instances: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, tuple[str, str]]]:
    """The instance URLs as they are known (no userinfo), and the (user, password) each one carried."""
    bare, carried = [], {}
    for url in instances:
        plain = url_without_userinfo(url)
        bare.append(plain)
        found = userinfo(url)
        if found is not None:
            carried[plain] = found
    if len(set(bare)) != len(bare):
        raise SettingsError("instances", "the same instance is listed twice")
    return tuple(bare), carried


def header_items_problem(items: tuple[str, ...]) -> str | None:
    """A rule: each item reads as `Name: value` or `key=Name: value`, with a name the client may send. The value
    is a secret: no message repeats it."""
    for n, item in enumerate(items, 1):
        parsed = header_item(item)
        if parsed is None:
            return f"item {n} is not 'Name: value' (or '<instance URL or index>=Name: value')"
        _, name, value = parsed
        if name.lower() in RESERVED_HEADERS or name.lower().startswith("proxy-"):
            return f"item {n}: the header {name!r} cannot be set"
        if not value:
            return f"item {n}: the header {name!r} has no value"
        if any(c in value for c in "\r\n\0"):
            return f"item {n}: the value of {name!r} holds CR, LF or NUL"
    return None


def instance_headers(
    instances: tuple[str, ...], items: tuple[str, ...], carried: Mapping[str, tuple[str, str]]
) -> InstanceHeaders:
    """For each instance (as known), the headers the gateway sends it, names as given, one value per name."""
    shared: dict[str, tuple[str, str]] = {}
    own: dict[str, dict[str, tuple[str, str]]] = {i: {} for i in instances}
    for item in items:
        parsed = header_item(item)
        assert parsed is not None  # the rule has read every item
        key, name, value = parsed
        if key is None:
            shared[name.lower()] = (name, value)
        else:
            own[_instance_of(key, instances)][name.lower()] = (name, value)
    found: InstanceHeaders = {}
    for instance in instances:
        headers = dict(shared)
        if instance in carried:
            user, password = carried[instance]
            basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["authorization"] = ("Authorization", f"Basic {basic}")
        headers.update(own[instance])
        found[instance] = tuple(headers.values())
    return found


def _instance_of(key: str, instances: tuple[str, ...]) -> str:
    if key.isdigit():
        index = int(key)
        if index < len(instances):
            return instances[index]
        raise SettingsError("instance_headers", f"no instance {index} (instances are numbered from 0)")
    wanted = url_without_userinfo(key).rstrip("/")
    for instance in instances:
        if instance.rstrip("/") == wanted:
            return instance
    raise SettingsError("instance_headers", f"{url_redacted(key)} is not one of the instances")


def known_secrets(
    values: Iterable[tuple[Redaction | None, object]],
    carried: Mapping[str, tuple[str, str]],
    headers: InstanceHeaders,
    env: Mapping[str, str],
) -> tuple[str, ...]:
    """Every secret value in force: the secret parts of each redacted setting (`values`: its redaction and its
    value), the userinfo of the instance URLs, the headers sent to instances (Basic ones as sent, encoded), and
    the password variables of the environment."""
    found: list[str] = []
    for redaction, value in values:
        if isinstance(redaction, Redaction):
            found.extend(redaction.secrets(value))
    for user, password in carried.values():
        found.append(password or user)
    found.extend(value for sent in headers.values() for _, value in sent)
    found.extend(v.partition(" ")[2] for sent in headers.values() for _, v in sent if " " in v)
    found.extend(env[name] for name in PASSWORD_VARIABLES if env.get(name))
    return tuple(dict.fromkeys(s for s in found if s))
