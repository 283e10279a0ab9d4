"""The opinion explorer's server side without Ray: the page and its files, the data routes, the token rules.

The page and data routes are plain FastAPI routes on ``api``, so a TestClient drives them in-process;
the browser test (test_explorer_browser.py) runs the page against a real Serve deployment.
"""

import re
from importlib.resources import files

import pytest
from fastapi.testclient import TestClient

from demoscope.serve.app import EXPLORER_FILES, api
from demoscope.serve.guard import Guard
from demoscope.surveys.metadata import load_codebook, load_subpopulations

STATIC = files("demoscope.serve") / "static"


@pytest.fixture
def client():
    return TestClient(api)


@pytest.fixture
def secured(client):
    """The same app with a bearer token set, as the ingress replica sets it from DEMOSCOPE_API_TOKEN."""
    before = Guard.token
    Guard.token = "s3cret"
    yield client
    Guard.token = before


def test_the_page_has_labelled_controls_and_loads_only_its_own_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    for control in ("question", "options", "search", "shipped", "steering", "human", "qn-file", "token"):
        assert control in ids and f'for="{control}"' in text, control  # every input has its <label>
    for error in ("question-error", "options-error", "groups-error", "adapters-error", "human-error", "qn-error"):
        assert re.search(rf'id="{error}"[^>]*role="alert"', text), error
    assert 'name="viewport"' in text and 'lang="en"' in text
    refs = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert "/explorer/explorer.js" in refs and "/explorer/explorer.css" in refs
    assert all(ref.startswith(("/explorer/", "#")) for ref in refs), refs  # nothing from another host: works offline


def test_static_files_have_their_content_types_and_no_external_urls(client):
    for name, media in EXPLORER_FILES.items():
        response = client.get(f"/explorer/{name}")
        assert response.status_code == 200 and response.headers["content-type"] == media, name
    for path in STATIC.iterdir():
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text(encoding="utf-8"), re.I), path
    assert client.get("/explorer/index.html").status_code == 404  # only the listed files
    assert client.get("/explorer/..%2Fapp.py").status_code == 404


def test_the_page_carries_the_route_prefix():
    text = TestClient(api, root_path="/demo").get("/demo/").text
    assert 'href="/demo/explorer/explorer.css"' in text and 'data-root="/demo"' in text


def test_questions_are_the_shipped_codebook_with_a_filter(client):
    codebook = load_codebook("opinionqa")
    everything = client.get("/v1/questions", params={"limit": 1000}).json()
    assert everything["total"] == len(everything["questions"]) == len(codebook)
    first = everything["questions"][0]
    entry = codebook[first["key"]]
    assert first["question"] == entry.question and first["options"] == list(entry.options)
    assert len(first["ordinal"]) == len(first["options"]) and first["ordinal"][-1] == -1  # the refusal: off the scale
    climate = client.get("/v1/questions", params={"q": "CLIMATE change", "limit": 2}).json()
    assert climate["total"] > 2 and len(climate["questions"]) == 2
    assert all("climate change" in q["question"].lower() for q in climate["questions"])
    assert client.get("/v1/questions", params={"limit": 0}).status_code == 422


@pytest.mark.parametrize("which", ["22", "61"])
def test_subpopulations_are_subpops_sets(client, which):
    answer = client.get("/v1/subpopulations", params={"set": which}).json()
    assert answer["set"] == which
    assert [(g["attribute"], g["group"]) for g in answer["subpopulations"]] == [
        (s.attribute, s.group) for s in load_subpopulations(which)]


def test_a_wrong_set_is_a_readable_422(client):
    response = client.get("/v1/subpopulations", params={"set": "7"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "query.set"


def test_the_page_is_public_and_the_api_needs_the_token(secured):
    assert secured.get("/").status_code == 200
    for name in EXPLORER_FILES:
        assert secured.get(f"/explorer/{name}").status_code == 200
    for path in ("/v1/questions", "/v1/subpopulations", "/openapi.json", "/explorer/unknown.js"):
        response = secured.get(path)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized", path
    assert secured.get("/v1/questions", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_the_routes_are_in_the_schema_and_the_page_is_not(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/questions", "/v1/subpopulations"} <= set(paths)
    assert "/" not in paths and not any(p.startswith("/explorer") for p in paths)
