"""The OpenAPI 3.1 document of the HTTP API, served at GET /openapi.json by the worker and the web role.

Generated, not hand-kept: request and response bodies are the pydantic models' JSON Schemas
(`recstream.records` for what clients send, `recstream.web.schemas` for what they get back), ids carry
the constraints of `records.Id`, the strategies and limits are the handlers' own constants. What code
cannot infer (which statuses a route answers, its query parameters) is declared in `OPERATIONS` below,
the one table of the API; `tests/unit/test_openapi.py` checks it lists exactly the routes of both roles,
and `tests/integration/test_openapi.py` fuzzes both against it.

OpenAPI 3.1 because its schemas are JSON Schema 2020-12, which is what pydantic emits (`null` types).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel

from recstream.records import Interaction, Video
from recstream.settings import Settings
from recstream.web import schemas as s
from recstream.web.access import Access
from recstream.web.handlers import MAX_EVENTS, MAX_K, MAX_VIDEOS, STRATEGIES

JSON, TEXT, HTML = "application/json", "text/plain", "text/html"
REF = "#/components/schemas/{model}"
DASHBOARD = "dashboard"  # tag of the worker-only operations (the web role serves the client API alone)


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    schema: dict[str, Any]
    description: str = ""
    example: Any = None


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    # status -> (description, model | {media type: model or schema}[, {response header: description}])
    responses: dict[int, tuple]
    scope: str | None = None  # the access scope its handler checks (recstream.web.access); None: always open
    params: tuple[Param, ...] = ()
    body: tuple[str, Any, Any] | None = None  # (description, JSON Schema referring to the models, example)
    description: str = ""


def _id(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The JSON Schema of an id field as the model declares it (records.Id: length and characters)."""
    schema = dict(model.model_json_schema()["properties"][name])
    schema.pop("title", None)
    return schema


def _int(name: str, default: int, low: int, high: int, description: str) -> Param:
    return Param(
        name,
        "query",
        {"type": "integer", "minimum": low, "maximum": high, "default": default},
        f"{description} (out of range: clamped to {low}..{high})",
    )


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


# The README's example ids (its curl lines): what the examples of this document show.
USER = Param("user_id", "path", _id(Interaction, "user_id"), example="me")
VIDEO = Param("video_id", "path", _id(Interaction, "video_id"), example="v1")
EXAMPLE_EVENT = {
    "type": "view",
    "user_id": "me",
    "video_id": "v1",
    "watch_time_ms": 9500,
    "duration_ms": 10000,
}
EXAMPLE_VIDEO = {"video_id": "v1", "creator_id": "c1", "duration_ms": 10000, "category": "cats"}
K = _int("k", 20, 1, MAX_K, "how many items")
STRATEGY = Param(
    "strategy",
    "query",
    {"type": "string", "enum": list(STRATEGIES)},
    "overrides the user's A/B bucket (RECSTREAM_STRATEGIES)",
)
PREVIEW = Param(
    "preview",
    "query",
    {"type": "boolean"},
    "true: a look, not an impression (the dashboard, debugging): not published to the impressions "
    "topic, so it counts toward no max_unengaged_impressions",
)

BAD_JSON = (400, ("the body is not UTF-8 JSON", s.ErrorResponse))
NOT_JSON = (415, ("the Content-Type is not application/json", s.ErrorResponse))
RATE_LIMITED = (
    429,
    (
        "the client address is over write_rate_limit_per_s",
        s.ErrorResponse,
        {"Retry-After": "seconds until the events of this request may pass"},
    ),
)
TOO_LARGE = (
    413,
    (
        "the body is larger than max_body_bytes (`limit_bytes`), or carries more items than `limit`",
        s.ErrorResponse,
    ),
)
INVALID_BODY = (
    422,
    (
        "an item is invalid (`details`: every field at fault), or the body is neither an item "
        "nor a batch of them; nothing of the request was produced",
        {JSON: {"anyOf": [_ref(s.ValidationErrorResponse), _ref(s.ErrorResponse)]}},
    ),
)
BAD_PATH_ID = (422, ("the id in the path is not a valid id", s.ValidationErrorResponse))
BAD_PARAM = (422, ("a query parameter is invalid (`field` names it)", s.ErrorResponse))
DASH_BAD_PARAM = (400, ("a query parameter is not an integer", s.DashboardError))
DASH_DOWN = (503, ("Redis is unreachable", s.DashboardError))


