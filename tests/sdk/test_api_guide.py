"""The Gemini image guide's Python examples (../shared/seeds, "API Endpoints", "Error
Handling", "Examples") against `imagegen serve`, adapted only in host and token.

`imagegen serve` runs the API, a worker over the in-memory queue and the built-in
emulator in one process; the tenant test runs it with two configured projects against
an `imagegen emulator` of its own.
"""

import base64
import os
import re
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("IMAGEGEN_BIN", str(ROOT / "target" / "debug" / "imagegen"))
EXAMPLES = ROOT / "examples"


def png_size(data):
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    return struct.unpack(">II", data[16:24])


def start(args, env=None, cwd=None):
    proc = subprocess.Popen(
        [BINARY, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )
    line = proc.stdout.readline()
    found = re.search(r"http://[0-9.:]+", line)
    assert found, f"no URL in {line!r}"
    return proc, found.group(0)


def stop(*procs):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=15)


def fleet(tmp):
    """`imagegen api` + 2 `imagegen worker`s on Redis ($REDIS_URL), an emulator."""
    emulator, emulator_url = start(["emulator", "--listen", "127.0.0.1:0"])
    config = tmp / "imagegen.toml"
    config.write_text(
        f'[redis]\nkey_prefix = "api-{os.getpid()}-{time.time_ns()}"\n'
        f'[output]\nurl = "file://{tmp}/out"\n'
        f'[projects.guide]\nbackend = "gemini-api"\nendpoint = "{emulator_url}"\n'
        'credentials = "env:KEY"\napi_tokens = "env:GUIDE_TOKEN"\n'
    )
    env = {"KEY": "k", "GUIDE_TOKEN": "guide-token"}
    workers = [
        subprocess.Popen([BINARY, "--config", str(config), "worker", "--concurrency", "8"],
                         env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    api, url = start(["--config", str(config), "api", "--listen", "127.0.0.1:0"], env=env)
    return url, [api, *workers, emulator]


@pytest.fixture(scope="module", params=["serve", "fleet"])
def api(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "serve":
        proc, url = start(
            ["serve", "--listen", "127.0.0.1:0"],
            env={"IMAGEGEN_API_TOKEN": "guide-token", "IMAGEGEN__OUTPUT__URL": f"file://{tmp}"},
        )
        procs = [proc]
    else:
        url, procs = fleet(tmp)
    yield url
    stop(*procs)


def headers(token="guide-token"):
    return {"Authorization": f"Bearer {token}"}


def test_first_request_generates_on_the_current_model(api):
    # "First Request", as written: it names the retired preview model.
    url = f"{api}/generate-image"
    data = {
        "prompt": "A professional photograph of a golden retriever sitting in a sunny park, shot with a DSLR camera, shallow depth of field, warm natural lighting",
        "model": "gemini-2.5-flash-image-preview",
    }
    response = requests.post(url, headers={**headers(), "Content-Type": "application/json"}, json=data)
    assert response.status_code == 200, response.text
    result = response.json()
    image_data = base64.b64decode(result["images"][0])
    assert png_size(image_data) == (1024, 1024)
    assert result["model"] == "gemini-3.1-flash-image"
    assert result["model_requested"] == "gemini-2.5-flash-image-preview"
    assert any("gemini-2.5-flash-image-preview" in w for w in result["warnings"])
    assert result["mime_types"] == ["image/png"]
    assert result["request_id"].startswith("req_") and result["job_id"]
    assert response.headers["x-request-id"] == result["request_id"]


def test_generate_takes_the_guide_and_job_fields(api):
    data = {
        "prompt": "A macro photograph of a dewdrop on a rose petal at sunrise",
        "temperature": 0.8,
        "response_modalities": ["Text", "Image"],
        "aspect_ratio": "16:9",
    }
    result = requests.post(f"{api}/generate-image", headers=headers(), json=data).json()
    assert png_size(base64.b64decode(result["images"][0])) == (1376, 768)
    assert result["text"]


def test_edit_image_multipart_as_in_the_guide(api):
    with open(EXAMPLES / "cat.png", "rb") as f:
        files = {"image": f}
        data = {
            "prompt": "Replace the background with a cozy coffee shop interior, keep the cat exactly as it is",
            "preserve_subject": True,
            "edit_strength": 0.7,
        }
        response = requests.post(f"{api}/edit-image", headers=headers(), files=files, data=data)
    assert response.status_code == 200, response.text
    assert png_size(base64.b64decode(response.json()["images"][0]))[0] > 0


def test_edit_image_json_with_base64(api):
    b64 = base64.b64encode((EXAMPLES / "cat.png").read_bytes()).decode()
    response = requests.post(f"{api}/edit-image", headers=headers(), json={"prompt": "add a hat", "image": b64})
    assert response.status_code == 200, response.text
    # A server path is never read.
    response = requests.post(f"{api}/edit-image", headers=headers(), json={"prompt": "x", "image": "/etc/passwd"})
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "image"


def test_compose_images_multipart(api):
    with open(EXAMPLES / "cat.png", "rb") as a, open(EXAMPLES / "sofa.png", "rb") as b:
        files = [("images", a), ("images", b)]
        data = {"prompt": "Place the cat from the first image onto the sofa of the second", "composition_style": "blend"}
        response = requests.post(f"{api}/compose-images", headers=headers(), files=files, data=data)
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1
    with open(EXAMPLES / "cat.png", "rb") as a:
        response = requests.post(f"{api}/compose-images", headers=headers(), files=[("images", a)], data={"prompt": "x"})
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "images"


def test_error_envelope_cases_of_the_guide(api):
    response = requests.post(f"{api}/generate-image", headers=headers(), json={"prompt": "x" * 2150})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["message"] == "The prompt is too long. Maximum length is 2000 characters."
    assert body["details"] == {"field": "prompt", "max_length": 2000, "current_length": 2150}
    assert body["request_id"].startswith("req_")

    response = requests.post(f"{api}/generate-image", headers=headers("wrong"), json={"prompt": "a cat"})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert requests.post(f"{api}/generate-image", json={"prompt": "a cat"}).status_code == 401

    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (21 * 1000 * 1000)
    response = requests.post(f"{api}/edit-image", headers=headers(), files={"image": ("big.png", big, "image/png")}, data={"prompt": "x"})
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"
    assert response.json()["details"]["field"] == "image"

    response = requests.post(f"{api}/generate-image", headers=headers(), json={"prompt": "a cat", "colour": "red"})
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "colour"
    response = requests.post(f"{api}/generate-image", headers=headers(), json={"prompt": "a cat", "aspect_ratio": "7:3"})
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "aspect_ratio"
    response = requests.get(f"{api}/no-such-route", headers=headers())
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_async_request_is_polled_and_its_image_fetched(api):
    response = requests.post(f"{api}/generate-image", headers=headers(), json={"prompt": "a fox", "async": True})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued"
    deadline = time.time() + 30
    while True:
        job = requests.get(f"{api}{accepted['status_url']}", headers=headers()).json()
        if job["status"] == "succeeded" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert job["status"] == "succeeded", job
    image = job["result"]["images"][0]
    assert "path" not in image
    got = requests.get(f"{api}{image['api_url']}", headers=headers())
    assert got.headers["content-type"] == "image/png"
    assert png_size(got.content) == (1024, 1024)


def test_v1_jobs_takes_a_job_line_and_cancels(api):
    response = requests.post(f"{api}/v1/jobs", headers=headers(), json={"prompt": "an owl", "number_of_images": 1})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    cancel = requests.post(f"{api}/v1/jobs/{job_id}/cancel", headers=headers())
    assert cancel.status_code == 200
    assert requests.get(f"{api}/v1/jobs/nope.000000", headers=headers()).status_code == 404


def test_tenants_see_only_their_own_jobs(tmp_path):
    emulator = subprocess.Popen([BINARY, "emulator", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    emulator_url = emulator.stdout.readline().strip().rsplit(" ", 1)[1]
    config = tmp_path / "imagegen.toml"
    projects = "".join(
        f'[projects.{p}]\nbackend = "gemini-api"\nendpoint = "{emulator_url}"\ncredentials = "env:KEY"\napi_tokens = "env:TOKEN_{p.upper()}"\n'
        for p in ("a", "b")
    )
    config.write_text(f'[output]\nurl = "file://{tmp_path}/out"\n{projects}')
    proc, api = start(
        ["--config", str(config), "serve", "--listen", "127.0.0.1:0"],
        env={"KEY": "k", "TOKEN_A": "token-a", "TOKEN_B": "token-b1,token-b2"},
    )
    try:
        made = requests.post(f"{api}/generate-image", headers=headers("token-a"), json={"prompt": "a cat"}).json()
        job = made["job_id"]
        assert requests.get(f"{api}/v1/jobs/{job}", headers=headers("token-a")).status_code == 200
        batch = requests.post(f"{api}/v1/batches", headers=headers("token-a"), data='{"prompt": "x"}\n').json()["batch_id"]
        assert requests.get(f"{api}/v1/batches/{batch}", headers=headers("token-a")).status_code == 200
        paths = [("GET", f"/v1/jobs/{job}"), ("GET", f"/v1/jobs/{job}/images/0"), ("POST", f"/v1/jobs/{job}/cancel"),
                 ("GET", f"/v1/batches/{batch}"), ("GET", f"/v1/batches/{batch}/results"), ("POST", f"/v1/batches/{batch}/cancel")]
        for token in ("token-b1", "token-b2"):
            for method, path in paths:
                r = requests.request(method, f"{api}{path}", headers=headers(token))
                assert r.status_code == 404, (token, path, r.text)
                assert r.json()["error"] == "not_found"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        emulator.terminate()
        emulator.wait(timeout=10)


def wait_batch(api, batch_id, timeout=60):
    deadline = time.time() + timeout
    while True:
        b = requests.get(f"{api}/v1/batches/{batch_id}", headers=headers()).json()
        if b.get("completed_ms") or time.time() > deadline:
            return b
        time.sleep(0.1)


def test_v1_batches_jsonl_results_paged_and_idempotent(api):
    lines = "".join(f'{{"prompt": "prompt {i}"}}\n' for i in range(5))
    h = {**headers(), "Content-Type": "application/x-ndjson", "Idempotency-Key": f"k-{time.time_ns()}"}
    made = requests.post(f"{api}/v1/batches", headers=h, data=lines)
    assert made.status_code == 201, made.text
    batch = made.json()
    assert batch["total"] == 5 and batch["enqueued"] == 5 and not batch["existing"]
    again = requests.post(f"{api}/v1/batches", headers=h, data=lines).json()
    assert again["batch_id"] == batch["batch_id"] and again["existing"]
    b = wait_batch(api, batch["batch_id"])
    assert b["counts"].get("succeeded") == 5, b
    assert b["progress"] == 1.0
    page = requests.get(f"{api}/v1/batches/{batch['batch_id']}/results?limit=2", headers=headers()).json()
    assert [j["line"] for j in page["jobs"]] == [1, 2] and page["next_cursor"] == 2
    rest = requests.get(f"{api}/v1/batches/{batch['batch_id']}/results?cursor=4", headers=headers()).json()
    assert [j["line"] for j in rest["jobs"]] == [5] and rest["next_cursor"] is None


def test_v1_batches_refuses_bad_lines_naming_them_and_takes_json_arrays(api):
    lines = '{"prompt": "ok"}\n{"prompt": "bad", "aspect_ratio": "7:3"}\n{"op": "edit", "prompt": "x", "images": ["/etc/hosts"]}\n'
    r = requests.post(f"{api}/v1/batches", headers={**headers(), "Content-Type": "application/x-ndjson"}, data=lines)
    assert r.status_code == 400, r.text
    d = r.json()["details"]
    assert d["invalid"] == 2 and d["valid"] == 1
    assert [(l["line"], l["field"]) for l in d["lines"]] == [(2, "aspect_ratio"), (3, "images[0]")]
    r = requests.post(f"{api}/v1/batches?skip_invalid=true", headers={**headers(), "Content-Type": "application/x-ndjson"}, data=lines)
    assert r.status_code == 201 and r.json()["total"] == 1
    b64 = base64.b64encode((EXAMPLES / "cat.png").read_bytes()).decode()
    arr = [{"prompt": "a"}, {"op": "edit", "prompt": "b", "images": [{"data": b64}]}]
    r = requests.post(f"{api}/v1/batches", headers=headers(), json=arr)
    assert r.status_code == 201, r.text
    b = wait_batch(api, r.json()["batch_id"])
    assert b["counts"].get("succeeded") == 2, b
    cancel = requests.post(f"{api}/v1/batches/{r.json()['batch_id']}/cancel", headers=headers())
    assert cancel.status_code == 200 and cancel.json()["already_finished"] == 2


def test_advanced_inpaint_outpaint_and_style_transfer(api):
    with open(EXAMPLES / "sofa.png", "rb") as f:
        r = requests.post(f"{api}/advanced/inpaint", headers=headers(), files={"image": f},
                          data={"prompt": "A red vintage car", "region_description": "the blue car in the center of the image"})
    assert r.status_code == 200, r.text
    with open(EXAMPLES / "sofa.png", "rb") as f:
        r = requests.post(f"{api}/advanced/outpaint", headers=headers(), files={"image": f},
                          data={"prompt": "Continue the mountain landscape with more peaks and a valley below",
                                "direction": ["top", "right"], "extension_ratio": 0.8})
    assert r.status_code == 200, r.text
    w, h = png_size(base64.b64decode(r.json()["images"][0]))
    sofa_w, sofa_h = png_size((EXAMPLES / "sofa.png").read_bytes())
    assert w > sofa_w and h > sofa_h
    with open(EXAMPLES / "cat.png", "rb") as f:
        r = requests.post(f"{api}/advanced/style-transfer", headers=headers(), files={"image": f},
                          data={"style": "van_gogh", "style_strength": 0.8, "preserve_content": True})
    assert r.status_code == 200, r.text
    with open(EXAMPLES / "cat.png", "rb") as f:
        r = requests.post(f"{api}/advanced/outpaint", headers=headers(), files={"image": f},
                          data={"prompt": "more", "direction": "up"})
    assert r.status_code == 400 and r.json()["details"]["field"] == "direction"


def test_metrics_health_and_readiness(api):
    requests.post(f"{api}/generate-image", headers=headers(), json={"prompt": "counted"})
    assert requests.get(f"{api}/healthz").text == "ok\n"
    assert requests.get(f"{api}/readyz").status_code == 200
    text = requests.get(f"{api}/metrics").text
    assert 'imagegen_api_requests_total{route="/generate-image",status="200"}' in text
    assert 'imagegen_api_request_duration_seconds_bucket{route="/generate-image"' in text
    promtool = os.environ.get("PROMTOOL")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_a_token_over_its_rate_gets_429_with_retry_after(tmp_path):
    proc, api = start(
        ["serve", "--listen", "127.0.0.1:0"],
        env={"IMAGEGEN_API_TOKEN": "guide-token", "IMAGEGEN__OUTPUT__URL": f"file://{tmp_path}",
             "IMAGEGEN__API__REQUESTS_PER_SECOND": "0.5", "IMAGEGEN__API__BURST": "2"},
    )
    try:
        codes = [requests.get(f"{api}/v1/jobs/x.000000", headers=headers()).status_code for _ in range(3)]
        assert codes == [404, 404, 429]
        r = requests.get(f"{api}/v1/jobs/x.000000", headers=headers())
        assert r.status_code == 429 and r.json()["error"] == "rate_limit_exceeded"
        assert int(r.headers["Retry-After"]) >= 1
    finally:
        stop(proc)


@pytest.mark.parametrize("mode", ["serve", "fleet"])
def test_a_sync_request_does_not_wait_behind_the_backlog(mode, tmp_path):
    latency = 0.3
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(f"latency_ms = {int(latency * 1000)}\n")
    emulator, emulator_url = start(["emulator", "--listen", "127.0.0.1:0", "--scenario", str(scenario)])
    config = tmp_path / "imagegen.toml"
    config.write_text(
        f'[redis]\nkey_prefix = "backlog-{os.getpid()}-{time.time_ns()}"\n'
        f'[output]\nurl = "file://{tmp_path}/out"\n'
        f'[projects.a]\nbackend = "gemini-api"\nendpoint = "{emulator_url}"\n'
        'credentials = "env:KEY"\napi_tokens = "env:TOKEN_A"\nconcurrency = 4\n'
    )
    env = {"KEY": "k", "TOKEN_A": "guide-token"}
    procs = [emulator]
    if mode == "fleet":
        procs += [subprocess.Popen([BINARY, "--config", str(config), "worker", "--concurrency", "8"],
                                   env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
    api_proc, api = start(["--config", str(config), "serve" if mode == "serve" else "api", "--listen", "127.0.0.1:0"], env=env)
    procs.insert(0, api_proc)
    try:
        lines = "".join(f'{{"prompt": "backlog {i}"}}\n' for i in range(5000))
        made = requests.post(f"{api}/v1/batches", headers={**headers(), "Content-Type": "application/x-ndjson"}, data=lines)
        assert made.status_code == 201, made.text
        batch = made.json()["batch_id"]
        time.sleep(1.0)  # the lane is busy: 4 in flight, the rest queued
        b = requests.get(f"{api}/v1/batches/{batch}", headers=headers()).json()
        assert b["done"] < 100, b
        took = []
        for _ in range(3):
            t0 = time.monotonic()
            r = requests.post(f"{api}/generate-image", headers=headers(), json={"prompt": "now, please"})
            took.append(time.monotonic() - t0)
            assert r.status_code == 200, r.text
        # At most one slot to wait for, then the call itself.
        assert max(took) < 3 * latency, took
        requests.post(f"{api}/v1/batches/{batch}/cancel", headers=headers())
    finally:
        stop(*procs)


def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path):
    """`schemathesis run /openapi.json`: no server error, every answer within its
    documented status codes, content types, headers and schemas, auth enforced, no
    resource of another request leaking. Binary fields get real PNGs (st_hooks.py).

    Two checks are left out, and why: `negative_data_rejection` and
    `positive_data_acceptance` judge whether the server takes exactly what the schema
    allows. A multipart form has no null (schemathesis sends "null" text for null) and
    its pattern mutations flag strings that match the pattern, so those two report
    requests that are in fact handled as documented; they stay for the next round."""
    proc, api = start(
        ["serve", "--listen", "127.0.0.1:0"],
        env={"IMAGEGEN_API_TOKEN": "guide-token", "IMAGEGEN__OUTPUT__URL": f"file://{tmp_path}"},
    )
    try:
        run = subprocess.run(
            [str(Path(os.sys.executable).parent / "schemathesis"), "run", f"{api}/openapi.json",
             "--checks", "all", "--exclude-checks", "negative_data_rejection,positive_data_acceptance",
             "-H", "Authorization: Bearer guide-token", "-n", "25", "--seed", "1"],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent), "SCHEMATHESIS_HOOKS": "st_hooks"},
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    finally:
        stop(proc)
