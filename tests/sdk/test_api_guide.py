"""The Gemini image guide's Python examples (../shared/seeds, "API Endpoints", "Error
Handling", "Examples") against `imagegen serve`, adapted only in host and token.

`imagegen serve` runs the API, a worker over the in-memory queue and the built-in
emulator in one process; the tenant test runs it with two configured projects against
an `imagegen emulator` of its own.
"""

import base64
import json
import os
import queue
import re
import socket
import struct
import subprocess
import threading
import time
import zlib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("IMAGEGEN_BIN", str(ROOT / "target" / "debug" / "imagegen"))
EXAMPLES = ROOT / "examples"
# Where each API under test writes its outputs (by URL).
OUTPUTS = {}


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


# The project's webhook secret (Standard Webhooks), on both set-ups.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fleet(tmp):
    """`imagegen api` + 2 `imagegen worker`s on Redis ($REDIS_URL), an emulator."""
    emulator, emulator_url = start(["emulator", "--listen", "127.0.0.1:0"])
    port = free_port()
    config = tmp / "imagegen.toml"
    config.write_text(
        f'[redis]\nkey_prefix = "api-{os.getpid()}-{time.time_ns()}"\n'
        f'[output]\nurl = "file://{tmp}/out"\n'
        '[webhooks]\nallow_private_networks = true\n'
        f'[api]\npublic_url = "http://127.0.0.1:{port}"\n'
        f'[projects.guide]\nbackend = "gemini-api"\nendpoint = "{emulator_url}"\n'
        'credentials = "env:KEY"\napi_tokens = "env:GUIDE_TOKEN"\nwebhook_secret = "env:WH_SECRET"\n'
    )
    env = {"KEY": "k", "GUIDE_TOKEN": "guide-token", "WH_SECRET": WEBHOOK_SECRET}
    workers = [
        subprocess.Popen([BINARY, "--config", str(config), "worker", "--concurrency", "8"],
                         env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    api, url = start(["--config", str(config), "api", "--listen", f"127.0.0.1:{port}"], env=env)
    return url, [api, *workers, emulator]


@pytest.fixture(scope="module", params=["serve", "fleet"])
def api(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "serve":
        proc, url = start(
            ["serve", "--listen", "127.0.0.1:0"],
            env={"IMAGEGEN_API_TOKEN": "guide-token", "IMAGEGEN__OUTPUT__URL": f"file://{tmp}",
                 "IMAGEGEN_WEBHOOK_SECRET": WEBHOOK_SECRET, "IMAGEGEN__WEBHOOKS__ALLOW_PRIVATE_NETWORKS": "true"},
        )
        procs = [proc]
    else:
        url, procs = fleet(tmp)
    OUTPUTS[url] = tmp
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


def result_json(api, job_id):
    """The `result.json` a job wrote (outputs are on local disk in these tests)."""
    import json
    for path in OUTPUTS[api].rglob("result.json"):
        data = json.loads(path.read_text())
        if data["job_id"] == job_id:
            return data
    raise AssertionError(f"no result.json for {job_id}")


def test_chat_mode_workflow_three_turns_round_trip_thought_signatures(api):
    # "Chat Mode Workflow", as written (the retired preview model included).
    session_response = requests.post(f"{api}/chat/create", headers=headers(), json={
        "model": "gemini-2.5-flash-image-preview",
        "system_prompt": "You are a professional photographer helping to refine and improve images.",
    })
    assert session_response.status_code == 200, session_response.text
    session_id = session_response.json()["session_id"]
    assert session_response.json()["model"] == "gemini-3.1-flash-image"

    first_message = {"message": "Create a professional headshot of a business executive"}
    response1 = requests.post(f"{api}/chat/{session_id}/message", headers=headers(), json=first_message)
    second_message = {"message": "Make the lighting softer and add more warmth to create a more approachable feeling"}
    response2 = requests.post(f"{api}/chat/{session_id}/message", headers=headers(), json=second_message)
    third_message = {"message": "Change the background to a modern office setting with blurred city views"}
    response3 = requests.post(f"{api}/chat/{session_id}/message", headers=headers(), json=third_message)

    answers = [r.json() for r in (response1, response2, response3)]
    for n, (r, a) in enumerate(zip((response1, response2, response3), answers), start=1):
        assert r.status_code == 200, r.text
        assert a["session_id"] == session_id and a["turn"] == n
        assert png_size(base64.b64decode(a["images"][0]))[0] > 0
    # Each turn's answer kept the model's turn with its signatures, images by reference.
    turns = [requests.get(f"{api}/v1/jobs/{a['job_id']}", headers=headers()).json()["result"]["model_turn"] for a in answers]
    signatures = [[p["thoughtSignature"] for p in t["parts"] if "thoughtSignature" in p] for t in turns]
    assert all(signatures), turns
    assert all("fileData" in p and "inlineData" not in p for t in turns for p in t["parts"] if "thoughtSignature" in p and "text" not in p)
    # The third turn sent the whole conversation: both earlier messages and both answers
    # with the signatures Google gave them (Gemini 3 refuses a history without them).
    third = result_json(api, answers[2]["job_id"])
    history = third["request"]["history"]
    assert [c["role"] for c in history] == ["user", "model", "user", "model"]
    assert history[0]["parts"][0]["text"] == first_message["message"]
    assert history[2]["parts"][0]["text"] == second_message["message"]
    for sent, got in ((history[1], signatures[0]), (history[3], signatures[1])):
        assert [p["thoughtSignature"] for p in sent["parts"] if "thoughtSignature" in p] == got
    assert third["request"]["system_instruction"].startswith("You are a professional photographer")
    assert third["request"]["prompt"] == third_message["message"]


def test_story_generation_as_in_the_guide_frames_in_order(api):
    # "Sequential Story Generation", as written but for 4 frames (the guide says 6).
    data = {
        "description": "A step-by-step visual guide for making homemade pizza, from preparing the dough to the final baked result",
        "num_images": 4,
        "content_type": "recipe",
        "style": "clean professional food photography, bright natural lighting, modern kitchen setting",
    }
    response = requests.post(f"{api}/story/generate", headers=headers(), json=data)
    assert response.status_code == 200, response.text
    story = response.json()
    assert story["status"] == "completed", story
    assert [f["index"] for f in story["frames"]] == [1, 2, 3, 4]
    assert all(f["status"] == "succeeded" for f in story["frames"])
    prompts = [f["prompt"] for f in story["frames"]]
    assert len(set(prompts)) == 4 and all(prompts), prompts
    assert len(story["images"]) == 4
    for b64 in story["images"]:
        assert png_size(base64.b64decode(b64))[0] > 0
    # In order: frame k was made from frame k-1 (its input is that image, by hash).
    results = [result_json(api, f["job_id"]) for f in story["frames"]]
    for k in range(1, 4):
        assert results[k]["inputs"][0]["sha256"] == results[k - 1]["images"][0]["sha256"]
    assert story["contact_sheet_url"].endswith("stories/story-1/contact-sheet.png")
    bad = requests.post(f"{api}/story/generate", headers=headers(), json={**data, "num_images": 99})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "num_images", bad.text


def test_story_completed_fires_once_signed_with_the_frames_in_order(api):
    with receiver() as (hook_url, deliveries):
        data = {"description": "A paper boat's trip down a rain gutter", "num_images": 3,
                "chain": "anchor", "webhook_url": hook_url}
        response = requests.post(f"{api}/story/generate", headers=headers(), json=data)
        assert response.status_code == 202, response.text
        hook_headers, body = deliveries.get(timeout=60)
        with pytest.raises(queue.Empty):
            deliveries.get(timeout=2)  # once per story: the frames' ends fire nothing here
    payload = Webhook(WEBHOOK_SECRET).verify(body, hook_headers)
    assert payload["type"] == "story.completed", payload
    story = payload["data"]
    assert story["batch_id"] == response.json()["batch_id"]
    assert story["status"] == "completed", story
    assert [f["index"] for f in story["frames"]] == [1, 2, 3]
    for f in story["frames"]:
        got = requests.get(f["signed_url"])  # no token: the link is the credential
        assert got.status_code == 200 and png_size(got.content)[0] > 0, f
    sheet = requests.get(story["contact_sheet_signed_url"])
    assert sheet.status_code == 200 and png_size(sheet.content)[0] > 0


def test_chat_message_takes_an_image_and_names_bad_fields(api):
    session_id = requests.post(f"{api}/chat/create", headers=headers(), json={}).json()["session_id"]
    image = requests.post(f"{api}/generate-image", headers=headers(), json={"prompt": "a red kite"}).json()["images"][0]
    r = requests.post(f"{api}/chat/{session_id}/message", headers=headers(), json={"message": "Make it blue", "image": image})
    assert r.status_code == 200, r.text
    # The next turn sends that image again, by its stored copy.
    r2 = requests.post(f"{api}/chat/{session_id}/message", headers=headers(), files={"image": ("k.png", base64.b64decode(image), "image/png")}, data={"message": "Now add a second kite"})
    assert r2.status_code == 200, r2.text
    history = result_json(api, r2.json()["job_id"])["request"]["history"]
    assert history[0]["parts"][1]["fileData"]["fileUri"].startswith("file://")
    bad = requests.post(f"{api}/chat/{session_id}/message", headers=headers(), json={"message": "x" * 2150})
    assert bad.status_code == 400
    assert bad.json()["details"] == {"field": "message", "max_length": 2000, "current_length": 2150}
    bad = requests.post(f"{api}/chat/{session_id}/message", headers=headers(), json={"message": "hi", "model": "imagen-4.0-generate-001"})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "model"
    bad = requests.post(f"{api}/chat/create", headers=headers(), json={"model": "imagen-4.0-upscale-preview"})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "model", bad.text
    bad = requests.post(f"{api}/chat/create", headers=headers(), json={"system": "x"})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "system"
    missing = requests.post(f"{api}/chat/ses_nope/message", headers=headers(), json={"message": "hi"})
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


@contextmanager
def receiver():
    """A webhook endpoint on loopback: yields its URL and a queue of (headers, body)."""
    got = queue.Queue()

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.put(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()


def test_async_webhook_is_signed_and_links_its_images(api):
    # "Async Processing" with a webhook: the 202 now, the signed event later.
    with receiver() as (hook_url, deliveries):
        data = {"prompt": "A lighthouse at dusk, long exposure", "webhook_url": hook_url}
        response = requests.post(f"{api}/generate-image", headers=headers(), json=data)
        assert response.status_code == 202, response.text
        request_id = response.json()["request_id"]
        hook_headers, body = deliveries.get(timeout=60)
    payload = Webhook(WEBHOOK_SECRET).verify(body, hook_headers)
    assert payload["type"] == "job.succeeded", payload
    assert payload["request_id"] == request_id
    assert payload["data"]["job_id"] == response.json()["job_id"]
    [link] = payload["images"]
    image = requests.get(link)  # no token: the link itself is the credential
    assert image.status_code == 200, image.text
    assert png_size(image.content) == (1024, 1024)
    forged = re.sub(r"signature=[^&]+", "signature=AAAA", link)
    assert requests.get(forged).status_code == 404
    expired = re.sub(r"expires=\d+", "expires=1", link)
    assert requests.get(expired).status_code == 404


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
        session = requests.post(f"{api}/chat/create", headers=headers("token-a"), json={}).json()["session_id"]
        paths = [("POST", f"/chat/{session}/message"), ("GET", f"/v1/jobs/{job}"), ("GET", f"/v1/jobs/{job}/images/0"), ("POST", f"/v1/jobs/{job}/cancel"),
                 ("GET", f"/v1/batches/{batch}"), ("GET", f"/v1/batches/{batch}/results"), ("GET", f"/v1/batches/{batch}/events"), ("POST", f"/v1/batches/{batch}/cancel")]
        for token in ("token-b1", "token-b2"):
            for method, path in paths:
                body = {"message": "hi"} if "/chat/" in path else None
                r = requests.request(method, f"{api}{path}", headers=headers(token), json=body)
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


def sse(response):
    """The (event, data) pairs of a Server-Sent Events stream, as they arrive."""
    event, data = None, []
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_v1_batch_events_stream_progress_until_completed(api):
    lines = "".join(f'{{"prompt": "event prompt {i}"}}\n' for i in range(12))
    h = {**headers(), "Content-Type": "application/x-ndjson"}
    batch_id = requests.post(f"{api}/v1/batches", headers=h, data=lines).json()["batch_id"]
    with requests.get(f"{api}/v1/batches/{batch_id}/events", headers=headers(), stream=True, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse(r))
    names = [e for e, _ in events]
    assert names[-1] == "completed" and set(names[:-1]) <= {"progress"}, names
    done = [d["done"] for _, d in events]
    assert done == sorted(done) and done[-1] == 12, done
    last = events[-1][1]
    assert last["counts"]["succeeded"] == 12 and last["progress"] == 1.0
    assert last["manifest_url"]
    # A finished batch's stream says so at once; another project's or a missing one is 404.
    with requests.get(f"{api}/v1/batches/{batch_id}/events", headers=headers(), stream=True, timeout=30) as r:
        assert [e for e, _ in sse(r)] == ["completed"]
    assert requests.get(f"{api}/v1/batches/nope/events", headers=headers()).status_code == 404


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
             "-H", "Authorization: Bearer guide-token", "-n", "25", "--seed", "1",
             # A sync story of 24 chained frames takes its time (the debug build's
             # image work): the default 10 s limits would call it an error.
             "--request-timeout", "60", "--max-response-time", "60"],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent), "SCHEMATHESIS_HOOKS": "st_hooks"},
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    finally:
        stop(proc)


def session_fleet(mode, tmp_path, latency=0.3, concurrency=4):
    """An emulator at `latency`, project `a` at `concurrency`, and the API: `serve`, or
    `api` + 2 workers on Redis. Returns (api URL, processes, the worker command)."""
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(f"latency_ms = {int(latency * 1000)}\n")
    emulator, emulator_url = start(["emulator", "--listen", "127.0.0.1:0", "--scenario", str(scenario)])
    config = tmp_path / "imagegen.toml"
    config.write_text(
        f'[redis]\nkey_prefix = "sessions-{os.getpid()}-{time.time_ns()}"\n'
        f'[output]\nurl = "file://{tmp_path}/out"\n'
        f'[projects.a]\nbackend = "gemini-api"\nendpoint = "{emulator_url}"\n'
        f'credentials = "env:KEY"\napi_tokens = "env:TOKEN_A"\nconcurrency = {concurrency}\n'
    )
    env = {**os.environ, "KEY": "k", "TOKEN_A": "guide-token"}
    worker = [BINARY, "--config", str(config), "worker", "--concurrency", "8"]
    procs = [emulator]
    if mode == "fleet":
        procs += [subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
    api_proc, api = start(["--config", str(config), "serve" if mode == "serve" else "api", "--listen", "127.0.0.1:0"], env=env)
    OUTPUTS[api] = tmp_path / "out"
    return api, [api_proc, *procs], (worker, env)


def job(api, job_id):
    r = requests.get(f"{api}/v1/jobs/{job_id}", headers=headers())
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("mode", ["serve", "fleet"])
def test_v1_sessions_run_messages_sent_50ms_apart_in_order(mode, tmp_path):
    api, procs, _ = session_fleet(mode, tmp_path)
    try:
        made = requests.post(f"{api}/v1/sessions", headers=headers(), json={"system_prompt": "You draw lighthouses."})
        assert made.status_code == 201, made.text
        sid = made.json()["session_id"]
        assert made.headers["Location"] == f"/v1/sessions/{sid}"
        answers = {}

        def send(n, text):
            answers[n] = requests.post(f"{api}/v1/sessions/{sid}/messages", headers=headers(), json={"message": text})

        first = threading.Thread(target=send, args=(1, "A lighthouse at dusk"))
        second = threading.Thread(target=send, args=(2, "Add a rowing boat in front of it"))
        first.start()
        time.sleep(0.05)
        second.start()
        first.join()
        second.join()
        for n in (1, 2):
            assert answers[n].status_code == 200, answers[n].text
        a1, a2 = answers[1].json(), answers[2].json()
        assert (a1["turn"], a2["turn"]) == (1, 2)
        j1, j2 = job(api, a1["job_id"]), job(api, a2["job_id"])
        # The second waited for the first (sent while it ran) and saw its image.
        assert j2["first_started_ms"] >= j1["finished_ms"], (j1, j2)
        history = result_json(api, a2["job_id"])["request"]["history"]
        assert [c["role"] for c in history] == ["user", "model"]
        assert history[0]["parts"][0]["text"] == "A lighthouse at dusk"
        first_image = j1["result"]["images"][0]["url"]
        assert any(p.get("fileData", {}).get("fileUri") == first_image for p in history[1]["parts"]), history
        assert all(p.get("thoughtSignature") for p in history[1]["parts"] if "fileData" in p)
        # The session shows its turns with their images.
        view = requests.get(f"{api}/v1/sessions/{sid}", headers=headers()).json()
        assert [(t["turn"], t["status"], t["message"]) for t in view["turns"]] == [
            (1, "succeeded", "A lighthouse at dusk"), (2, "succeeded", "Add a rowing boat in front of it")]
        assert view["turns"][1]["images"][0]["url"] == j2["result"]["images"][0]["url"]
        assert view["system_prompt"] == "You draw lighthouses."
        # Async: 202 at once; the turn waits for none and finishes.
        r = requests.post(f"{api}/v1/sessions/{sid}/messages", headers=headers(), json={"message": "Now at night", "async": True})
        assert r.status_code == 202, r.text
        assert requests.delete(f"{api}/v1/sessions/{sid}", headers=headers()).status_code == 204
        assert requests.get(f"{api}/v1/sessions/{sid}", headers=headers()).status_code == 404
        gone = requests.post(f"{api}/v1/sessions/{sid}/messages", headers=headers(), json={"message": "hello?"})
        assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    finally:
        stop(*procs)


def overlap(jobs):
    """The most jobs that ran at once (by their records' start and finish)."""
    events = sorted([(j["started_ms"], 1) for j in jobs] + [(j["finished_ms"], -1) for j in jobs])
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


def test_50_sessions_of_3_turns_at_once_under_concurrency_4_survive_a_worker_restart(tmp_path):
    api, procs, (worker, env) = session_fleet("fleet", tmp_path, latency=0.1, concurrency=4)
    try:
        sids = [requests.post(f"{api}/v1/sessions", headers=headers(), json={}).json()["session_id"] for _ in range(50)]
        sent = {}

        def converse(sid, turns):
            for n in turns:
                r = requests.post(f"{api}/v1/sessions/{sid}/messages", headers=headers(),
                                  json={"message": f"{sid} turn {n}"})
                assert r.status_code == 200, r.text
                sent.setdefault(sid, []).append(r.json()["job_id"])

        def all_at_once(turns):
            threads = [threading.Thread(target=converse, args=(sid, turns)) for sid in sids]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        all_at_once([1])
        # Both workers restart between the first turn and the others.
        for p in procs[2:4]:
            p.terminate()
        for p in procs[2:4]:
            p.wait(timeout=30)
        procs[2:4] = [subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for _ in range(2)]
        all_at_once([2, 3])
        jobs = [job(api, j) for sid in sids for j in sent[sid]]
        assert len(jobs) == 150 and all(j["status"] == "succeeded" for j in jobs)
        assert overlap(jobs) <= 4, overlap(jobs)
        for sid in sids:
            view = requests.get(f"{api}/v1/sessions/{sid}", headers=headers()).json()
            assert [t["message"] for t in view["turns"]] == [f"{sid} turn {n}" for n in (1, 2, 3)]
            history = result_json(api, sent[sid][2])["request"]["history"]
            assert [c["parts"][0]["text"] for c in history if c["role"] == "user"] == [f"{sid} turn 1", f"{sid} turn 2"]
    finally:
        stop(*procs)