def _ingest(
    path: str,
    op_id: str,
    model: type[BaseModel],
    batch: type[BaseModel],
    plural: str,
    most: int,
    what: str,
    example: dict[str, Any],
) -> Op:
    return Op(
        "post",
        path,
        op_id,
        f"publish {what}",
        "ingest",
        scope="write",
        body=(
            f'one {model.__name__} or {{"{plural}": [...]}} (at most {most:,})',
            {"oneOf": [_ref(model), _ref(batch)]},
            example,
        ),
        responses=dict(
            [
                (202, ("accepted: Kafka acknowledged every record", s.Accepted)),
                BAD_JSON,
                TOO_LARGE,
                NOT_JSON,
                INVALID_BODY,
                RATE_LIMITED,
            ]
        ),
    )


OPERATIONS: tuple[Op, ...] = (
    # --- the client API: both roles -----------------------------------------------------------
    _ingest(
        "/events",
        "postEvents",
        Interaction,
        s.InteractionBatch,
        "events",
        MAX_EVENTS,
        "interactions",
        EXAMPLE_EVENT,
    ),
    _ingest(
        "/videos", "postVideos", Video, s.VideoBatch, "videos", MAX_VIDEOS, "video metadata", EXAMPLE_VIDEO
    ),
    Op(
        "get",
        "/recommendations/{user_id}",
        "getRecommendations",
        "a user's next videos, with reasons",
        "serve",
        params=(USER, K, STRATEGY, PREVIEW),
        scope="public",
        description="While Redis is unreachable it still answers, from this process's state and as for a new "
        "user, and says so in `degraded`.",
        responses=dict([(200, ("best first", s.RecommendationsResponse)), BAD_PARAM]),
    ),
    Op(
        "get",
        "/trending",
        "getTrending",
        "the trending videos",
        "serve",
        params=(K,),
        scope="public",
        responses=dict([(200, ("best first", s.TrendingResponse)), BAD_PARAM]),
    ),
    Op(
        "get",
        "/videos/{video_id}/stats",
        "getVideoStats",
        "a video's engagement: lifetime and windows",
        "serve",
        params=(VIDEO,),
        scope="public",
        responses={
            200: ("lifetime counters and the short and long windows", s.VideoStats),
            404: ("neither an event nor metadata of this video", s.UnknownVideo),
        },
    ),
    Op(
        "get",
        "/videos/{video_id}/similar",
        "getSimilarVideos",
        "a video's item-CF neighbours",
        "serve",
        params=(VIDEO, K),
        scope="public",
        responses=dict([(200, ("best first", s.SimilarResponse)), BAD_PARAM]),
    ),
    Op(
        "delete",
        "/videos/{video_id}",
        "deleteVideo",
        "take a video down",
        "ingest",
        params=(VIDEO,),
        scope="write",
        description="A tombstone on the compacted videos topic: every process stops serving the video within "
        "its refresh interval.",
        responses=dict([(202, ("the tombstone is in Kafka", s.VideoDeleted)), BAD_PATH_ID, RATE_LIMITED]),
    ),
    Op(
        "delete",
        "/users/{user_id}",
        "deleteUser",
        "erase a user",
        "ingest",
        params=(USER,),
        scope="write",
        description="An erasure after the user's events on their interactions partition: their history goes "
        "from the table, Redis and MongoDB.",
        responses=dict([(202, ("the erasure is in Kafka", s.UserErased)), BAD_PATH_ID, RATE_LIMITED]),
    ),
    Op(
        "get",
        "/health",
        "getHealth",
        "dependencies and the serving state's age",
        "operations",
        responses={
            200: ("every dependency is ok (web role: and the serving state loaded)", s.Health),
            503: ("degraded: a dependency is down, or (web role) the state has not loaded yet", s.Health),
        },
    ),
    Op(
        "get",
        "/metrics",
        "getMetrics",
        "Prometheus metrics",
        "operations",
        responses={200: ("Prometheus text exposition", {TEXT: {"type": "string"}})},
    ),
    Op(
        "get",
        "/openapi.json",
        "getOpenApi",
        "this document",
        "operations",
        responses={200: ("OpenAPI 3.1", s.OpenApiDocument)},
    ),
    # --- the dashboard: workers only ------------------------------------------------------------
    Op(
        "get",
        "/",
        "getDashboard",
        "the real-time dashboard page",
        DASHBOARD,
        responses={200: ("HTML", {HTML: {"type": "string"}})},
    ),
    Op(
        "get",
        "/api/overview",
        "getOverview",
        "events, watch time and rates per bucket",
        DASHBOARD,
        params=(_int("minutes", 5, 1, 60, "span"), _int("step", 1, 1, 60, "bucket width, seconds")),
        scope="public",
        responses=dict([(200, ("series and window totals", s.Overview)), DASH_BAD_PARAM, DASH_DOWN]),
    ),
    Op(
        "get",
        "/api/trending",
        "getDashboardTrending",
        "trending with metadata and direction",
        DASHBOARD,
        params=(_int("k", 10, 1, 100, "how many videos"),),
        scope="public",
        responses=dict([(200, ("best first", s.DashboardTrending)), DASH_BAD_PARAM, DASH_DOWN]),
    ),
    Op(
        "get",
        "/api/videos/{video_id}/analytics",
        "getVideoAnalytics",
        "one video's analytics",
        DASHBOARD,
        params=(
            VIDEO,
            _int("minutes", 30, 1, 24 * 60, "timeline span"),
            _int("k", 10, 1, 100, "how many similar videos"),
        ),
        scope="public",
        responses=dict(
            [
                (200, ("stats, windows, timeline, similar videos", s.VideoAnalytics)),
                DASH_BAD_PARAM,
                (404, ("neither stats nor metadata", s.UnknownVideo)),
                DASH_DOWN,
            ]
        ),
    ),
    Op(
        "get",
        "/api/videos",
        "getVideosMeta",
        "metadata of several videos",
        DASHBOARD,
        params=(
            Param("ids", "query", {"type": "string"}, "comma-separated video ids (the first 100 are used)"),
        ),
        scope="public",
        responses=dict([(200, ("the known videos among them", s.VideosMeta)), DASH_DOWN]),
    ),
    Op(
        "get",
        "/api/users/{user_id}/history",
        "getUserHistory",
        "a user's recent engagements",
        DASHBOARD,
        params=(USER, _int("k", 50, 1, 500, "how many entries")),
        scope="user",
        responses=dict([(200, ("newest first, with metadata", s.UserHistory)), DASH_BAD_PARAM, DASH_DOWN]),
    ),
    Op(
        "get",
        "/api/model",
        "getModel",
        "the model registry and the latest closed-loop run",
        DASHBOARD,
        params=(
            Param("namespace", "query", {"type": "string", "default": "model"}, "model namespace"),
            _int("limit", 10, 1, 50, "how many versions"),
        ),
        scope="public",
        responses=dict(
            [(200, ("the active version and the newest ones", s.ModelRegistry)), DASH_BAD_PARAM, DASH_DOWN]
        ),
    ),
    Op(
        "get",
        "/api/pipeline",
        "getPipeline",
        "consumer lag, dead letters, freshness, dependencies",
        DASHBOARD,
        scope="public",
        description="The dead letters' keys and payloads are hidden without the read key.",
        responses={200: ("the pipeline's health", s.Pipeline)},
    ),
)


