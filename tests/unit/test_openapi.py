"""/openapi.json: a valid OpenAPI 3.1 document that lists exactly the routes both roles serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import jsonschema_rs
import orjson
import pytest
import schemathesis

from recstream.records import EVENT_TYPES, Interaction, Video
from recstream.serving.state import PARTS
from recstream.settings import Settings
from recstream.web import schemas
from recstream.web.handlers import STRATEGIES
from recstream.web.openapi import DASHBOARD, EXAMPLE_EVENT, EXAMPLE_VIDEO, openapi_document, openapi_json
from recstream.web.server import build_app

IGNORED = {"HEAD"}  # aiohttp adds HEAD beside every GET

# The worker's routes, from its Faust app (assembled in a child: that registers agents, tables and views).
LIST_WORKER_ROUTES = """
import json
from recstream.streaming.app import assembled
app = assembled()
print(json.dumps([[r.method, r.resource.canonical] for r in app.web.web_app.router.routes()]))
"""


@pytest.fixture(scope="module")
def doc() -> dict:
    return openapi_document(Settings())


def operations(doc: dict, *, dashboard: bool = True) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if dashboard or DASHBOARD not in op["tags"]
    }


def test_the_document_is_valid_openapi_3_1(doc: dict) -> None:
    assert doc["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI 3.1 metaschema
    for name, schema in doc["components"]["schemas"].items():
        try:
            jsonschema_rs.meta.validate(schema)  # each one valid JSON Schema 2020-12
        except jsonschema_rs.ValidationError as exc:
            pytest.fail(f"{name}: {exc}")


def test_every_reference_resolves(doc: dict) -> None:
    text = json.dumps(doc)
    names = set(doc["components"]["schemas"])
    refs = {part.split('"', 1)[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs <= names, refs - names
    assert "$defs" not in text  # every nested model lifted into components


def test_every_route_of_the_web_role_is_documented_and_nothing_else(doc: dict) -> None:
    routes = {
        (r.method, r.resource.canonical)
        for r in build_app(Settings()).router.routes()
        if r.method not in IGNORED
    }
    assert routes == operations(doc, dashboard=False)


def test_every_route_of_a_worker_is_documented_and_nothing_else(doc: dict, tmp_path: Path) -> None:
    env = {**os.environ, "RECSTREAM_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", LIST_WORKER_ROUTES],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    routes = {
        (m, p)
        for m, p in json.loads(out.splitlines()[-1])
        if m not in IGNORED and not p.startswith("/static")
    }  # the dashboard's files
    assert routes == operations(doc)


def test_ids_carry_the_models_constraints(doc: dict) -> None:
    id_schema = {
        k: v for k, v in Interaction.model_json_schema()["properties"]["user_id"].items() if k != "title"
    }
    assert id_schema["pattern"] and id_schema["maxLength"]
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for p in op.get("parameters", ()):
                if p["in"] == "path":
                    assert p["schema"] == id_schema, (path, p)
    assert doc["components"]["schemas"]["Interaction"] == Interaction.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )


def test_examples_are_valid_requests(doc: dict) -> None:
    Interaction.model_validate(EXAMPLE_EVENT)
    Video.model_validate(EXAMPLE_VIDEO)
    assert (
        doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["example"]
        == EXAMPLE_EVENT
    )


def test_the_schemas_enumerate_what_the_code_does() -> None:
    assert typing.get_args(schemas.Strategy) == STRATEGIES
    assert tuple(schemas.StateAges.model_fields) == PARTS
    assert tuple(schemas.ByTypeCount.model_fields) == EVENT_TYPES
    assert tuple(schemas.ByTypeSeries.model_fields) == EVENT_TYPES


def test_query_parameters_are_declared_with_their_bounds(doc: dict) -> None:
    get = doc["paths"]["/recommendations/{user_id}"]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert params["k"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 20}
    assert params["strategy"]["schema"]["enum"] == list(STRATEGIES)
    assert set(doc["paths"]["/health"]["get"]["responses"]) == {"200", "503"}
    assert {"400", "413", "415", "422", "429"} <= set(doc["paths"]["/events"]["post"]["responses"])


def test_keys_in_the_settings_show_as_security(doc: dict) -> None:
    assert not any("security" in op for ops in doc["paths"].values() for op in ops.values())  # none set: open
    locked = openapi_document(Settings(write_api_key="w", read_api_key="r", public_reads=False))
    for path, ops in locked["paths"].items():
        for op in ops.values():
            secured = path not in ("/health", "/metrics", "/openapi.json", "/")
            assert ("security" in op) == secured, path
            assert ({"401", "403"} <= set(op["responses"])) == secured, path
    open_reads = openapi_document(Settings(write_api_key="w", read_api_key="r"))["paths"]
    assert (
        "security" in open_reads["/events"]["post"]
        and "security" in open_reads["/api/users/{user_id}/history"]["get"]
    )
    assert "security" not in open_reads["/trending"]["get"]


def test_the_document_is_built_once_and_served_as_is() -> None:
    settings = Settings()
    assert openapi_document(settings) is openapi_document(Settings())
    assert orjson.loads(openapi_json(settings)) == openapi_document(settings)
