"""YAML seed documents built straight from libyaml's events: PyYAML's safe loading, faster.

``yaml.load(text, CSafeLoader)`` parses in C but composes a node graph (two marks per node)
and constructs from it in Python: for the 100,000-key seed that is 12 s and 650 MB for a 14 MB
file. Seeds are plain trees of mappings, sequences and scalars, so this builds the same Python
values from the parser's event stream in one pass, resolving and constructing plain scalars with
PyYAML's own resolver table and constructors (bool, int, float, null, timestamps as SafeLoader
reads them). It takes a fifth of the time and memory.

Anything outside that subset (an explicit tag other than the standard scalar, sequence and
mapping tags, a merge key ``<<``, a collection as a mapping key, a second document) raises
``Unsupported``, and the caller loads the document with PyYAML's loader instead, so every
document reads exactly as ``yaml.load(text, SafeLoader)`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import BaseResolver, Resolver

# libyaml's parser where PyYAML was built with it.
SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + name for name in ("null", "bool", "int", "float", "timestamp"))
_STR, _BINARY = _TAG + "str", _TAG + "binary"
_MAP_TAGS = frozenset({None, "!", BaseResolver.DEFAULT_MAPPING_TAG})
_SEQ_TAGS = frozenset({None, "!", BaseResolver.DEFAULT_SEQUENCE_TAG})
# PyYAML's implicit resolvers by a plain scalar's first character ("" for an empty one), each
# list followed by those for any first character, as Resolver.resolve tries them.
_ANY_FIRST: list[tuple[str, Any]] = Resolver.yaml_implicit_resolvers.get(None, [])
_IMPLICIT: dict[str, list[tuple[str, Any]]] = {
    first: resolvers + _ANY_FIRST
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    if first is not None
}
_CONSTRUCT: dict[Any, Callable[[SafeConstructor, ScalarNode], Any]] = (
    SafeConstructor.yaml_constructors
)
_CONSTRUCTOR = SafeConstructor()
_NO_KEY = object()


class Unsupported(Exception):
    """The document uses YAML this builder leaves to PyYAML's loader."""


class AliasFound(Exception):
    """The document holds an alias (``*name``)."""


class TooDeep(Exception):
    """The document nests collections deeper than ``max_depth``."""


class Built:
    """The document's value, and whether any scalar was read as a date or time."""

    __slots__ = ("dates", "value")

    def __init__(self, value: Any, dates: bool) -> None:
        self.value = value
        self.dates = dates


def _scalar(event: yaml.ScalarEvent) -> Any:
    value: str = event.value
    tag = event.tag
    if tag is None or tag == "!":  # PyYAML resolves "!" as it resolves no tag
        if not event.implicit[0]:
            return value  # quoted, or a block scalar: a string
        for candidate, pattern in _IMPLICIT.get(value[0] if value else "", _ANY_FIRST):
            if pattern.match(value):
                tag = candidate
                break
        else:
            return value
    elif tag == _STR:
        return value
    if tag not in _SCALAR_TAGS and tag != _BINARY:
        raise Unsupported(tag)  # a merge key, "=", or an application tag
    try:
        return _CONSTRUCT[tag](_CONSTRUCTOR, ScalarNode(tag, value))
    except (ValueError, KeyError, OverflowError) as exc:
        # "2026-13-45" looks like a date but is none; "!!int abc": PyYAML lets these escape.
        raise _unreadable(value, tag, event.start_mark) from exc


def _unreadable(value: str, tag: str, mark: Any) -> yaml.YAMLError:
    """The error for a scalar that has the form of its type but cannot be one."""
    name = tag.removeprefix(_TAG)
    return ConstructorError(None, None, f"{value!r} is not a valid {name}", mark)


def build(text: str | bytes, max_depth: int) -> Built:
    """The single document in ``text`` as SafeLoader would construct it.

    Raises ``yaml.YAMLError`` for text that is not YAML, ``AliasFound``, ``TooDeep``, or
    ``Unsupported`` (see the module's description).
    """
    scalar_event, mapping_start, sequence_start = (
        yaml.ScalarEvent,
        yaml.MappingStartEvent,
        yaml.SequenceStartEvent,
    )
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    containers: list[Any] = []
    keys: list[Any] = []  # per open container: the mapping's pending key, or _NO_KEY
    root: Any = None
    documents = 0
    dates = False
    event: Any
    for event in yaml.parse(text, Loader=SafeLoader):
        kind = event.__class__
        if kind is scalar_event:
            value = _scalar(event)
            if not dates and value.__class__ not in (str, int, bool, float, type(None)):
                dates = True  # a date, datetime or bytes
        elif kind is mapping_start:
            if event.tag not in _MAP_TAGS:
                raise Unsupported(event.tag)
            value = {}
        elif kind is sequence_start:
            if event.tag not in _SEQ_TAGS:
                raise Unsupported(event.tag)
            value = []
        elif kind in ends:
            containers.pop()
            keys.pop()
            continue
        elif kind is yaml.AliasEvent:
            raise AliasFound
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise Unsupported("a second document")
            continue
        else:
            continue
        if containers:
            top = containers[-1]
            if top.__class__ is list:
                top.append(value)
            elif keys[-1] is _NO_KEY:
                if kind is not scalar_event:
                    raise Unsupported("a collection as a mapping key")
                keys[-1] = value
                continue
            else:
                top[keys[-1]] = value
                keys[-1] = _NO_KEY
        else:
            root = value
        if kind is not scalar_event:
            if len(containers) >= max_depth:
                raise TooDeep
            containers.append(value)
            keys.append(_NO_KEY)
    return Built(root, dates)
