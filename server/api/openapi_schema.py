"""JSON Schema of a pydantic model that can sit anywhere in the OpenAPI document.

`model.model_json_schema()` puts nested models under a local `$defs` and points at them with
`#/$defs/Name`. Inside /openapi.json such a reference resolves against the document's root,
where there is no `$defs`: Swagger UI shows a broken body and schemathesis (and any client
generator) sees no usable body at all. Routes that describe their body by hand (the hot
participant routes parse it themselves) use this instead: the nested models inlined.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_LOCAL_REF = "#/$defs/"


def inline_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON Schema with every `#/$defs/...` reference replaced by its definition
    (the request models are not recursive; a recursive one raises instead of looping)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_LOCAL_REF):
            name = ref[len(_LOCAL_REF) :]
            if name in seen:
                raise ValueError(f"{model.__name__}: recursive model {name} cannot be inlined")
            siblings = {k: resolve(v, seen) for k, v in node.items() if k != "$ref"}
            return resolve(definitions[name], (*seen, name)) | siblings
        return {key: resolve(value, seen) for key, value in node.items()}

    return resolve(schema, ())
