"""YAML as people write it: ``1e-4`` is a number, a duplicate key is an error, aliases and size are bounded.

PyYAML implements YAML 1.1, which reads ``1e-4`` (no dot) as a string and keeps the last of two
equal keys without a word; a few nested aliases can expand into gigabytes. ``load`` fixes all
three, and says where: every problem names its line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: Largest job file read (bytes); a job spec is a few kilobytes.
MAX_BYTES = 1 << 20
#: Most aliases (``*name``) one file may use; a job spec needs a handful at most.
MAX_ALIASES = 64
#: Most values the document may hold once its aliases are expanded.
MAX_VALUES = 100_000

# YAML 1.2's float forms that YAML 1.1 misses: an exponent without a dot (1e-4, 3E-2, -2e5).
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)$")


class YamlProblem(ValueError):
    """The text is not a usable YAML job; the message names the line and the fix."""


class _Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlProblem(f"line {mark.line + 1}: more than {MAX_ALIASES} aliases (*name); fix: write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise YamlProblem(f"line {line}: key {key!r} appears again (first on line {seen[key]}); fix: keep one of them")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789"))


def load(text: str) -> Any:
    """``text`` parsed as one YAML document; raises ``YamlProblem`` or ``yaml.YAMLError``."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise YamlProblem(f"the file has {len(text.encode('utf-8')):,} bytes, more than {MAX_BYTES:,}; fix: a job spec is a few kilobytes")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_size(node, {})
        if values > MAX_VALUES:
            raise YamlProblem(f"the aliases expand to more than {MAX_VALUES:,} values; fix: write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` holds once every alias in it is expanded, without expanding it."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a node that refers to itself counts once
    children = (
        node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
    )
    memo[id(node)] = min(1 + sum(_expanded_size(c, memo) for c in children), MAX_VALUES + 1)
    return memo[id(node)]
