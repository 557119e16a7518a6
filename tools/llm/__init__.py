"""The LLM gateway package: every model call of the engine goes through tools.llm.

    routes.py     which provider, endpoint and model serve a role; prices and cost
    errors.py     the result, the errors callers catch, the classification retries act on
    parsing.py    a structured reply read and validated (complete_json and the judge gate)
    providers.py  SDK clients and one request in each provider's own form
    gateway.py    LLMGateway: fallback chains, breakers, retries, deadlines, recording, observers
    shared.py     the process's gateway per event loop (get_gateway) wired with its observers

`from tools.llm import X` keeps working for every name below."""
from __future__ import annotations

from tools.llm.errors import (
    LLMAdapterMissing,
    LLMError,
    LLMOutputInvalid,
    LLMResult,
    LLMTimeout,
    LLMUnavailable,
    RouteFailure,
    classify,
)
from tools.llm.gateway import (
    LLMCallEvent,
    LLMGateway,
    Observer,
    Recorder,
    RouteCall,
    endpoint_diagnosis,
    register_endpoint_diagnostic,
)
from tools.llm.parsing import _parse, parse_structured
from tools.llm.routes import (
    DEFAULT_PRICES,
    OPENAI_COMPATIBLE,
    ROLES,
    ProviderKind,
    Role,
    Route,
    cost_usd,
    default_routes,
    price_for,
    price_table,
    role_prices,
    routes_from_settings,
)
from tools.llm.shared import get_gateway, reset_gateway

__all__ = [
    "DEFAULT_PRICES",
    "OPENAI_COMPATIBLE",
    "ROLES",
    "LLMAdapterMissing",
    "LLMCallEvent",
    "LLMError",
    "LLMGateway",
    "LLMOutputInvalid",
    "LLMResult",
    "LLMTimeout",
    "LLMUnavailable",
    "Observer",
    "ProviderKind",
    "Recorder",
    "Role",
    "Route",
    "RouteCall",
    "RouteFailure",
    "_parse",
    "classify",
    "cost_usd",
    "default_routes",
    "endpoint_diagnosis",
    "get_gateway",
    "parse_structured",
    "price_for",
    "price_table",
    "register_endpoint_diagnostic",
    "reset_gateway",
    "role_prices",
    "routes_from_settings",
]
