"""The opinions API on a real local Ray Serve, over HTTP on 127.0.0.1."""

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from demoscope.metrics import ordinal_wasserstein
from demoscope.models import TransformersOptionScorer, load_causal_lm
from demoscope.models.names import resolve_model
from demoscope.serve.config import ServeConfig
from demoscope.surveys.item_prompts import item_prompt

pytestmark = pytest.mark.ray

ITEM = {
    "question": "How much, if at all, do you worry about climate change?",
    "options": ["A great deal", "Some", "Not too much", "Not at all"],
    "subpopulation": {"attribute": "POLPARTY", "group": "Democrat"},
    "human": [0.5, 0.3, 0.1, 0.1],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def adapter_dir(random_adapter):
    return str(random_adapter)


def deploy(port: int, name: str = "demoscope", prefix: str = "/", **settings):
    from ray import serve

    from demoscope.serve.app import build_app

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = ServeConfig(port=port, **settings)
    serve.run(build_app(config.model_dump(mode="json")), name=name, route_prefix=prefix)
    return f"http://127.0.0.1:{port}{prefix.rstrip('/')}"


@pytest.fixture(scope="module")
def server(local_ray, adapter_dir):
    from ray import serve

    # Half a CPU per replica: the opinions and generation replicas and the bearer test's own app share 2 CPUs.
    url = deploy(_free_port(), adapters={"subpop": adapter_dir}, max_items=8, max_prompt_tokens=400, replica_cpus=0.5,
                 max_replicas=1, generation={"tuned": "tiny:llama", "tuned_adapter": adapter_dir, "max_prompts": 2,
                                             "max_new_tokens": 8, "max_samples": 16})
    yield url
    serve.shutdown()


def post(url, body, **kw):
    return requests.post(f"{url}/v1/opinions", json=body, timeout=60, **kw)


def test_health_models_and_openapi(server):
    assert requests.get(f"{server}/healthz", timeout=10).json() == {"status": "ok"}
    info = requests.get(f"{server}/v1/models", timeout=10).json()
    assert info["adapters"] == ["subpop"] and info["max_items"] == 8 and info["backend"] == "transformers"
    spec = requests.get(f"{server}/openapi.json", timeout=10).json()
    assert "/v1/opinions" in spec["paths"] and "OpinionsRequest" in str(spec["components"])


def test_docs_page_loads_every_asset_from_the_server_itself(server):
    import re

    page = requests.get(f"{server}/docs", timeout=30)
    assert page.status_code == 200 and "swagger-ui" in page.text
    urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]|url: ?['"]([^'"]+)['"]""", page.text)
    urls = [a or b for a, b in urls]
    assert len(urls) >= 4  # the script, the stylesheet, the favicon and the OpenAPI document
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls  # no CDN: works offline
    for url in urls:
        assert requests.get(f"{server}{url}", timeout=30).status_code == 200, url
    assert requests.get(f"{server}/redoc", timeout=30).status_code == 404  # ReDoc would need a CDN


def test_distributions_match_the_library_scorer_and_the_metric(server, adapter_dir):
    response = post(server, {"items": [ITEM, {**ITEM, "adapter": "subpop"}]})
    assert response.status_code == 200
    base, tuned = response.json()["results"]
    assert base["adapter"] is None and tuned["adapter"] == "subpop" and base["model"] == "tiny:llama"
    model, tokenizer = load_causal_lm(resolve_model("tiny:llama"), adapters={"subpop": adapter_dir})
    prompt = item_prompt(ITEM["question"], ITEM["options"], "POLPARTY", "Democrat")
    for result, adapter in ((base, None), (tuned, "subpop")):
        expected = TransformersOptionScorer(model, tokenizer, adapter=adapter).score([prompt], [4])[0]
        assert np.allclose(result["distribution"], expected, atol=1e-5)
        assert result["wasserstein"] == pytest.approx(ordinal_wasserstein(ITEM["human"], expected, [1, 2, 3, 4]),
                                                      abs=1e-6)
    assert not np.allclose(base["distribution"], tuned["distribution"])


@pytest.mark.parametrize("body, status, error", [
    ({"items": []}, 422, "invalid request"),
    ({"items": [{**ITEM, "adapter": "nope"}]}, 404, "unknown adapter"),
    ({"items": [{**ITEM, "subpopulation": {"attribute": "POLPARTY", "group": "Martian"}}]}, 400,
     "unknown subpopulation"),
    ({"items": [{**ITEM, "options": [f"o{i}" for i in range(11)], "human": None}]}, 400, "too many options"),
    ({"items": [ITEM] * 9}, 413, "too many items"),
    ({"items": [{**ITEM, "question": "why? " * 500}]}, 413, "prompt too long"),
    ({"items": [{"question": "q"}]}, 422, "invalid request"),
    ({"items": [{**ITEM, "human": [1, 0]}]}, 422, "invalid request"),
    ({"items": [{**ITEM, "steering_text": "I live in Ohio."}]}, 422, "invalid request"),
])
def test_bad_requests_get_a_4xx_json_error_that_says_what(server, body, status, error):
    response = post(server, body)
    assert response.status_code == status
    assert response.json()["error"] == error and response.json()["detail"]


def test_malformed_json_is_a_4xx_and_the_service_survives(server):
    response = requests.post(f"{server}/v1/opinions", data="{not json", headers={"content-type": "application/json"},
                             timeout=10)
    assert response.status_code == 422
    assert post(server, {"items": [ITEM]}).status_code == 200


def test_concurrent_requests_all_succeed_with_the_same_answers(server):
    items = [{**ITEM, "subpopulation": {"attribute": "POLIDEOLOGY", "group": g}}
             for g in ["Liberal", "Moderate", "Conservative", "Very liberal"]]
    alone = [post(server, {"items": [item]}).json()["results"][0]["distribution"] for item in items]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: post(server, {"items": [items[i % 4]]}), range(48)))
    assert all(r.status_code == 200 for r in responses)
    for i, response in enumerate(responses):
        assert np.allclose(response.json()["results"][0]["distribution"], alone[i % 4], atol=1e-5)


def test_bearer_token_protects_everything_but_health(server, monkeypatch):
    from ray import serve

    monkeypatch.setenv("DEMOSCOPE_API_TOKEN", "s3cret")  # read when the application is built
    port = int(server.rsplit(":", 1)[1])
    url = deploy(port, name="secured", prefix="/secured", replica_cpus=0.5, max_replicas=1)
    try:
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
        assert requests.get(f"{url}/v1/models", timeout=10).status_code == 401
        assert post(url, {"items": [ITEM]}).json()["error"] == "unauthorized"
        ok = post(url, {"items": [ITEM]}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    finally:
        serve.delete("secured")


def test_generate_matches_the_library_and_refuses_bad_requests(server, adapter_dir):
    from demoscope.decoding import Guide, SamplingParams, generate

    body = {"prompts": ["The film opens with"], "method": "cbs:2,2,3", "max_new_tokens": 6}
    response = requests.post(f"{server}/v1/generate", json=body, timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["method"] == "cbs-w2k2l3" and answer["model"] == "tiny:llama"
    large = load_causal_lm(resolve_model("tiny:llama"))
    small, tokenizer = load_causal_lm(resolve_model("tiny:llama"), adapters={"tuned": adapter_dir})
    expected = generate("cbs:2,2,3", body["prompts"], large, Guide.from_adapter(small, "tuned", tokenizer),
                        SamplingParams(max_new_tokens=6))[0]
    result = answer["results"][0]
    assert result["text"] == expected.text and result["guidance"] == pytest.approx(expected.guidance, abs=1e-5)
    bad = {
        "unknown method": ({**body, "method": "beam"}, 400),
        "too many samples": ({**body, "method": "bon:64"}, 400),
        "too many prompts": ({**body, "prompts": ["a", "b", "c"]}, 413),
        "max_new_tokens too large": ({**body, "max_new_tokens": 100}, 400),
        "invalid request": ({**body, "prompts": [" "]}, 422),
    }
    for error, (payload, status) in bad.items():
        response = requests.post(f"{server}/v1/generate", json=payload, timeout=60)
        assert response.status_code == status and response.json()["error"] == error, (error, response.text)
    assert "/v1/generate" in requests.get(f"{server}/openapi.json", timeout=10).json()["paths"]
