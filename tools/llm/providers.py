"""Provider adapters: the SDK clients (one per endpoint and key) and one request in each provider's
own form (vLLM/OpenAI: response_format json_schema; llama.cpp: json_object + schema; Anthropic: a
forced tool call), answered as a ProviderReply."""
from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
from pydantic import BaseModel

from config import Settings
from tools.llm.routes import Route


@dataclass
class ProviderReply:
    text: str
    model: str
    tokens_in: int
    tokens_out: int
    finish_reason: str | None


def _estimate_tokens(text: str) -> int:
    # Only when a server reports no usage: ~4 characters per token.
    return max(1, len(text) // 4) if text else 0


@functools.lru_cache(maxsize=64)
def _cached_json_schema(schema: type) -> dict:
    return schema.model_json_schema()


def _json_schema_of(schema: type) -> dict:
    # pydantic regenerates the schema on every call (~1 ms of CPU per LLM call under load): cache
    # it per model class; a deep copy so no SDK can mutate the cached one.
    return copy.deepcopy(_cached_json_schema(schema))


def _openai_response_format(provider: str, name: str, schema: dict) -> dict:
    if provider == "llamacpp":
        # llama.cpp refuses json_schema (HTTP 500) and turns json_object + schema into a grammar.
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": provider == "vllm"}}


def _anthropic_messages(messages: list[dict]) -> tuple[str | None, list[dict]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    rest: list[dict] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if rest and rest[-1]["role"] == m["role"]:  # data blocks are consecutive user messages: one turn
            rest[-1] = {"role": m["role"], "content": f"{rest[-1]['content']}\n\n{m['content']}"}
        else:
            rest.append({"role": m["role"], "content": m["content"]})
    if not rest or rest[0]["role"] != "user":
        rest.insert(0, {"role": "user", "content": "Go on."})
    return system, rest


def _tool_name(schema_name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", f"submit_{schema_name}")[:64]



class ProviderClients:
    """The SDK clients of one gateway (they are bound to the event loop that first used them)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._openai: dict[tuple[str, str | None], openai.AsyncOpenAI] = {}
        self._anthropic: dict[tuple[str, str | None], anthropic.AsyncAnthropic] = {}

    def openai_client(self, route: Route) -> openai.AsyncOpenAI:
        k = (route.endpoint(self.settings), route.key(self.settings))
        c = self._openai.get(k)
        if c is None:
            # SDK retries off: tenacity in the gateway owns retries, so breakers and Retry-After see every attempt.
            c = self._openai[k] = openai.AsyncOpenAI(
                base_url=k[0], api_key=k[1] or "not-needed", max_retries=0, timeout=self.settings.llm_timeout_s)
        return c

    def anthropic_client(self, route: Route) -> anthropic.AsyncAnthropic:
        k = (route.endpoint(self.settings), route.key(self.settings))
        c = self._anthropic.get(k)
        if c is None:
            c = self._anthropic[k] = anthropic.AsyncAnthropic(
                base_url=k[0], api_key=k[1], max_retries=0, timeout=self.settings.llm_timeout_s)
        return c

    async def aclose(self) -> None:
        for c in self._openai.values():
            await c.close()
        for c in self._anthropic.values():
            await c.close()
        self._openai.clear()
        self._anthropic.clear()

    async def send(self, route: Route, messages: list[dict], schema: type[BaseModel] | None, max_tokens: int,
                   temperature: float, timeout: float) -> ProviderReply:
        name = schema.__name__ if schema else None
        json_schema = _json_schema_of(schema) if schema else None
        if route.provider == "anthropic":
            system, msgs = _anthropic_messages(messages)
            kwargs: dict[str, Any] = {"model": route.model, "max_tokens": max_tokens, "messages": msgs,
                                      "timeout": timeout}
            if system:
                kwargs["system"] = system
            if schema is not None:
                tool = _tool_name(name)
                kwargs["tools"] = [{"name": tool, "description": f"Submit the {name} as structured data.",
                                    "input_schema": json_schema}]
                kwargs["tool_choice"] = {"type": "tool", "name": tool}
            msg = await self.anthropic_client(route).messages.create(**kwargs)
            text = ""
            if schema is not None:
                block = next((b for b in msg.content if b.type == "tool_use"), None)
                text = json.dumps(block.input) if block is not None else ""
            if not text:
                text = "".join(b.text for b in msg.content if b.type == "text")
            usage = msg.usage
            return ProviderReply(text, msg.model, usage.input_tokens if usage else 0,
                                 usage.output_tokens if usage else _estimate_tokens(text), msg.stop_reason)
        kwargs = {"model": route.model, "messages": messages, "max_tokens": max_tokens,
                  "temperature": temperature, "timeout": timeout}
        if schema is not None:
            kwargs["response_format"] = _openai_response_format(route.provider, name, json_schema)
        resp = await self.openai_client(route).chat.completions.create(**kwargs)
        if not resp.choices:
            raise openai.APIResponseValidationError  # pragma: no cover - servers always send one
        choice = resp.choices[0]
        text = choice.message.content or ""
        usage = resp.usage
        if usage is not None:
            t_in, t_out = usage.prompt_tokens or 0, usage.completion_tokens or 0
        else:
            t_in = _estimate_tokens("".join(m["content"] for m in messages))
            t_out = _estimate_tokens(text)
        # llama.cpp echoes any requested name: report the route's model, which is what we asked for.
        return ProviderReply(text, route.model, t_in, t_out, choice.finish_reason)
