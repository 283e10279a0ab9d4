"""The opinions HTTP API on Ray Serve: an ingress with typed schemas and a batched model deployment.

    demoscope serve adapters.subpop=runs/train/adapter   # keeps Ray on loopback by itself
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=token serve run serve/config.yaml
    curl -s 127.0.0.1:8000/v1/opinions -H 'content-type: application/json' -d @request.json

``OpinionModel`` holds one base model and any number of LoRA adapters and
scores prompts with the option scorer (Transformers on CPU, vLLM on GPU);
requests for the same replica are grouped by ``@serve.batch``. ``Ingress``
validates requests (4xx JSON errors that say what is wrong; bad input never
reaches the model), renders SubPOP prompts, fans items out to the model
deployment and adds Wasserstein distances when human distributions are sent.

Hostile input is refused in this order, cheapest first and before any await on
the model: ``Guard`` (an ASGI middleware) checks the bearer token, the content
type and the body size before FastAPI reads or parses the body; the pydantic
schemas then refuse non-Unicode text and non-finite numbers; the ingress checks
the server's limits. When no model replica answers, requests get 503 with
``Retry-After`` instead of waiting, and ``/healthz`` says so too.
"""


import asyncio
import html
import math
import os
import time
from collections import defaultdict
from functools import cache
from importlib.resources import files
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from demoscope.models.names import choose_backend
from demoscope.serve.config import ServeConfig
from demoscope.serve.guard import TOKEN_ENV, ApiError, Guard
from demoscope.serve.schemas import (
    ErrorResponse,
    Generated,
    GenerateRequest,
    GenerateResponse,
    Group,
    ModelInfo,
    OpinionItem,
    OpinionResult,
    OpinionsRequest,
    OpinionsResponse,
    Question,
    QuestionsResponse,
    SubpopulationsResponse,
)

api = FastAPI(
    title="Demoscope opinions API",
    description="Predict how subpopulations answer survey questions: option distributions from a language model "
                "(and LoRA adapters tuned on survey data), with Wasserstein distances to human answers.",
    version="1",
    # What any route may answer; routes add their own (400, 404, 503) below.
    responses={400: {"model": ErrorResponse, "description": "the body is not UTF-8 JSON"},
               401: {"model": ErrorResponse, "description": "missing or wrong bearer token (when the server has one)"},
               413: {"model": ErrorResponse, "description": "body, item count or prompt over the server's limits"},
               415: {"model": ErrorResponse, "description": "body is not application/json"},
               422: {"model": ErrorResponse, "description": "body does not match the schema"}},
    docs_url=None,  # FastAPI's own /docs and /redoc load their scripts from a CDN: blank offline
    redoc_url=None,
)
# Swagger UI 5 (it renders OpenAPI 3.1), shipped as files by the fastapi-offline package.
DOCS_ASSETS = "/docs-assets"
api.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")


