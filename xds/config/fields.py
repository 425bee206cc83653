"""Reading configuration text: bounded regular files, UTF-8 YAML with unique keys, and validation
errors in one voice.

Every problem becomes a `ConfigError`: the key, the value, and what is expected, on one line.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from xds.shared.addresses import parse_listen
from xds.shared.errors import ConfigError as ConfigError


class _DuplicateKey(yaml.YAMLError):
    pass


@dataclass(frozen=True, slots=True)
class FileRead:
    """A file's content and what identifies that version of it: a write changes `signature`."""

    content: bytes
    digest: str
    signature: tuple[int, int, int, int]  # device, inode, size, modification time (ns)
    changed_while_read: bool


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_file(path: Path, limit: int) -> FileRead:
    """A regular file of at most `limit` bytes; ConfigError (naming the file) for anything else.

    Opened without blocking and checked before reading: a FIFO would hold the reading thread until
    some writer came, a device such as /dev/zero would fill memory."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise ConfigError(str(path), f"cannot read: {err.strerror or err}") from None
    try:
        before = os.fstat(descriptor)
        if not stat.S_ISREG(before.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(before.st_mode)), "special")
            raise ConfigError(str(path), f"cannot read: not a regular file ({kind})")
        too_big = f"cannot read: more than the {limit} bytes allowed"
        if before.st_size > limit:
            raise ConfigError(
                str(path), f"cannot read: {before.st_size} bytes, {too_big.removeprefix('cannot read: ')}"
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(descriptor, min(1 << 16, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while read
                raise ConfigError(str(path), too_big)
        after = os.fstat(descriptor)
    except OSError as err:
        raise ConfigError(str(path), f"cannot read: {err.strerror or err}") from None
    finally:
        os.close(descriptor)
    content = b"".join(chunks)
    signature = _signature(after)
    changed = _signature(before) != signature or size != after.st_size
    return FileRead(content, hashlib.sha256(content).hexdigest(), signature, changed)


def _signature(status: os.stat_result) -> tuple[int, int, int, int]:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


# libyaml's parser where PyYAML was built with it (the constructor stays PyYAML's safe one): static
# broker files grow with the brokers, and the pure-Python parser takes about 50 ms per 100 brokers,
# a large part of a replica's start.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SAFE_LOADER):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: with the
    stock loader the last one silently wins, so an edit meant to change a value can be lost."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` followed by overrides is how merges are meant to be used
            key = self.construct_object(key_node, deep=deep)
            try:
                first = lines.get(key)
            except TypeError:
                continue  # unhashable: the stock loader reports it
            line = key_node.start_mark.line + 1
            if first is not None:
                raise _DuplicateKey(f"duplicate key {key!r} at lines {first} and {line}")
            lines[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def read_yaml(content: bytes, origin: str) -> Any:
    """Parse a YAML document that must be UTF-8 text; errors name `origin` (a file's path)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            origin, f"expected UTF-8 text, got byte 0x{content[err.start]:02x} at offset {err.start}"
        ) from None
    try:
        return yaml.load(text.removeprefix("\ufeff"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKey as err:
        raise ConfigError(origin, str(err)) from None
    except yaml.YAMLError as err:
        raise ConfigError(origin, f"not valid YAML: {_yaml_problem(err)}") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error as `line L, column C: problem (context from line L)`, without its
    `in "<unicode string>"` (the file is named by the caller)."""
    if not isinstance(err, yaml.MarkedYAMLError) or err.problem_mark is None:
        return _one_line(str(err))
    mark = err.problem_mark
    text = f"line {mark.line + 1}, column {mark.column + 1}: {err.problem or 'cannot parse'}"
    if err.context and err.context_mark is not None:
        text += (
            f" ({err.context} from line {err.context_mark.line + 1}, column {err.context_mark.column + 1})"
        )
    return _one_line(text)


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, short: containers are named, not dumped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# What a pydantic error type expects, in our words (ctx holds the bound or the choices).
_EXPECTED: dict[str, str] = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "ip_v4_address": "an IPv4 address",
    "ip_v6_address": "an IPv6 address",
    "ip_any_address": "an IP address",
    "url_type": "a URL",
    "url_parsing": "a URL",
    "url_scheme": "a URL with scheme {expected_schemes}",
    "greater_than": "more than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
    "literal_error": "one of {expected}",
    "enum": "one of {expected}",
    "string_too_long": "at most {max_length} characters",
    "too_long": "at most {max_length} items",
}


def _expected(kind: str, ctx: dict[str, Any], patterns: Mapping[str, str]) -> str | None:
    if kind == "string_too_short":
        count = ctx.get("min_length", 1)
        return "a non-empty string" if count == 1 else f"at least {count} characters"
    if kind == "too_short":
        count = ctx.get("min_length", 1)
        return f"at least {count} item" + ("" if count == 1 else "s")
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return patterns.get(pattern, f"a string matching {pattern}")
    template = _EXPECTED.get(kind)
    # Bounds of float fields come as 1.0: show them as the user would write them.
    shown = {name: _show(value) if isinstance(value, float) else value for name, value in ctx.items()}
    return None if template is None else template.format_map(shown)


def describe_validation_error(
    err: pydantic.ValidationError,
    raw: Any,
    patterns: Mapping[str, str] | None = None,
    model: type[BaseModel] | None = None,
) -> ConfigError:
    """One of pydantic's errors as `key: expected X, got Y`. `raw` is the validated input,
    `patterns` describes the regular expressions of string fields for people, `model` (the validated
    class) lets an unknown key name the known key it is closest to.

    An unknown key is reported before anything else: a misspelt required key otherwise shows as that
    key missing, which sends the reader looking for the wrong thing."""
    errors = err.errors()
    detail = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = list(detail["loc"])
    kind, ctx = detail["type"], dict(detail.get("ctx") or {})
    about_key = bool(loc) and loc[-1] == "[key]"  # a mapping's key, not its value, is wrong
    if about_key:
        loc.pop()
        loc.pop()
    key = _key_path(loc, raw)
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1]) if model is not None and loc else ()
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.75) if loc else []
        return ConfigError(key, f"unknown key; did you mean {close[0]!r}?" if close else "unknown key")
    if kind == "missing":
        return ConfigError(key, "required key is missing")
    if kind in ("value_error", "assertion_error"):  # our validators say what they expect themselves
        message = str(detail["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return ConfigError(key, _one_line(message))
    expected = _expected(kind, ctx, patterns or {})
    value = detail.get("input")
    if kind in ("too_short", "too_long") and isinstance(value, list | tuple | dict):
        got = "none" if not value else str(len(value))
    else:
        got = _show(value)
    if expected is None:  # a type we have not foreseen: pydantic's own words, still one line
        return ConfigError(key, _one_line(f"{detail['msg']}, got {got}"))
    if about_key:
        expected += " as key"
    return ConfigError(key, _one_line(f"expected {expected}, got {got}"))


def _known_keys(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The keys the model at `loc` (a path of keys and list positions) accepts; empty if unknown."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue  # a list position (or a mapping's key): the models inside are what matter
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_inside(field.annotation)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_inside(annotation: Any) -> type[BaseModel] | None:
    """The config model an annotation holds (through Optional, unions, lists, mappings)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_inside(argument)
        if found is not None:
            return found
    return None


def _key_path(loc: list[Any], raw: Any) -> str:
    """`kafka_clusters[1].broker_ports.1001`: list positions in brackets, mapping keys after dots."""
    path = ""
    node = raw
    for part in loc:
        if isinstance(node, list) and isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if 0 <= part < len(node) else None
        else:
            path += f".{part}"
            node = node.get(part) if isinstance(node, dict) else None
    return path.removeprefix(".") or "<top>"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- the vocabulary every config model shares ---------------------------------------------------

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
USERNAME_PATTERN = r"^[^:]+$"
PATTERNS = {
    NAME_PATTERN: "lowercase letters, digits and '-', starting and ending with a letter or digit",
    USERNAME_PATTERN: "a name without ':'",
}
Port = Annotated[int, Field(ge=1, le=65535)]


class Model(BaseModel):
    """A part of the config: unknown keys refused, values immutable, types strict (YAML's `true` is
    not a port, `"9090"` is not a number; floats do accept integers)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


ListenAddress = Annotated[str, pydantic.AfterValidator(_check_listen)]
