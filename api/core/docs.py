"""The OpenAPI document's shared schemas and the documentation pages (Swagger UI, ReDoc),
served with their files from the app itself so they work offline."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.core.problems import ProblemDetails

__all__ = ["DOCS_ASSETS", "install_docs", "install_openapi"]

#: where the app serves Swagger UI's and ReDoc's files (from the fastapi-offline package)
DOCS_ASSETS = "/docs-assets"


def docs_assets_dir() -> str:
    """The folder of Swagger UI's and ReDoc's files in the installed ``fastapi-offline``
    (``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``, ``favicon.png``)."""
    from pathlib import Path

    import fastapi_offline

    return str(Path(fastapi_offline.__file__).parent / "static")


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their files served by the app itself, so
    they work on a machine without internet access."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    openapi_url = str(app.openapi_url)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=None,  # no OAuth2: API keys only
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def _components(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model``'s JSON schema (a pydantic model or ``TypeAdapter``) with its references
    pointing into the document's components, and the definitions it refers to."""
    from pydantic import TypeAdapter

    template = "#/components/schemas/{model}"
    if isinstance(model, TypeAdapter):
        schema = model.json_schema(ref_template=template)
    else:
        schema = model.model_json_schema(ref_template=template)
    defs = schema.pop("$defs", {})
    return schema, defs


def _no_null_defaults(schema: Any) -> Any:
    """Drop ``"default": null`` from request schemas: an optional field is left out to take
    its default; an explicit null is refused (``null_value``)."""
    if isinstance(schema, dict):
        return {
            k: _no_null_defaults(v)
            for k, v in schema.items()
            if not (k == "default" and v is None)
        }
    if isinstance(schema, list):
        return [_no_null_defaults(v) for v in schema]
    return schema


def _declare_security(schema: dict[str, Any]) -> None:
    """Both ways of sending a key on every route that needs one (``api.core.routing.ROUTES``):
    declared here, not by security dependencies that would run on every request."""
    from api.core.auth import SECURITY, SECURITY_SCHEMES
    from api.core.routing import ROUTES

    schema.setdefault("components", {})["securitySchemes"] = dict(SECURITY_SCHEMES)
    for method, path, _ in ROUTES:
        operation = schema["paths"].get(path, {}).get(method.lower())
        if operation is not None:
            operation["security"] = list(SECURITY)


def install_openapi(app: FastAPI) -> None:
    """Adds to the document's schemas ``ProblemDetails`` (and ``ProblemError``), which the
    routes' problem responses refer to (``api.core.routing.problem_responses``), and the
    request bodies the routes read raw (``api.core.bodies.json_body_doc``)."""
    from api.core.bodies import REQUEST_BODIES
    from api.core.examples import restore_examples

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            added: dict[str, Any] = {}
            problem, defs = _components(ProblemDetails)
            added.update(defs)
            added["ProblemDetails"] = problem
            for name, model in REQUEST_BODIES.items():
                body, defs = _components(model)
                added.update({k: _no_null_defaults(v) for k, v in defs.items()})
                added[name] = _no_null_defaults(body)
            for name, value in added.items():
                if name in schemas and schemas[name] != value:
                    raise RuntimeError(f"two different OpenAPI schemas are named {name!r}")
                schemas[name] = value
            restore_examples(schema["paths"])
            _declare_security(schema)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
