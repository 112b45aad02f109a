"""Safe YAML loading that remembers the line of every key and item, and refuses duplicate keys."""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[str | int, ...]

MAX_NODES = 200_000  # aliases can expand a small file into an enormous tree ("billion laughs")


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class YamlProblem(Exception):
    def __init__(self, message: str, line: int | None):
        self.line = line
        super().__init__(message)


def load_with_lines(text: str) -> tuple[Any, dict[Path_, int]]:
    """Parse one YAML document safely; return the data and {path: 1-based line}."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and exc.problem and "end of stream" in exc.problem:
            mark = exc.context_mark  # an unclosed quote or bracket: point at where it opened
        msg = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise YamlProblem(f"invalid YAML: {msg}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}", None) from None
    if node is None:
        return None, {}
    lines: dict[Path_, int] = {(): node.start_mark.line + 1}
    count = 0
    constructor = yaml.SafeLoader("")

    def build(n: yaml.Node, path: Path_) -> Any:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise YamlProblem(f"the document expands to more than {MAX_NODES} values (alias bomb?)",
                              n.start_mark.line + 1)
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode | yaml.SequenceNode) and n.tag not in _PLAIN_TAGS:
            raise YamlProblem(f"unsupported YAML tag {n.tag} (plain mappings, lists and values only)",
                              n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            constructor.flatten_mapping(n)  # resolves `<<` merge keys
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = build(key_node, path)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise YamlProblem("mapping keys must be plain strings", key_node.start_mark.line + 1)
                if key in out:
                    raise YamlProblem(f"duplicate key '{key}' (a key may appear once per mapping)",
                                      key_node.start_mark.line + 1)
                lines[(*path, str(key))] = key_node.start_mark.line + 1
                out[key] = build(value_node, (*path, str(key)))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(n.value)]
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            raise YamlProblem(f"invalid value: {exc}", n.start_mark.line + 1) from None
        except (ValueError, OverflowError) as exc:  # e.g. an impossible timestamp
            raise YamlProblem(f"invalid value: {exc}", n.start_mark.line + 1) from None

    return build(node, ()), lines


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of the deepest existing prefix of `path`."""
    for end in range(len(path), -1, -1):
        found = lines.get(tuple(str(p) if isinstance(p, str) else p for p in path[:end]))
        if found is not None:
            return found
    return None
