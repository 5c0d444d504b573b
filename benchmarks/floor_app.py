"""The bare-framework floor of ``benchmarks/http.py``: FastAPI on uvicorn (uvloop, httptools),
one ``POST /v1/decisions`` route that reads the request body and answers a canned decision
(the bytes of the file ``CREDITGATE_FLOOR_DECISION``, compact JSON of a real decision, about
9 KB) with the service's content type and an ``x-request-id`` header, like the service.
No authentication, no validation, no database, no engine: what FastAPI + uvicorn cost per
request on this machine.

Run as ``python -m benchmarks.floor_app PORT`` from the repository root (``-m``, so this
folder, whose ``http.py`` would shadow the standard library, is not put on ``sys.path``).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

CANNED = Path(os.environ["CREDITGATE_FLOOR_DECISION"]).read_bytes()

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/v1/decisions")
async def post_decision(request: Request) -> Response:
    await request.body()
    return Response(
        CANNED, media_type="application/json", headers={"x-request-id": uuid.uuid4().hex}
    )


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
