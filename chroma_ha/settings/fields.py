"""How a setting is defined on its field (`setting(...)`), and the `Definition` walked from it, from which the
variables, the coercion of text to the annotated type, the flags and the redaction are all generated."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..errors import SettingsError
from .rules import Rule

ENV_PREFIX = "CHROMA_HA_"

# --- how a setting is defined -----------------------------------------------------------------------------------

_ABOUT = "chroma_ha.setting"


@dataclass(frozen=True)
class _About:
    name: str
    rule: Rule | None
    help: str
    redact: Callable[[Any], Any] | None
    shown_default: str | None
    flag: str | None
    repeatable: bool


def setting(
    name: str,
    default: Any,
    rule: Rule | None,
    help: str,
    *,
    factory: Callable[[], Any] | None = None,
    redact: Callable[[Any], Any] | None = None,
    shown_default: str | None = None,
    flag: str | None = None,
    repeatable: bool = False,
) -> Any:
    """A field of a settings group, with what defines it as a setting: its flat public `name`, its `default` (or a
    `factory` of it), its `rule` and its `help`. A `redact`ed value is shown through that function in /status.
    `flag` replaces `--<name>`, and a `repeatable` flag is given once per item."""
    about = _About(name, rule, help, redact, shown_default, flag, repeatable)
    shown = redact is None  # a secret is never in a repr (a failed assertion, a debugger, a log line)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={_ABOUT: about}, repr=shown)
    return dataclasses.field(default=default, metadata={_ABOUT: about}, repr=shown)


class _Checked:
    """Checks every setting of a group when the group is built, naming the flat setting when one is bad."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(cast(Any, self)):
            about = f.metadata.get(_ABOUT)
            if about is not None and about.rule is not None:
                problem = about.rule(getattr(self, f.name))
                if problem is not None:
                    raise SettingsError(about.name, problem)


# --- the definitions --------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """One setting: where it lives (`settings.<group>.<field>`, or `settings.<field>` when `group` is None), its flat
    public `name`, its type (`kind`, from the annotation), its rule, help, default as shown, and its flag."""

    name: str
    group: str | None
    field: str
    kind: Any
    read: Callable[[str], Any]
    rule: Rule | None
    help: str
    redact: Callable[[Any], Any] | None
    shown_default: str
    flag: str
    repeatable: bool

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def path(self) -> str:
        return self.field if self.group is None else f"{self.group}.{self.field}"

    def parse(self, text: str) -> Any:
        """The value of a variable (or a flag given as text), as the annotated type."""
        try:
            return self.read(text)
        except ValueError as exc:
            raise SettingsError(self.name, f"cannot read {text!r}: {exc}") from None

    def value_in(self, settings: Any) -> Any:
        holder = settings if self.group is None else getattr(settings, self.group)
        return getattr(holder, self.field)


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _read_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _reader(name: str, kind: Any) -> Callable[[str], Any]:
    """How text becomes a value of the annotated type: bool, int, float, str, or a tuple of str, int or float."""
    if kind is bool:
        return _read_bool
    if kind in (int, float, str):
        return cast(Callable[[str], Any], kind)
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (str, int, float):
        item = args[0]
        return lambda text: tuple(item(part) for part in _split_list(text))
    raise TypeError(f"setting {name}: no way to read a {kind!r} from text")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value == "" or value == ():
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _define(group: str | None, f: dataclasses.Field[Any], kind: Any) -> Definition:
    about = f.metadata.get(_ABOUT)
    if not isinstance(about, _About):
        raise TypeError(f"settings field {group}.{f.name} is not defined with setting()")
    shown = about.shown_default if about.shown_default is not None else _shown(f.default)
    return Definition(
        name=about.name,
        group=group,
        field=f.name,
        kind=kind,
        read=_reader(about.name, kind),
        rule=about.rule,
        help=about.help,
        redact=about.redact,
        shown_default=shown,
        flag=about.flag or "--" + about.name.replace("_", "-"),
        repeatable=about.repeatable,
    )


def walk(settings: type) -> tuple[tuple[Definition, ...], dict[str, type]]:
    """Every setting of the `settings` class, top-level fields and each group's, and the groups by field name."""
    definitions: list[Definition] = []
    groups: dict[str, type] = {}
    hints = typing.get_type_hints(settings)
    for f in dataclasses.fields(settings):
        if _ABOUT in f.metadata:
            definitions.append(_define(None, f, hints[f.name]))
            continue
        groups[f.name] = group = hints[f.name]
        group_hints = typing.get_type_hints(group)
        definitions.extend(_define(f.name, g, group_hints[g.name]) for g in dataclasses.fields(group))
    names = [d.name for d in definitions]
    if len(set(names)) != len(names):
        raise TypeError(f"two settings share a name: {sorted(n for n in names if names.count(n) > 1)}")
    return tuple(definitions), groups
