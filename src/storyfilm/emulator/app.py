"""The ASGI app: the three hosts' routes, the files they hand out, and the emulator's own admin routes.

Admin routes (no auth; loopback only):
    GET  /_emulator/stats    accepted (billable) submissions, by provider and model, the cost, every job
    POST /_emulator/reset    back to the state right after start (jobs, uploads, faults, settings)
    GET  /_emulator/faults   the global faults and how often each may still fire
    POST /_emulator/faults   {"faults": "SPEC"}: replace the global faults
    POST /_emulator/config   {"latency": S, "upload_ttl": S, "apiframe_credits": N | null, "price_factor": F,
                              "host_encoder": true | false, "apiframe_result": "object" | "list" | "string",
                              "drift": {"contrast": 0.06, "saturation": 0.05, "brightness": 0.02, "warmth": 0.03}
                                       | "contrast=0.06,..." | null}:
                             until the next reset
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.requests import Request

from storyfilm.drift import drift_from_mapping, parse_drift
from storyfilm.emulator import apiframe, gateway, spoil, wavespeed
from storyfilm.emulator.common import BadRequest, emulator, fault_header, json_object, retry_headers
from storyfilm.emulator.files import Dropped, quiet_dropped_downloads
from storyfilm.emulator.state import RESULT_SHAPES, Emulator, EmulatorConfig
from storyfilm.errors import DriftSpecError, FaultSpecError


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A new emulator. Raises FaultSpecError for a bad fault spec."""
    emu = Emulator(config or EmulatorConfig())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        quiet_dropped_downloads()
        yield
        emu.close()

    app = FastAPI(title="storyfilm emulator", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emu

    @app.exception_handler(FaultSpecError)
    async def bad_fault(_: Request, exc: FaultSpecError) -> Response:
        return JSONResponse({"error": f"X-Emulator-Fault or prompt tag: {exc}"}, status_code=400)

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    app.add_api_route("/_emulator/health", health, methods=["GET"])
    app.add_api_route("/_emulator/stats", stats, methods=["GET"])
    app.add_api_route("/_emulator/reset", reset, methods=["POST"])
    app.add_api_route("/_emulator/faults", get_faults, methods=["GET"])
    app.add_api_route("/_emulator/faults", set_faults, methods=["POST"])
    app.add_api_route("/_emulator/config", set_config, methods=["POST"])
    app.add_api_route("/files/uploads/{token}/{filename}", get_upload, methods=["GET"])
    app.add_api_route("/files/put/{token}", put_upload, methods=["PUT"])
    app.add_api_route("/files/outputs/{name}", get_output, methods=["GET"])
    for module in (wavespeed, apiframe, gateway):
        app.include_router(module.router)
    return app


# --- admin ---


async def health() -> Response:
    return JSONResponse({"ok": True})


async def stats(request: Request) -> Response:
    emu = emulator(request)
    return JSONResponse({**emu.store.stats(), "apiframe_credits_available": emu.credits_available(),
                         "latency": emu.config.latency, "faults": emu.faults.book.snapshot()})


async def reset(request: Request) -> Response:
    emulator(request).reset()
    return JSONResponse({"ok": True})


async def get_faults(request: Request) -> Response:
    return JSONResponse({"faults": emulator(request).faults.book.snapshot()})


async def set_faults(request: Request) -> Response:
    emu = emulator(request)
    spec = (await json_object(request)).get("faults", "")
    if not isinstance(spec, str):
        return JSONResponse({"error": "faults must be a spec string"}, status_code=400)
    try:
        emu.faults.replace(spec)
    except FaultSpecError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"faults": emu.faults.book.snapshot()})


async def set_config(request: Request) -> Response:
    emu = emulator(request)
    body = await json_object(request)
    changes: dict[str, object] = {}
    for name in ("latency", "upload_ttl", "price_factor"):
        if name in body:
            seconds = body[name]
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                return JSONResponse({"error": f"{name} must be a number of seconds >= 0"}, status_code=400)
            changes[name] = float(seconds)
    if "host_encoder" in body:
        if not isinstance(body["host_encoder"], bool):
            return JSONResponse({"error": "host_encoder must be true or false"}, status_code=400)
        changes["host_encoder"] = body["host_encoder"]
    if "apiframe_result" in body:
        if body["apiframe_result"] not in RESULT_SHAPES:
            return JSONResponse({"error": f"apiframe_result must be one of {', '.join(RESULT_SHAPES)}"},
                                status_code=400)
        changes["apiframe_result"] = body["apiframe_result"]
    if "apiframe_credits" in body:
        balance = body["apiframe_credits"]
        if balance is not None and (not isinstance(balance, int) or isinstance(balance, bool)):
            return JSONResponse({"error": "apiframe_credits must be an integer or null"}, status_code=400)
        changes["apiframe_credits"] = balance
    if "drift" in body:
        value = body["drift"]
        try:
            changes["drift"] = (parse_drift(value) if isinstance(value, str)
                                # ignore: a JSON value; drift_from_mapping checks it (DriftSpecError)
                                else drift_from_mapping(value))  # type: ignore[arg-type]
        except DriftSpecError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
    # ignore: every value in `changes` was checked above against its EmulatorConfig field
    emu.config = replace(emu.config, **changes)  # type: ignore[arg-type]
    return JSONResponse({"latency": emu.config.latency, "upload_ttl": emu.config.upload_ttl,
                         "apiframe_credits": emu.config.apiframe_credits, "price_factor": emu.config.price_factor,
                         "host_encoder": emu.config.host_encoder, "apiframe_result": emu.config.apiframe_result,
                         "drift": emu.config.drift.as_dict()})


# --- files ---


async def get_upload(token: str, filename: str, request: Request) -> Response:
    stored = emulator(request).files.get(token)
    if stored is None or stored.filename != filename:
        return JSONResponse({"error": "file not found or expired"}, status_code=404)
    return FileResponse(stored.path, media_type=stored.content_type)


async def put_upload(token: str, request: Request) -> Response:
    problem = emulator(request).files.fill(token, await request.body())
    if problem is not None:
        return JSONResponse({"error": problem}, status_code=404 if "unknown" in problem else 400)
    return Response(status_code=200)


async def get_output(name: str, request: Request) -> Response:
    emu = emulator(request)
    job_id, _, suffix = name.partition(".")
    job = emu.store.get(job_id)
    if job is None or job.phase().state != "completed" or job.rendered is None:
        return JSONResponse({"error": "output not found"}, status_code=404)
    if suffix == "last.png" and job.rendered.last_frame is not None:
        return FileResponse(job.rendered.last_frame, media_type="image/png")
    if suffix != "mp4":
        return JSONResponse({"error": "output not found"}, status_code=404)
    job.downloads += 1
    fault = emu.faults.request("download", job.provider, fault_header(request), job.faults)
    if fault is not None and fault.drop:
        return Dropped(job.rendered.video.read_bytes(), "video/mp4")
    if fault is not None and fault.answer is not None:
        return spoil.download(fault.answer, job.rendered.video)
    if fault is not None:
        return JSONResponse({"error": "temporarily unavailable"}, status_code=fault.status or 500,
                            headers=retry_headers(fault))
    return FileResponse(job.rendered.video, media_type="video/mp4")