@api.get("/docs", include_in_schema=False)
async def _docs(request: Request) -> HTMLResponse:
    """Swagger UI with every asset served by this app, so the page works without internet."""
    root = request.scope.get("root_path", "").rstrip("/")  # the app's route prefix, when not "/"
    return get_swagger_ui_html(openapi_url=f"{root}{api.openapi_url}", title=f"{api.title} - docs",
                               swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png")


# The opinion explorer: one HTML page, its stylesheet, script and example questionnaire, shipped as package data.
EXPLORER = files("demoscope.serve") / "static"
EXPLORER_FILES = {"explorer.css": "text/css; charset=utf-8", "explorer.js": "text/javascript; charset=utf-8",
                  "example.csv": "text/csv; charset=utf-8"}
# The page and its files hold no data, so they need no token: the page asks for one when the API answers 401.
# ("" is the page under a route prefix without its trailing slash.)
Guard.open_paths = ("/healthz", "/", "", *(f"/explorer/{name}" for name in EXPLORER_FILES))
CODEBOOK = "opinionqa"  # the shipped codebook the explorer offers questions from


@api.get("/", include_in_schema=False)
async def _explorer(request: Request) -> HTMLResponse:
    """The opinion explorer page; its links carry the app's route prefix, so it works under any prefix."""
    root = request.scope.get("root_path", "").rstrip("/")
    page = (EXPLORER / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page.replace("__ROOT__", html.escape(root, quote=True)), headers={"Cache-Control": "no-cache"})


@api.get("/explorer/{name}", include_in_schema=False)
async def _explorer_file(name: str) -> Response:
    """The explorer's stylesheet, script and example CSV (a fixed list: no path ever reaches the file system)."""
    if name not in EXPLORER_FILES:
        raise ApiError(404, "not found", f"no explorer file {name!r}")
    return Response((EXPLORER / name).read_bytes(), media_type=EXPLORER_FILES[name],
                    headers={"Cache-Control": "no-cache"})


@cache
def _shipped_questions() -> tuple[Question, ...]:
    """The codebook's questions as items: ordinal padded with -1 for options past the scale (refusal last)."""
    from demoscope.surveys.metadata import load_codebook

    found = []
    for key, entry in load_codebook(CODEBOOK).items():
        if not entry.options or len(entry.options) < 2:
            continue
        options = list(entry.options)
        scale = list(entry.ordinal or range(1, len(options) + 1))[:len(options)]
        found.append(Question(key=key, question=entry.question, options=options,
                              ordinal=[float(x) for x in scale] + [-1.0] * (len(options) - len(scale))))
    return tuple(found)


@api.get("/v1/questions", response_model=QuestionsResponse)
async def questions(q: Annotated[str, Query(max_length=200, description="words that must all appear in the "
                                            "question or its key (case-insensitive)")] = "",
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> QuestionsResponse:
    """The shipped OpinionQA codebook's questions, with options and ordinal positions, filtered by ``q``."""
    words = q.lower().split()
    matching = [x for x in _shipped_questions() if all(w in f"{x.key} {x.question}".lower() for w in words)]
    return QuestionsResponse(codebook=CODEBOOK, total=len(matching), questions=matching[:limit])


@api.get("/v1/subpopulations", response_model=SubpopulationsResponse)
async def subpopulations(which: Annotated[Literal["22", "61"], Query(alias="set", description="SubPOP's 22 groups "
                                                                     "or all 61")] = "22") -> SubpopulationsResponse:
    """SubPOP's subpopulations: the attribute and group to put in an item's ``subpopulation``."""
    from demoscope.surveys.metadata import load_subpopulations

    return SubpopulationsResponse(set=which, subpopulations=[Group(attribute=s.attribute, group=s.group)
                                                             for s in load_subpopulations(which)])


@api.exception_handler(ApiError)
async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


RETRY_AFTER_S = 5  # model replicas restart in seconds (the tiny model) to a minute (a large one)
UNAVAILABLE = {503: {"model": ErrorResponse, "description": "no model replica can take the request now, or too many "
                                                             "are queued; see the Retry-After header"}}


api.add_middleware(Guard)


@api.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own errors (404, 405, 400 for an undecodable body) in the documented ``ErrorResponse`` shape."""
    return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail).lower(), "detail": exc.detail},
                        headers=exc.headers)


@api.exception_handler(RequestValidationError)
async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"error": "invalid request", "detail": detail})


@serve.deployment(ray_actor_options={"num_cpus": 1})
class OpinionModel:
    """A base model plus LoRA adapters; ``score`` is batched across concurrent requests."""

    def __init__(self, settings: dict):
        config = ServeConfig.model_validate(settings)
        from demoscope.models.names import resolve_model
        from demoscope.models.scoring import scorers_by_adapter

        # {None: the base model, name: that LoRA adapter}, all on one engine (vLLM on GPU, else Transformers).
        self.scorers = scorers_by_adapter(resolve_model(config.model), config.adapters,
                                          choose_backend(config.backend, config.use_gpu), batch_size=16,
                                          letter_logprobs=config.letter_logprobs)
        self.score.set_max_batch_size(config.max_batch_size if config.batching else 1)
        self.score.set_batch_wait_timeout_s(config.batch_wait_timeout_s if config.batching else 0.0)

    async def ping(self) -> bool:
        """Answered by a live replica at once: the ingress's health probe."""
        return True

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def score(self, requests: list[tuple[str, int, str | None]]) -> list[tuple[list[float], float]]:
        """Score (prompt, n_options, adapter) requests; one scorer call per adapter in the batch.

        Serve runs one batch at a time per replica, so adapters never switch under a running pass.
        """
        by_adapter: dict[str | None, list[int]] = defaultdict(list)
        for index, (_, _, adapter) in enumerate(requests):
            by_adapter[adapter].append(index)
        results: list = [None] * len(requests)
        for adapter, indices in by_adapter.items():
            prompts = [requests[i][0] for i in indices]
            counts = [requests[i][1] for i in indices]
            # In a thread, so the event loop keeps queueing the next batch meanwhile.
            dists, mass = await asyncio.to_thread(self.scorers[adapter].score_with_mass, prompts, counts)
            for i, dist, m in zip(indices, dists, mass):
                results[i] = ([float(x) for x in dist], float(m))
        return results


@serve.deployment(ray_actor_options={"num_cpus": 1})
class GenerationModel:
    """The large model (vLLM on GPU, else Transformers) and the small guide pair, for ``/v1/generate``."""

    def __init__(self, settings: dict):
        from demoscope.decoding import load_models

        config = ServeConfig.model_validate(settings)
        g = config.generation
        self.large, self.guide = load_models(g.model or config.model, g.tuned, g.tuned_adapter, g.untuned,
                                             g.small_template, choose_backend(config.backend, config.use_gpu))
        self.template = g.large_template

    async def generate(self, prompts: list[str], method: str, params: dict) -> list[dict]:
        from demoscope.decoding import SamplingParams, generate

        def work():
            found = generate(method, prompts, self.large, self.guide, SamplingParams(**params), self.template)
            return [{"prompt": g.prompt, "text": g.text, "guidance": g.guidance, "finish_reason": g.finish_reason,
                     "tokens": len(g.token_ids)} for g in found]

        return await asyncio.to_thread(work)


def _distance(item: OpinionItem, dist: list[float]) -> float | None:
    if item.human is None:
        return None
    from demoscope.metrics import ordinal_wasserstein

    ordinal = item.ordinal or [float(i + 1) for i in range(len(item.options))]
    total = sum(item.human)
    value = ordinal_wasserstein([h / total for h in item.human], dist, ordinal)
    return None if math.isnan(value) else value


# Defined before the deployments: a helper defined after them was not found in the replicas.
@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Ingress:
    """Validation, prompt rendering, auth and fan-out; the model work happens in ``OpinionModel``."""

    def __init__(self, model, settings: dict, token: str | None, generator=None):
        from transformers import AutoTokenizer

        from demoscope.models.names import resolve_model

        self.model, self.generator = model, generator
        self.config = ServeConfig.model_validate(settings)
        Guard.token, Guard.max_body_bytes = token, self.config.max_body_bytes
        self.model_ok_at = -math.inf  # when the model deployment last answered (monotonic seconds)
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.config.model))
        generation = self.config.generation
        self.large_tokenizer = (AutoTokenizer.from_pretrained(resolve_model(generation.model))
                                if generation and generation.model else self.tokenizer)

    async def _model_answers(self) -> bool:
        """Whether a model replica answered lately or answers a ping within ``health_timeout_s``.

        Under load, finished requests keep ``model_ok_at`` fresh, so no ping queues behind them.
        """
        if time.monotonic() - self.model_ok_at < self.config.health_timeout_s:
            return True
        try:
            await asyncio.wait_for(self.model.ping.remote(), timeout=self.config.health_timeout_s)
        except Exception:  # dead replica, none running, or timed out: all mean "not now"
            return False
        self.model_ok_at = time.monotonic()
        return True

    async def _await_model(self, calls: list):
        """Await model calls; 503 with Retry-After when no replica can take them, instead of waiting.

        Serve queues requests while a deployment has no running replica; a request here waits only
        as long as the model keeps answering pings, and overload (``max_queued_requests``) is shed.
        """
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        work = asyncio.ensure_future(asyncio.gather(*calls))
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=self.config.health_timeout_s)
                if done:
                    results = work.result()
                    self.model_ok_at = time.monotonic()
                    return results
                if not await self._model_answers():
                    raise ApiError(503, "model unavailable", "no model replica is running; retry later",
                                   {"Retry-After": str(RETRY_AFTER_S)})
        except BackPressureError:
            raise ApiError(503, "overloaded", "too many requests are queued for the model; retry later",
                           {"Retry-After": "1"}) from None
        except (RayActorError, DeploymentUnavailableError):
            raise ApiError(503, "model unavailable", "the model replica failed; retry later",
                           {"Retry-After": str(RETRY_AFTER_S)}) from None
        finally:
            work.cancel()  # a no-op once done; else the queued calls are withdrawn

    @api.get("/healthz", responses=UNAVAILABLE)
    async def healthz(self) -> dict:
        """200 while a model replica answers; 503 (with Retry-After) when none does. No token needed."""
        if not await self._model_answers():
            raise ApiError(503, "model unavailable", "no model replica answers", {"Retry-After": str(RETRY_AFTER_S)})
        return {"status": "ok"}

    @api.get("/v1/models", response_model=ModelInfo)
    async def models(self) -> ModelInfo:
        c = self.config
        return ModelInfo(model=c.model, adapters=sorted(c.adapters), default_adapter=c.default_adapter,
                         backend=choose_backend(c.backend, c.use_gpu), max_items=c.max_items, max_options=c.max_options,
                         max_prompt_tokens=c.max_prompt_tokens)

    @api.post("/v1/opinions", response_model=OpinionsResponse, responses={
        400: {"model": ErrorResponse, "description": "too many options, or an unknown subpopulation"},
        404: {"model": ErrorResponse, "description": "unknown adapter"}, **UNAVAILABLE})
    async def opinions(self, body: OpinionsRequest) -> OpinionsResponse:
        """Option distributions for a batch of items; with `human`, the Wasserstein distance too."""
        c = self.config
        if len(body.items) > c.max_items:
            raise ApiError(413, "too many items",
                           f"{len(body.items)} items; this server takes at most {c.max_items} per request")
        prepared = [self._prepare(i, item) for i, item in enumerate(body.items)]
        # Off the event loop: a long prompt must not stall other requests (or /healthz) while it is counted.
        counts = await asyncio.to_thread(
            lambda: [len(ids) for ids in self.tokenizer([p for p, _ in prepared])["input_ids"]])
        for i, tokens in enumerate(counts):
            if tokens > c.max_prompt_tokens:
                raise ApiError(413, "prompt too long",
                               f"items[{i}] renders to {tokens} tokens; at most {c.max_prompt_tokens}")
        scored = await self._await_model([self.model.score.remote((p, len(item.options), a))
                                          for (p, a), item in zip(prepared, body.items)])
        return OpinionsResponse(results=[
            OpinionResult(distribution=dist, option_mass=mass, model=c.model, adapter=adapter,
                          wasserstein=_distance(item, dist))
            for ((dist, mass), (_, adapter), item) in zip(scored, prepared, body.items)
        ])

    @api.post("/v1/generate", response_model=GenerateResponse, responses={
        400: {"model": ErrorResponse, "description": "unknown method, no guide pair, too many samples or tokens"},
        404: {"model": ErrorResponse, "description": "generation is not enabled on this server"}, **UNAVAILABLE})
    async def generate(self, body: GenerateRequest) -> GenerateResponse:
        """Continue prompts with base sampling, best-of-N, chunk-level beam search or EFT (weak-to-strong)."""
        from demoscope.decoding import DecodingMethod
        from demoscope.errors import ConfigError

        g = self.config.generation
        if self.generator is None or g is None:
            raise ApiError(404, "generation not enabled", "start the server with generation.tuned=... (see /docs)")
        try:
            method = DecodingMethod.parse(body.method)
        except ConfigError as exc:
            raise ApiError(400, "unknown method", str(exc)) from None
        if method.name != "base" and g.tuned is None:
            raise ApiError(400, "no guide", f"{method.label} needs the small tuned/untuned pair; this server has none")
        samples = {"bon": method.n, "cbs": method.w * method.k}.get(method.name, 1)
        if samples > g.max_samples:
            raise ApiError(400, "too many samples",
                           f"{method.label} samples {samples} continuations; at most {g.max_samples}")
        if len(body.prompts) > g.max_prompts:
            raise ApiError(413, "too many prompts", f"{len(body.prompts)} prompts; at most {g.max_prompts} per request")
        if body.max_new_tokens > g.max_new_tokens:
            raise ApiError(400, "max_new_tokens too large", f"{body.max_new_tokens}; at most {g.max_new_tokens}")
        texts = [g.large_template.format(raw_prompt=prompt) for prompt in body.prompts]
        counts = await asyncio.to_thread(lambda: [len(ids) for ids in self.large_tokenizer(texts)["input_ids"]])
        for i, tokens in enumerate(counts):
            if tokens + body.max_new_tokens > self.config.max_prompt_tokens:
                raise ApiError(413, "prompt too long", f"prompts[{i}] is {tokens} tokens + {body.max_new_tokens} new; "
                                                       f"at most {self.config.max_prompt_tokens}")
        params = body.model_dump(include={"temperature", "top_k", "top_p", "max_new_tokens", "seed"})
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        try:
            results = await self.generator.generate.remote(body.prompts, body.method, params)
        except (BackPressureError, RayActorError, DeploymentUnavailableError):
            raise ApiError(503, "generator unavailable", "the generation replica is busy or restarting; retry later",
                           {"Retry-After": str(RETRY_AFTER_S)}) from None
        return GenerateResponse(method=method.label, model=g.model or self.config.model,
                                results=[Generated(**r) for r in results])

    def _prepare(self, index: int, item: OpinionItem) -> tuple[str, str | None]:
        from demoscope.errors import SpecError
        from demoscope.surveys.item_prompts import item_prompt

        c = self.config
        where = f"items[{index}]"
        if len(item.options) > c.max_options:
            raise ApiError(400, "too many options", f"{where} has {len(item.options)} options; at most {c.max_options}")
        adapter = item.adapter if item.adapter is not None else c.default_adapter
        if adapter is not None and adapter not in c.adapters:
            raise ApiError(404, "unknown adapter",
                           f"{where}: {adapter!r}; this server has {sorted(c.adapters) or 'none'}")
        sub = item.subpopulation
        try:
            prompt = item_prompt(item.question, item.options, sub.attribute if sub else None,
                                 sub.group if sub else None, sub.steering if sub else "QA", item.steering_text)
        except SpecError as exc:
            raise ApiError(400, "unknown subpopulation", f"{where}: {exc}") from None
        return prompt, adapter


