"""Study YAML → StudyConfig, with errors that say file, line and field.

pydantic reports a location as a path of keys; the YAML node tree (kept from
`yaml.compose`) maps that path back to the line a researcher must edit.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from server.errors import AppError
from server.studies.schema import StudyConfig


class StudyConfigError(AppError):
    """`problems`: (line or None, field, message) each, for editors that mark lines."""

    status_code = 422

    def __init__(self, message: str, problems: list[tuple[int | None, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


def _node_line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest node along `loc` that exists in the document."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for key in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == key:
                    child, line = value_node, key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc]
    return "".join(parts).lstrip(".") or "(document)"


def read_yaml_file(path: Path) -> tuple[yaml.Node | None, object]:
    """A YAML file's node tree (for line numbers) and its data; AppError naming file and line."""
    if not path.is_file():
        raise AppError(f"{path}: no such study file")
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.compose(text), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise AppError(f"{path}{line}: not valid YAML: {exc.problem or exc}") from None


def parse_study_yaml(text: str, source_name: str = "<study>") -> StudyConfig:
    """Validate a study definition; raise StudyConfigError listing every problem."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source_name}:{mark.line + 1}" if mark else source_name
        problem = f"not valid YAML: {exc.problem or exc}"
        line = mark.line + 1 if mark else None
        raise StudyConfigError(f"{where}: {problem}", [(line, "(document)", problem)]) from None
    if not isinstance(data, dict):
        problem = "a study file must be a mapping of fields"
        raise StudyConfigError(f"{source_name}:1: {problem}", [(1, "(document)", problem)])
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
            message = error["msg"].removeprefix("Value error, ")
            problems.append((_node_line(root, loc), _field_name(loc), message))
        raise StudyConfigError(
            "; ".join(f"{source_name}:{line}: {field}: {msg}" for line, field, msg in problems),
            problems,
        ) from None


def load_study_file(path: str | Path) -> tuple[StudyConfig, str]:
    """The validated config and the file's text (kept verbatim with the study)."""
    path = Path(path)
    if not path.is_file():
        raise StudyConfigError(f"{path}: no such study file")
    text = path.read_text(encoding="utf-8")
    return parse_study_yaml(text, str(path)), text
