"""A model's raw reply read as a pydantic model: exactly how complete_json reads it."""
from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tools.llm.errors import LLMOutputInvalid, LLMResult

M = TypeVar("M", bound=BaseModel)


def _unfenced(body: str) -> str:
    """A reply wrapped in a ```json fence, unwrapped (str methods: the regex form was quadratic
    on a reply of spaces)."""
    if len(body) >= 6 and body.startswith("```") and body.endswith("```"):
        inner = body[3:-3]
        return (inner.removeprefix("json")).strip()
    return body


def _parse(schema: type[M], text: str) -> M:
    body = _unfenced(text.strip())
    placeholder = LLMResult(text=text, model="", provider="", endpoint="")
    if not body:
        raise LLMOutputInvalid(text, "empty reply", placeholder)
    try:
        return schema.model_validate_json(body)
    except ValidationError as err:
        errors = json.loads(err.json(include_url=False))
    # Small local models put raw newlines inside JSON strings; that is a lexical slip, not a
    # different answer, so re-read leniently (strict=False) and validate the same model again.
    try:
        data = json.loads(body, strict=False)
    except ValueError:
        raise LLMOutputInvalid(text, errors, placeholder) from None
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise LLMOutputInvalid(text, json.loads(err.json(include_url=False)), placeholder) from None


def parse_structured(schema: type[M], text: str) -> M:
    """A model's raw reply read as `schema` exactly as complete_json reads it (raises LLMOutputInvalid)."""
    return _parse(schema, text)

