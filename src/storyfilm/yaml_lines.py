"""Safe YAML loading that remembers the line of every key and item, and refuses duplicate keys.

Plain scalars are read with the YAML 1.2 core schema, not PyYAML's YAML 1.1 one: `true`/`false` are the
only booleans (`yes`, `no`, `on`, `off` are text), numbers are decimal, `0x` hex or `0o` octal (no base 60:
`16:9` is text, not 969; `010` is 10, not 8), and dates are text. Merge keys (`<<: *base`) work as YAML
defines them: the mapping's own keys override merged ones, and of several merged mappings the first wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

MAX_NODES = 200_000  # aliases can expand a small file into an enormous tree ("billion laughs")

_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_MERGE = "tag:yaml.org,2002:merge"


class _Core12(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's implicit types (see the module's docstring)."""


_Core12.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
):
    _Core12.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]  # a ScalarNode: resolved as int
    if text.startswith(("0x", "0o")):
        return int(text[2:], 16 if text[1] == "x" else 8)
    return int(text, 10)


_Core12.add_constructor("tag:yaml.org,2002:int", _construct_int)


class YamlProblem(Exception):
    def __init__(self, message: str, line: int | None):
        self.line = line
        super().__init__(message)


@dataclass
class Loaded:
    """A parsed document: its data, the line of each path, and the source text of each plain scalar that
    YAML read as something other than text (for hints such as "quote it")."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    plain: dict[Path_, str] = field(default_factory=dict)


def load_with_lines(text: str) -> Loaded:
    """Parse one YAML document safely."""
    try:
        node = yaml.compose(text, Loader=_Core12)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and exc.problem and "end of stream" in exc.problem:
            mark = exc.context_mark  # an unclosed quote or bracket: point at where it opened
        msg = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise YamlProblem(f"invalid YAML: {msg}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}", None) from None
    if node is None:
        return Loaded(None)
    loaded = Loaded(None, {(): node.start_mark.line + 1})
    count = 0
    constructor = _Core12("")

    def line(n: yaml.Node) -> int:
        return n.start_mark.line + 1

    def pairs(n: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """The mapping's own pairs after the pairs it merges in (so its own keys override them)."""
        nonlocal count
        own: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        count += len(n.value)
        if count > MAX_NODES:
            raise YamlProblem(f"the document expands to more than {MAX_NODES} values (alias bomb?)", line(n))
        for key_node, value_node in n.value:
            if key_node.tag != _MERGE:
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in reversed(sources):  # the first mapping listed wins: it is applied last
                if not isinstance(source, yaml.MappingNode):
                    raise YamlProblem("`<<` merges mappings only (an alias of a mapping, or a list of them)",
                                      line(source))
                merged += pairs(source)
        return merged + own

    def build(n: yaml.Node, path: Path_) -> Any:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise YamlProblem(f"the document expands to more than {MAX_NODES} values (alias bomb?)", line(n))
        loaded.lines.setdefault(path, line(n))
        if isinstance(n, yaml.MappingNode | yaml.SequenceNode) and n.tag not in _PLAIN_TAGS:
            raise YamlProblem(f"unsupported YAML tag {n.tag} (plain mappings, lists and values only)", line(n))
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            own: set[Any] = set()
            own_nodes = {id(k) for k, _ in n.value}
            for key_node, value_node in pairs(n):
                key = build(key_node, path)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise YamlProblem("mapping keys must be plain strings", line(key_node))
                is_own = id(key_node) in own_nodes
                if key in own and is_own:
                    raise YamlProblem(f"duplicate key '{key}' (a key may appear once per mapping)", line(key_node))
                if is_own:
                    own.add(key)
                loaded.lines[(*path, str(key))] = line(key_node)
                out[key] = build(value_node, (*path, str(key)))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(n.value)]
        try:
            value = constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            raise YamlProblem(f"invalid value: {exc}", line(n)) from None
        except (ValueError, OverflowError) as exc:
            raise YamlProblem(f"invalid value: {exc}", line(n)) from None
        if isinstance(n, yaml.ScalarNode) and n.style is None and not isinstance(value, str):
            loaded.plain[path] = n.value
        return value

    loaded.data = build(node, ())
    return loaded


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of the deepest existing prefix of `path`."""
    for end in range(len(path), -1, -1):
        found = lines.get(tuple(str(p) if isinstance(p, str) else p for p in path[:end]))
        if found is not None:
            return found
    return None