def _content(spec: Any) -> dict[str, Any]:
    """{media type: {"schema": ...}} from a model, or from {media type: model or JSON Schema}."""
    if _is_model(spec):
        spec = {JSON: spec}
    return {media: {"schema": _ref(v) if _is_model(v) else v} for media, v in spec.items()}


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _models(spec: Any) -> list[type[BaseModel]]:
    """The models a response names (a bare model, or the models among its media types)."""
    return [spec] if _is_model(spec) else [v for v in spec.values() if _is_model(v)]


def _components(models: list[type[BaseModel]]) -> dict[str, Any]:
    """Every model's schema, with its nested models ($defs) lifted beside it."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        for name, sub in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if out.setdefault(name, sub) != sub:  # two models of one name: a $ref would be ambiguous
                raise ValueError(f"two different schemas named {name}")
    return dict(sorted(out.items()))


def _response(text: str, spec: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": text, "content": _content(spec)}
    if headers:
        out["headers"] = {
            name: {"description": d, "schema": {"type": "string"}} for name, d in headers.items()
        }
    return out


# Declared when a scope needs a key (`recstream.web.access.Access.check` answers these, with `{"error"}`).
UNAUTHORIZED = (401, ("no API key", s.ErrorResponse, {"WWW-Authenticate": "Bearer"}))
FORBIDDEN = (403, ("the API key does not grant this", s.ErrorResponse))
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "the same key"},
}


def _operation(op: Op, access: Access) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    if op.params:
        out["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.where == "path",
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
                **({"example": p.example} if p.example is not None else {}),
            }
            for p in op.params
        ]
    if op.body is not None:
        text, schema, example = op.body
        out["requestBody"] = {
            "required": True,
            "description": text,
            "content": {JSON: {"schema": schema, "example": example}},
        }
    responses = dict(op.responses)
    # Which scopes need a key is this deployment's settings (keys set, public_reads): ask the same rules
    # the handlers apply whether a request without a key passes.
    if op.scope is not None and not access.grants(op.scope, {}):
        out["security"] = [{"apiKey": []}, {"bearer": []}]
        responses.update([UNAUTHORIZED, FORBIDDEN])
    out["responses"] = {str(status): _response(*r) for status, r in sorted(responses.items())}
    return out


def build(settings: Settings) -> dict[str, Any]:
    models: list[type[BaseModel]] = [Interaction, Video]
    paths: dict[str, dict[str, Any]] = {}
    access = Access(settings)
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, access)
        for _text, spec, *_headers in op.responses.values():
            models += _models(spec)
    models += [s.InteractionBatch, s.VideoBatch, s.ValidationErrorResponse, s.ErrorResponse]  # named in $refs
    return {
        "openapi": "3.1.0",
        "info": {"title": "recstream", "version": _version(), "description": _description(settings)},
        # Relative: the API is wherever this document was fetched (a worker, the web role, a proxy).
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "ingest", "description": "events and videos into Kafka"},
            {"name": "serve", "description": "recommendations, trending, per-video figures"},
            {"name": "operations", "description": "health, metrics, this document"},
            {"name": DASHBOARD, "description": "the dashboard's page and JSON: workers only"},
        ],
        "paths": paths,
        "components": {"schemas": _components(models), "securitySchemes": SECURITY_SCHEMES},
    }


def _description(settings: Settings) -> str:
    """What this deployment's settings add to the schemas: the limits and the A/B buckets."""
    return (
        "Real-time recommendations for short-video platforms. Every worker serves every operation; the web "
        f"role (`recstream web`) all but those tagged `{DASHBOARD}`.\n\n"
        f"This deployment: request bodies up to {settings.max_body_bytes:,} bytes (`max_body_bytes`); event "
        f"and video times at most {settings.max_future_skew_s:g} s ahead of the server's clock "
        "(`max_future_skew_s`); users without `?strategy=` are split by a stable hash of their id over "
        f"{list(settings.strategies)} (`RECSTREAM_STRATEGIES`)."
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recstream")
    except PackageNotFoundError:
        return "0"


_documents: dict[str, tuple[dict[str, Any], bytes]] = {}


def _cached(settings: Settings) -> tuple[dict[str, Any], bytes]:
    # Static per process (the models and the table are code; the settings say which limits and which
    # keys apply): built once per settings.
    key = settings.model_dump_json()  # secrets dump masked: only whether a key is set counts
    if key not in _documents:
        document = build(settings)
        _documents[key] = (document, orjson.dumps(document))
    return _documents[key]


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document (cached: do not mutate it)."""
    return _cached(settings)[0]


def openapi_json(settings: Settings) -> bytes:
    """The document serialised, as GET /openapi.json sends it."""
    return _cached(settings)[1]