def build_app(args: dict) -> serve.Application:
    """Serve application builder (``import_path: demoscope.serve.app:build_app``); ``args`` is a ServeConfig."""
    config = ServeConfig.model_validate(args or {})
    settings = config.model_dump(mode="json")
    model = OpinionModel.options(
        ray_actor_options={"num_cpus": config.replica_cpus, "num_gpus": 1 if config.use_gpu else 0},
        autoscaling_config={"min_replicas": config.min_replicas, "max_replicas": config.max_replicas,
                            "target_ongoing_requests": config.target_ongoing_requests},
        max_ongoing_requests=max(4 * config.max_batch_size, config.target_ongoing_requests * 2),
        # Shed overload: past this many prompts waiting in the ingress's router, calls raise
        # BackPressureError at once (the ingress answers 503) instead of queueing without bound.
        max_queued_requests=config.max_queued_requests,
    ).bind(settings)
    # The ingress only validates and awaits: let it hold many requests, or the proxy queues
    # and backs off at Serve's default of 5 ongoing requests per replica.
    # Past max_queued_requests waiting at the proxy, Serve itself answers 503.
    ingress = Ingress.options(max_ongoing_requests=max(256, 4 * config.max_items),
                              max_queued_requests=config.max_queued_requests)
    generator = None
    if config.generation is not None:
        generator = GenerationModel.options(
            ray_actor_options={"num_cpus": config.replica_cpus, "num_gpus": 1 if config.use_gpu else 0},
            max_ongoing_requests=8,
            max_queued_requests=32,
        ).bind(settings)
    return ingress.bind(model, settings, os.environ.get(TOKEN_ENV) or None, generator)
