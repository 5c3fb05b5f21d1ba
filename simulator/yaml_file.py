"""Reading a YAML file strictly: UTF-8 only, no key given twice, no list or mapping as a key, merge
keys as YAML defines them, and every problem reported on one line with the file, line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(Exception):
    """A file that cannot be read as YAML; the message names the file, where, and what is wrong."""


def read_yaml(path: Path) -> Any:
    """The file's YAML document as Python data; raises YamlFileError."""
    return _load_yaml(path, _read_text(path))


_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_STR_TAG = "tag:yaml.org,2002:str"
_Pairs = list[tuple[yaml.Node, yaml.Node]]


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses, with the line and column, what would otherwise be lost or crash.

    A key given twice in one mapping (YAML would keep the last), a list or mapping used as a key, and
    a scalar Python cannot convert (`2024-13-01`, a 5,000-digit integer) are ConstructorErrors. Merge
    keys (`<<: *base`, `<<: [*a, *b]`) work as YAML defines them: merged keys are not repeats, a key
    of the mapping itself overrides a merged one, and an earlier merged mapping overrides a later one.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._flat: set[yaml.Node] = set()
        self._open: set[yaml.Node] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Replace merge keys by the merged pairs, lowest precedence first (the dict keeps the last)."""
        if node in self._flat:  # a merged mapping is flattened once, however often it is merged
            return
        if node in self._open:
            raise yaml.constructor.ConstructorError(None, None, "'<<' merges a mapping into itself", node.start_mark)
        self._open.add(node)
        merged: _Pairs = []
        own: _Pairs = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged = self._merge_sources(node, value_node) + merged
            else:
                if key_node.tag == _VALUE_TAG:  # a plain `=` key is the string "="
                    key_node.tag = _STR_TAG
                own.append((key_node, value_node))
        _refuse_repeated_keys(self, [key for key, _ in own])
        node.value = merged + own
        self._open.discard(node)
        self._flat.add(node)

    def _merge_sources(self, node: yaml.MappingNode, value_node: yaml.Node) -> _Pairs:
        """The pairs of the mapping(s) a merge key names, the first mapping's last so that it wins."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        pairs: _Pairs = []
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"'<<' merges a mapping or a list of mappings, not a {source.id}", source.start_mark)
            self.flatten_mapping(source)
            pairs.extend(source.value)
        return pairs

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            shown = _shorten(str(node.value)) if isinstance(node, yaml.ScalarNode) else "this value"
            reason = str(exc).split("; ")[0]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown} as {kind} ({reason}); put it in quotes if it is text",
                node.start_mark) from None


def _refuse_repeated_keys(loader: _StrictLoader, key_nodes: list[yaml.Node]) -> None:
    seen: set[Any] = set()
    for key_node in key_nodes:
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a plain value such as a name or a number, not a {kind}",
                key_node.start_mark)
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
        seen.add(key)


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _read_text(path: Path) -> str:
    """The file's text, which must be UTF-8 (a UTF-8 byte order mark is fine)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read scenario: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise YamlFileError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}, "
                            f"line {line}); save the scenario as UTF-8") from None


def _load_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{path}: {_yaml_problem(exc, text)}") from None
    except RecursionError:
        raise YamlFileError(f"{path}: not valid YAML: nested too deeply for a scenario") from None


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line: where in the file (when known) and what is wrong."""
    if isinstance(exc, yaml.reader.ReaderError):
        start = text.rfind("\n", 0, exc.position) + 1
        where = f"line {text.count(chr(10), 0, exc.position) + 1} column {exc.position - start + 1}: "
        problem: object = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    else:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or exc
    return f"{where}not valid YAML: {' '.join(str(problem).split())}"
