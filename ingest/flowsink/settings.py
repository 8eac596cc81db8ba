"""One definition per setting: the field helper every component's settings dataclass uses, and the generic
machinery that builds, validates and describes any of them.

Each component owns its settings (``ReceiveSettings`` in ``receive.py``, ``QueueSettings`` in ``queue/``,
``DecoderSettings`` in ``decode/``, ``ElasticsearchSettings`` in ``sinks/elasticsearch/`` ...) as a dataclass
whose fields carry their default, bounds and help line::

    @dataclass
    class QueueSettings:
        max_bytes: int = setting(4 * GIB, min=1 * MIB, help="disk budget of the whole queue")

``flowsink.config`` composes them into the node's configuration (one YAML section per component); the same
definitions produce the annotated example file, the reference table in ``docs/operations.md`` and the code
defaults, so the three cannot disagree (``tests/test_config_docs.py``). Components never import
``flowsink.config``: they are given their settings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

from flowsink.errors import ConfigError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

_NO_EXAMPLE = object()


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    help: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    reloadable: bool = False,
    secret: bool = False,
    example: Any = _NO_EXAMPLE,
    internal: bool = False,
) -> Any:
    """A settings field: its default (``factory`` for lists), bounds, allowed values, whether SIGHUP may change
    it, whether printing hides it, an example value for the annotated example file, and ``internal`` for a
    field code sets but a configuration file never does (it is neither documented nor read from YAML)."""
    metadata = {
        "help": help,
        "min": min,
        "max": max,
        "choices": choices,
        "reloadable": reloadable,
        "secret": secret,
        "example": example,
        "internal": internal,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def public_fields(cls_or_obj: Any) -> list[dataclasses.Field]:
    """The fields a configuration file may set (internal ones left out)."""
    return [f for f in dataclasses.fields(cls_or_obj) if not f.metadata.get("internal")]


def example_value(f: dataclasses.Field) -> tuple[Any, bool]:
    """``(value shown in the example file, True when it is an example rather than the default)``."""
    example = f.metadata.get("example", _NO_EXAMPLE)
    if example is not _NO_EXAMPLE:
        return example, True
    return default_of(f), False


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


# ---------------------------------------------------------------- coercion and validation


def _is_optional(hint: Any) -> tuple[bool, Any]:
    """``X | None`` -> (True, X); anything else -> (False, hint)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return True, args[0]
    return False, hint


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce_scalar(key: str, value: Any, hint: type) -> Any:
    """One value to ``hint`` (bool, int, float, str); strings from the environment are parsed."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int or hint is float:
        number = _coerce_number(value, hint)
        if number is None:
            raise ConfigError(f"{key}: expected {'an integer' if hint is int else 'a number'}, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")


def _coerce_number(value: Any, hint: type) -> int | float | None:
    """``value`` as ``hint`` (int or float), or None when it is not one; strings are parsed (sizes for int)."""
    if isinstance(value, bool):
        return None
    if hint is float:
        if isinstance(value, int | float):
            return float(value)
    elif isinstance(value, int):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return parse_int(value) if hint is int else float(value)
        except ValueError:
            return None
    return None


_SIZE_SUFFIXES = {"k": KIB, "m": MIB, "g": GIB, "t": 1024 * GIB}


def parse_int(text: str) -> int:
    """``"4096"``, ``"64k"``, ``"64MiB"``, ``"4G"``, ``"1_000"``: sizes accept binary suffixes."""
    cleaned = text.strip().lower().replace("_", "")
    for tail in ("ib", "b"):
        if cleaned.endswith(tail) and len(cleaned) > len(tail) and not cleaned[: -len(tail)].isdigit():
            cleaned = cleaned[: -len(tail)]
            break
    if cleaned and cleaned[-1] in _SIZE_SUFFIXES:
        return int(float(cleaned[:-1]) * _SIZE_SUFFIXES[cleaned[-1]])
    return int(cleaned)


def coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` (from YAML or an environment string) as the type ``hint``; lists accept comma-separated text."""
    optional, inner = _is_optional(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: a value is required, got null")
    if typing.get_origin(inner) is dict:
        # A mapping: YAML gives one; the environment gives its text (JSON, or YAML flow style). The settings
        # class checks what is inside (its validate()).
        if isinstance(value, str):
            import yaml

            try:
                value = yaml.safe_load(value) if value.strip() else {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{key}: expected a mapping (JSON or YAML), got {value!r}: {exc}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if typing.get_origin(inner) is list:
        (item_hint,) = typing.get_args(inner)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        elif not isinstance(value, list | tuple):
            value = [value]
        return [_coerce_scalar(f"{key}[{i}]", item, item_hint) for i, item in enumerate(value)]
    return _coerce_scalar(key, value, inner)


def check_bounds(key: str, value: Any, f: dataclasses.Field) -> None:
    items = value if isinstance(value, list) else [value]
    low, high, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
    for item in items:
        if item is None:
            continue
        if low is not None and item < low:
            raise ConfigError(f"{key}: must be >= {low:g}, got {item!r}")
        if high is not None and item > high:
            raise ConfigError(f"{key}: must be <= {high:g}, got {item!r}")
        if choices and item not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {item!r}")


def build(section: str, cls: type, raw: Mapping[str, Any]) -> Any:
    """``cls`` from a mapping of raw values (YAML, environment strings), every key checked and coerced.

    The settings class may normalise spellings users reasonably type with a ``normalise(name, value)``
    staticmethod, and check rules between its keys with a ``validate()`` method raising ``ConfigError``.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in public_fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
    normalise = getattr(cls, "normalise", None)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{section}.{name}"
        coerced = coerce(key, value, hints[name])
        if normalise is not None:
            coerced = normalise(name, coerced)
        check_bounds(key, coerced, fields[name])
        values[name] = coerced
    built = cls(**values)
    validate = getattr(built, "validate", None)
    if validate is not None:
        validate()
    return built


def to_plain(settings: Any, hide_secrets: bool = True) -> dict[str, Any]:
    """A settings object as plain data (secrets shown as ``***`` unless asked otherwise)."""
    values: dict[str, Any] = {}
    for f in public_fields(settings):
        value = getattr(settings, f.name)
        if hide_secrets and f.metadata.get("secret") and value:
            value = ["***"] * len(value) if isinstance(value, list) else "***"
        if isinstance(value, list | tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        values[f.name] = value
    return values


def changes(old: Any, new: Any, section: str) -> tuple[dict[str, Any], list[str]]:
    """Compare two settings objects: ({"section.key": new value} SIGHUP may apply, [keys needing a restart])."""
    apply: dict[str, Any] = {}
    restart: list[str] = []
    for f in public_fields(old):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before == after:
            continue
        key = f"{section}.{f.name}"
        if f.metadata.get("reloadable"):
            apply[key] = after
        else:
            restart.append(key)
    return apply, restart
