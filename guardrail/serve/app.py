"""The ASGI application of ``guardrail serve`` (FastAPI).

==========================================  ==================  ===========================
endpoint                                    scope               what
==========================================  ==================  ===========================
``POST /v1/verify``                         ``verify``          the ``guardrail verify
                                                                --json`` document of a file
``POST /v1/generate``                       ``generate``        a guarded generation: its
                                                                report and its output
``GET /v1/outputs/{report_id}``             ``generate`` or     the output file
                                            ``reports:read``
``GET /v1/reports``, ``/v1/reports/{id}``   ``reports:read``    the record store's reports
C2PA Soft Binding Resolution API            ``fetch:manifests`` see :mod:`.c2pa_api`
``GET /healthz``, ``/readyz``, ``/metrics`` none                liveness, readiness,
                                                                Prometheus metrics
==========================================  ==================  ===========================
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import FastAPI, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import FileResponse, JSONResponse, Response

from .. import _records
from .._types import Modality
from ..config import Config
from ..errors import (
    DependencyError,
    GuardrailError,
    InputError,
    KeyFileError,
    ModelLoadError,
    ReportNotFound,
)
from ..store import ReportStore
from .auth import Authenticator, RateLimiter
from .c2pa_api import router as c2pa_router
from .http import (
    NEEDS_GENERATE,
    NEEDS_OUTPUT,
    NEEDS_REPORTS,
    NEEDS_VERIFY,
    AccessLog,
    json_body,
    read_upload,
)
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .problems import BodyLimit, Problem, install_handlers, problem_responses
from .settings import ServeSettings
from .state import Resources
from .work import InThread, ProcessPool, WorkPool

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("guardrail.serve")

_UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    **{t: {"schema": {"type": "string", "format": "binary"}} for t in (
        "image/png", "image/jpeg", "image/webp", "audio/wav", "audio/flac", "audio/mpeg",
        "text/plain", "application/octet-stream")}}}}


class GenerateRequest(BaseModel):
    """``POST /v1/generate``."""

    modality: Literal["text", "image", "audio"]
    prompt: str = Field(min_length=1, max_length=100_000)
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    #: ``url``: a download address (``GET /v1/outputs/{report_id}``); ``base64``: the bytes
    #: in the answer as well
    output: Literal["url", "base64"] = "url"


def create_app(config: Config | None = None, *, store: ReportStore | None = None,
               generators: Mapping[str, Any] | None = None,
               settings: ServeSettings | None = None) -> FastAPI:
    """The service's application.

    Parameters
    ----------
    config
        The configuration (default: :meth:`Config.load`).
    store
        A record store to use (default: ``config.store_url``, opened at start).
    generators
        Generators by modality to guard instead of the configured models.
    settings
        ``[serve]`` settings (default: from ``config``).
    """
    config = config or Config.load()
    settings = settings or ServeSettings.from_config(config)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store_url = store.url if store is not None else config.store_url
        processes = settings.verify_processes() if _shareable(store_url) else 0
        if settings.verify_processes() and not processes:
            log.warning("verification runs in threads: the pool's processes cannot open an "
                        "in-memory store")
        resources = Resources(config, settings, store=store, generators=generators,
                              local_verify=processes == 0)
        app.state.resources = resources
        app.state.auth = Authenticator(resources.store, settings.anonymous_scopes)
        app.state.supported = resources.supported()
        pool = WorkPool(settings.executor_threads, settings.max_queue,
                        settings.request_timeout_seconds,
                        on_change=lambda a, r: metrics.work_changed(a, r, "threads"))
        app.state.pool = pool
        cpu: InThread | ProcessPool = InThread(pool, resources) if not processes else \
            ProcessPool(processes, settings.max_queue, settings.request_timeout_seconds,
                        (config, settings, store_url), warm=settings.preload_detectors,
                        cores=settings.cores_per_worker(), on_change=lambda a, r: metrics.work_changed(a, r, "processes"))
        app.state.cpu = cpu
        loop = asyncio.get_running_loop()
        preloading = None if resources.preloaded else loop.run_in_executor(
            None, resources.preload)
        starting = asyncio.create_task(cpu.start())  # processes start from this thread
        log.info("guardrail serve worker ready to accept requests")
        try:
            yield
        finally:
            await asyncio.wait([t for t in (preloading, starting) if t is not None],
                               timeout=60)
            # finish the jobs in flight
            await asyncio.gather(loop.run_in_executor(None, pool.shutdown),
                                 loop.run_in_executor(None, cpu.shutdown))
            resources.close()
            log.info("guardrail serve worker stopped")

    app = FastAPI(title="guardrail serve", version=_version(), lifespan=lifespan,
                  description="Verification, C2PA Soft Binding Resolution and guarded "
                              "generation. Errors are RFC 9457 problem details.")
    app.state.config = config
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    install_handlers(app)
    app.include_router(c2pa_router)
    _ops_routes(app)
    _v1_routes(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """The application as each uvicorn worker builds it: the configuration from
    ``GUARDRAIL_CONFIG`` and ``GUARDRAIL_*`` variables (``guardrail serve`` sets them)."""
    import sys

    from .logs import configure_logging

    configure_logging()
    # the event loop competes for the GIL with the pool's threads: a shorter switch
    # interval (default 5 ms) keeps health checks and small requests quick during a verify
    sys.setswitchinterval(0.001)
    return create_app(Config.load())


def _shareable(store_url: str) -> bool:
    """Whether another process can open the store at ``store_url`` (not in memory)."""
    try:
        url = sa.engine.make_url(store_url)
    except Exception:  # noqa: BLE001 - the store itself reports a bad URL
        return False
    if url.get_backend_name() != "sqlite":
        return True
    return url.database not in (None, "", ":memory:") and \
        url.query.get("mode") != "memory"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("guardrail")
    except Exception:  # noqa: BLE001
        return "0"


# -- operations -----------------------------------------------------------------------------
def _ops_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], summary="Liveness: the event loop answers.")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", tags=["operations"],
             summary="Readiness: the record store answers and the preloaded models are loaded.",
             responses={503: {"description": "not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        res: Resources = request.app.state.resources

        def ping() -> None:
            with res.store.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

        try:
            await asyncio.wait_for(asyncio.to_thread(ping), 5)
            store_ok = True
        except Exception:  # noqa: BLE001 - any failure means not ready
            store_ok = False
        pool, cpu = request.app.state.pool, request.app.state.cpu
        ready = store_ok and res.preloaded and cpu.ready
        body = {"status": "ready" if ready else "not ready",
                "checks": {"store": store_ok,
                           "models_loaded": res.preloaded and cpu.ready},
                "loaded": res.loaded(), "queue": {"admitted": pool.admitted + cpu.admitted,
                                                  "capacity": pool.capacity + cpu.capacity}}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response,
             summary="Prometheus metrics of this worker.")
    async def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


# -- /v1 ------------------------------------------------------------------------------------
def _generate_problem(exc: GuardrailError) -> Problem:
    rid = getattr(exc, "report_id", None)
    suffix = f" (report {rid})" if rid else ""
    if isinstance(exc, InputError):
        return Problem(400, "bad-request", f"{exc}{suffix}")
    if isinstance(exc, ModelLoadError | DependencyError | KeyFileError):
        return Problem(503, "unavailable", f"the generator cannot run here{suffix}")
    return Problem(500, "generation-failed", f"the generation failed{suffix}")


def _report_json(report: Any, manifest_id: str | None) -> dict[str, Any]:
    out = _records.split_manifest(report)[0].to_dict()  # the manifest store is served apart
    out["manifest_id"] = manifest_id
    return out


def _v1_routes(app: FastAPI) -> None:
    @app.post("/v1/verify", tags=["verify"], openapi_extra=_UPLOAD_BODY,
              summary="The `guardrail verify --json` document of an uploaded file.",
              responses={200: {"description": "the verify document"},
                         **problem_responses(400, 401, 403, 413, 415, 429, 503)})
    async def verify(request: Request, _who: Any = NEEDS_VERIFY) -> JSONResponse:
        state = request.app.state
        data, name, _mt = await read_upload(request, state.settings.upload_limit(state.config))
        doc = await state.cpu.call("verify", data, name)
        state.metrics.verdicts.labels(str(doc.get("verdict", {}).get("label"))).inc()
        return JSONResponse(doc)

    @app.post("/v1/generate", tags=["generate"],
              summary="A guarded generation: its report and its output.",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": GenerateRequest.model_json_schema()}}}},
              responses={200: {"description": "the report and the output (null when "
                                               "the output was withheld)"},
                         **problem_responses(400, 401, 403, 413, 415, 429, 500, 503)})
    async def generate(request: Request, _who: Any = NEEDS_GENERATE) -> JSONResponse:
        state = request.app.state
        req: GenerateRequest = await json_body(request, GenerateRequest)
        modality = Modality.parse(req.modality)
        try:
            result = await state.pool.run(state.resources.generate, modality, req.prompt,
                                          req.params, req.seed)
        except GuardrailError as exc:
            state.metrics.generations.labels(modality.value, "error").inc()
            raise _generate_problem(exc) from None
        state.metrics.generations.labels(modality.value, result.status).inc()
        output = None
        if result.output is not None and result.released:
            path = Path(result.output)
            output = {"url": f"/v1/outputs/{result.report_id}",
                      "media_type": result.report.media_type, "bytes": path.stat().st_size}
            if req.output == "base64":
                output["base64"] = base64.b64encode(path.read_bytes()).decode("ascii")
        manifests = await state.pool.run(state.resources.store.records,
                                         _records.manifests_of_reports, [result.report_id])
        return JSONResponse({"report": _report_json(result.report,
                                                    manifests.get(result.report_id)),
                             "output": output})

    @app.get("/v1/outputs/{report_id}", tags=["generate"], response_class=Response,
             summary="The output file of a guarded generation made by this service.",
             responses={200: {"description": "the output", "content": {
                 "application/octet-stream": {}}}, **problem_responses(401, 403, 404, 429)})
    async def output(request: Request, report_id: str,
                     _who: Any = NEEDS_OUTPUT) -> Response:
        state = request.app.state
        res: Resources = state.resources
        if not (len(report_id) == 32 and all(c in "0123456789abcdef" for c in report_id)):
            raise Problem(404, "not-found", "no such output")
        try:
            report = await state.pool.run(res.store.get, report_id)
        except ReportNotFound:
            raise Problem(404, "not-found", "no such output") from None
        path = Path(report.output or "")
        root = res.outputs_dir.resolve()
        if not report.output or not path.resolve().is_relative_to(root) or not path.is_file():
            raise Problem(404, "not-found", "no such output")
        return FileResponse(path, media_type=report.media_type or "application/octet-stream")

    @app.get("/v1/reports", tags=["reports"], summary="Reports, newest first.",
             responses=problem_responses(400, 401, 403, 429, 503))
    async def reports(request: Request, limit: int = Query(50, ge=1, le=500),
                      offset: int = Query(0, ge=0, le=10**9),
                      modality: Literal["text", "image", "audio"] | None = None,
                      status: str | None = Query(None, max_length=16),
                      _who: Any = NEEDS_REPORTS) -> JSONResponse:
        state = request.app.state
        store = state.resources.store

        def page() -> list[dict[str, Any]]:
            found = store.list(limit=limit, offset=offset, modality=modality, status=status)
            ids = store.records(_records.manifests_of_reports, [r.report_id for r in found])
            return [_report_json(r, ids.get(r.report_id)) for r in found]

        return JSONResponse({"reports": await state.pool.run(page), "limit": limit,
                             "offset": offset})

    @app.get("/v1/reports/{report_id}", tags=["reports"], summary="One report.",
             responses=problem_responses(401, 403, 404, 429, 503))
    async def report(request: Request, report_id: str,
                     _who: Any = NEEDS_REPORTS) -> JSONResponse:
        state = request.app.state
        store = state.resources.store
        if not 6 <= len(report_id) <= 64:
            raise Problem(404, "not-found", "no such report")

        def one() -> dict[str, Any]:
            rep = store.get(report_id)
            ids = store.records(_records.manifests_of_reports, [rep.report_id])
            return _report_json(rep, ids.get(rep.report_id))

        try:
            return JSONResponse(await state.pool.run(one))
        except ReportNotFound:
            raise Problem(404, "not-found", "no such report") from None

