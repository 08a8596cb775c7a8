"""The official google-genai SDK (3.4.0) against `imagegen emulator`.

The SDK is the judge: if it cannot send to or parse what the emulator answers, the
emulator is wrong. Runs the built binary (`target/debug/imagegen`, or `$IMAGEGEN_BIN`)
on 127.0.0.1:0 and reads the URL from its first stdout line.

    python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt
    cargo build && .venv/bin/pytest tests/sdk -q
"""

import json
import os
import struct
import subprocess
import urllib.request
import zlib
from pathlib import Path

import pytest
from google import genai
from google.genai import types
from google.oauth2 import service_account

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "demo-proj"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def png(width, height, rgb=(20, 120, 220)):
    """A solid-colour RGB PNG, built without Pillow."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def dims(data):
    """(format, width, height) of PNG or JPEG bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    assert data[:2] == b"\xff\xd8", "neither PNG nor JPEG"
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return "jpeg", w, h
        i += 2 + length
    raise AssertionError("no JPEG frame header")


@pytest.fixture(scope="session")
def emulator_url():
    binary = os.environ.get("IMAGEGEN_BIN", str(ROOT / "target" / "debug" / "imagegen"))
    proc = subprocess.Popen(
        [binary, "emulator", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline().strip()
    assert line.startswith("imagegen emulator listening on http://"), line
    yield line.rsplit(" ", 1)[1]
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def vertex_client(emulator_url):
    req = urllib.request.Request(
        f"{emulator_url}/emulator/service-accounts",
        data=json.dumps({"project_id": PROJECT}).encode(),
        headers={"Content-Type": "application/json"},
    )
    info = json.load(urllib.request.urlopen(req))
    assert info["token_uri"] == f"{emulator_url}/token"
    creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    return genai.Client(
        vertexai=True, project=PROJECT, location="us-central1", credentials=creds,
        http_options=types.HttpOptions(base_url=emulator_url),
    )


@pytest.fixture(scope="session")
def dev_client(emulator_url):
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=emulator_url))


def image(w, h):
    return types.Image(image_bytes=png(w, h), mime_type="image/png")


def test_vertex_generate_images_parses_jpeg_images_and_enhanced_prompt(vertex_client):
    resp = vertex_client.models.generate_images(
        model="imagen-4.0-generate-001", prompt="a watercolor fox",
        config=types.GenerateImagesConfig(
            number_of_images=2, aspect_ratio="16:9", output_mime_type="image/jpeg",
            include_rai_reason=True, enhance_prompt=True, include_safety_attributes=True,
        ),
    )
    assert len(resp.generated_images) == 2
    for generated in resp.generated_images:
        assert dims(generated.image.image_bytes) == ("jpeg", 1408, 768)
        assert generated.enhanced_prompt.startswith("a watercolor fox")
    assert resp.positive_prompt_safety_attributes is not None


def test_vertex_generate_images_blocked_prompt_reports_rai_reason(vertex_client):
    resp = vertex_client.models.generate_images(
        model="imagen-4.0-fast-generate-001", prompt="fox [[blocked]]",
        config=types.GenerateImagesConfig(number_of_images=1, include_rai_reason=True),
    )
    assert resp.generated_images[0].rai_filtered_reason


def test_vertex_edit_image_keeps_the_input_dimensions(vertex_client):
    resp = vertex_client.models.edit_image(
        model="imagen-3.0-capability-001", prompt="on a marble counter",
        reference_images=[
            types.RawReferenceImage(reference_id=1, reference_image=image(300, 200)),
            types.MaskReferenceImage(
                reference_id=2, config=types.MaskReferenceConfig(mask_mode="MASK_MODE_BACKGROUND")),
        ],
        config=types.EditImageConfig(edit_mode="EDIT_MODE_BGSWAP", number_of_images=1),
    )
    assert dims(resp.generated_images[0].image.image_bytes) == ("png", 300, 200)


def test_vertex_upscale_image_multiplies_the_input(vertex_client):
    resp = vertex_client.models.upscale_image(
        model="imagen-4.0-upscale-preview", image=image(120, 80), upscale_factor="x4")
    assert dims(resp.generated_images[0].image.image_bytes) == ("png", 480, 320)


def test_vertex_recontext_image_virtual_try_on(vertex_client):
    resp = vertex_client.models.recontext_image(
        model="virtual-try-on-001",
        source=types.RecontextImageSource(
            person_image=image(64, 96), product_images=[types.ProductImage(product_image=image(32, 32))]),
    )
    assert dims(resp.generated_images[0].image.image_bytes) == ("png", 1024, 1024)


def test_vertex_segment_image_returns_labelled_masks(vertex_client):
    resp = vertex_client.models.segment_image(
        model="image-segmentation-001",
        source=types.SegmentImageSource(image=image(64, 48)),
        config=types.SegmentImageConfig(mode="FOREGROUND", max_predictions=1),
    )
    mask = resp.generated_masks[0]
    assert dims(mask.mask.image_bytes) == ("png", 64, 48)
    assert mask.labels[0].label == "foreground"


def png_with_square(width, height, box, ground=(128, 128, 128), ink=(220, 30, 30)):
    """A PNG of `ground` with an `ink` rectangle box = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    rows = b""
    for y in range(height):
        row = b"".join(bytes(ink if x0 <= x < x1 and y0 <= y < y1 else ground) for x in range(width))
        rows += b"\x00" + row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# Google's segmentation instruction (ai.google.dev/gemini-api/docs/image-understanding).
SEGMENT_PROMPT = (
    "Give the segmentation masks for the red box. Output a JSON list of segmentation masks "
    'where each entry contains the 2D bounding box in the key "box_2d", the segmentation mask '
    'in key "mask", and the text label in the key "label". Use descriptive labels.'
)


@pytest.mark.parametrize("client_name", ["vertex_client", "dev_client"])
@pytest.mark.parametrize("json_mode", [True, False])
def test_text_model_segmentation_answers_boxes_labels_and_masks(client_name, json_mode, request):
    import base64

    client = request.getfixturevalue(client_name)
    config = types.GenerateContentConfig(response_mime_type="application/json") if json_mode else None
    resp = client.models.generate_content(
        model="gemini-3.5-flash",
        contents=[
            types.Part.from_bytes(data=png_with_square(200, 100, (50, 20, 100, 70)), mime_type="image/png"),
            SEGMENT_PROMPT,
        ],
        config=config,
    )
    text = resp.text.strip()
    if not json_mode:
        # As Google's examples parse it: the list inside a ```json fence.
        assert text.startswith("```json") and text.endswith("```")
        text = text.removeprefix("```json").removesuffix("```")
    [entry] = json.loads(text)
    assert entry["label"] == "the red box"
    assert entry["box_2d"] == [200, 250, 700, 500]  # [y0, x0, y1, x1] per mille
    prefix = "data:image/png;base64,"
    assert entry["mask"].startswith(prefix)
    assert dims(base64.b64decode(entry["mask"][len(prefix):])) == ("png", 50, 50)
    assert not [p for p in resp.parts if p.inline_data is not None]


def test_text_models_refuse_image_output(dev_client):
    with pytest.raises(genai.errors.ClientError) as e:
        dev_client.models.generate_content(
            model="gemini-3.5-flash",
            contents="a cat",
            config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
        )
    assert e.value.code == 400


def check_content_response(resp, expected):
    assert resp.text
    images = [p.inline_data for p in resp.parts if p.inline_data is not None]
    assert len(images) == 1
    assert dims(images[0].data) == expected


@pytest.mark.parametrize("client_name", ["vertex_client", "dev_client"])
def test_generate_content_with_input_images(client_name, request):
    client = request.getfixturevalue(client_name)
    resp = client.models.generate_content(
        model="gemini-2.5-flash-image",
        contents=[
            types.Part.from_bytes(data=png(320, 180), mime_type="image/png"),
            types.Part.from_bytes(data=png(16, 16), mime_type="image/png"),
            "Put the object from the second image into the first",
        ],
        config=types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"]),
    )
    check_content_response(resp, ("png", 1344, 768))
    assert resp.usage_metadata.total_token_count > 1290


def test_vertex_generate_content_jpeg_2k(vertex_client):
    resp = vertex_client.models.generate_content(
        model="gemini-3-pro-image-preview", contents="An infographic about tides",
        config=types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio="21:9", image_size="2K", output_mime_type="image/jpeg"),
        ),
    )
    check_content_response(resp, ("jpeg", 3168, 1344))


@pytest.mark.parametrize("client_name", ["vertex_client", "dev_client"])
def test_three_turn_chat_round_trips_thought_signatures(client_name, request):
    client = request.getfixturevalue(client_name)
    chat = client.chats.create(
        model="gemini-3-pro-image-preview",
        config=types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"], image_config=types.ImageConfig(aspect_ratio="4:3")),
    )
    for message in ["Draw a small wooden boat", "Now make it red", "Now at night"]:
        # The emulator refuses gemini-3 history whose image parts lack a signature, so
        # turns 2 and 3 succeeding proves the SDK sent them back.
        check_content_response(chat.send_message(message), ("png", 1200, 896))
    history = chat.get_history()
    assert len(history) == 6
    model_images = [p for c in history if c.role == "model" for p in c.parts if p.inline_data]
    assert len(model_images) == 3
    assert all(p.thought_signature for p in model_images)


def test_dev_client_safety_outcomes_parse(dev_client):
    blocked = dev_client.models.generate_content(model="gemini-2.5-flash-image", contents="x [[blocked]]")
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    unsafe = dev_client.models.generate_content(model="gemini-2.5-flash-image", contents="x [[image_safety]]")
    assert unsafe.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY


def test_dev_client_stream_generate_content(dev_client):
    chunks = list(dev_client.models.generate_content_stream(model="gemini-2.5-flash-image", contents="A lighthouse"))
    assert any(p.inline_data for c in chunks for p in (c.parts or []))


def test_dev_client_errors_surface_as_sdk_errors(dev_client):
    with pytest.raises(genai.errors.ClientError) as err:
        dev_client.models.generate_content(model="gemini-9-image", contents="x")
    assert err.value.code == 404
    with pytest.raises(genai.errors.ServerError) as err:
        dev_client.models.generate_content(model="gemini-2.5-flash-image", contents="x [[fail:503]]")
    assert err.value.code == 503


@pytest.mark.parametrize("op", ["generate_images", "edit_image", "upscale_image", "recontext_image", "segment_image"])
def test_dev_client_imagen_ops_are_refused_by_the_sdk_before_sending(dev_client, op):
    calls = {
        "generate_images": lambda m: m.generate_images(model="imagen-4.0-generate-001", prompt="fox"),
        "edit_image": lambda m: m.edit_image(
            model="imagen-3.0-capability-001", prompt="x",
            reference_images=[types.RawReferenceImage(reference_id=1, reference_image=image(8, 8))]),
        "upscale_image": lambda m: m.upscale_image(
            model="imagen-4.0-upscale-preview", image=image(8, 8), upscale_factor="x2"),
        "recontext_image": lambda m: m.recontext_image(
            model="virtual-try-on-001",
            source=types.RecontextImageSource(
                person_image=image(8, 8), product_images=[types.ProductImage(product_image=image(8, 8))])),
        "segment_image": lambda m: m.segment_image(
            model="image-segmentation-001", source=types.SegmentImageSource(image=image(8, 8))),
    }
    with pytest.raises(ValueError, match="only supported in Gemini Enterprise Agent Platform mode"):
        calls[op](dev_client.models)


def test_vertex_token_refreshes_after_revocation(vertex_client, emulator_url):
    urllib.request.urlopen(urllib.request.Request(f"{emulator_url}/emulator/tokens/revoke", method="POST"))
    # The SDK only refreshes expired tokens, so a revoked-but-unexpired token is refused.
    with pytest.raises(genai.errors.ClientError) as err:
        vertex_client.models.generate_content(model="gemini-2.5-flash-image", contents="x")
    assert err.value.code == 401
    vertex_client._api_client._credentials.token = None
    resp = vertex_client.models.generate_content(model="gemini-2.5-flash-image", contents="x")
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    stats = json.load(urllib.request.urlopen(f"{emulator_url}/emulator/stats"))
    assert stats["tokens_issued"] >= 2


@pytest.fixture
def batch_emulator(tmp_path):
    """An emulator whose batches wait, run and finish on a clock, and write every
    answered line twice (`[batch]` in its scenario)."""
    scenario = tmp_path / "scenario.toml"
    scenario.write_text("[batch]\npending_ms = 300\nturnaround_ms = 900\nduplicate_rate = 1.0\n")
    binary = os.environ.get("IMAGEGEN_BIN", str(ROOT / "target" / "debug" / "imagegen"))
    proc = subprocess.Popen(
        [binary, "emulator", "--listen", "127.0.0.1:0", "--scenario", str(scenario)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def poll_batch(client, name, timeout=30):
    """The batch's states in order until it ended, and the ended job."""
    import time
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        job = client.batches.get(name=name)
        if not seen or seen[-1] != job.state.name:
            seen.append(job.state.name)
        if job.done:
            return seen, job
        time.sleep(0.1)
    raise AssertionError(f"batch {name} not done: {seen}")


def batch_request(prompt):
    return {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "config": {"response_modalities": ["IMAGE"]}}


def test_dev_batch_inline_moves_through_its_states_and_answers_each_line(batch_emulator):
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=batch_emulator))
    src = [batch_request(f"a lighthouse, study {i}") for i in range(3)]
    job = client.batches.create(model="gemini-3.1-flash-image", src=src)
    assert job.state.name == "JOB_STATE_PENDING"
    states, job = poll_batch(client, job.name)
    assert states == ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"], states
    answers = job.dest.inlined_responses
    # Every line answered, and (duplicate_rate 1.0) written twice, as Google has been seen to.
    assert len(answers) == 6
    for a in answers:
        part = a.response.candidates[0].content.parts[-1]
        assert dims(part.inline_data.data)[1:] == (1024, 1024)
        assert a.response.usage_metadata.candidates_token_count == 1120
    stats = json.load(urllib.request.urlopen(f"{batch_emulator}/emulator/stats"))
    assert stats["batch_lines"]["default/gemini-3.1-flash-image"] == 6
    # No online call was made for them.
    assert "default/gemini-3.1-flash-image" not in stats["requests"]


def test_dev_batch_from_an_uploaded_jsonl_file_writes_a_responses_file(batch_emulator, tmp_path):
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=batch_emulator))
    lines = [{"key": f"k{i}", "request": {"contents": [{"role": "user", "parts": [{"text": f"a fox, study {i}"}]}],
                                           "generationConfig": {"responseModalities": ["IMAGE"]}}}
             for i in range(4)]
    # A line Google refuses on its own: the others are still answered.
    lines.append({"key": "bad", "request": {"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                                             "generationConfig": {"responseModalities": ["IMAGE"], "candidateCount": 9}}})
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(l) + "\n" for l in lines))
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    assert uploaded.name.startswith("files/") and uploaded.size_bytes == path.stat().st_size
    assert client.files.get(name=uploaded.name).state.name == "ACTIVE"
    job = client.batches.create(model="gemini-3.1-flash-image", src=uploaded.name)
    states, job = poll_batch(client, job.name)
    assert states[-1] == "JOB_STATE_SUCCEEDED", states
    out = client.files.download(file=job.dest.file_name).decode().splitlines()
    answers = [json.loads(l) for l in out]
    ok = [a for a in answers if "response" in a]
    assert sorted({a["key"] for a in ok}) == ["k0", "k1", "k2", "k3"]
    assert len(ok) == 8  # each answered line twice
    [bad] = [a for a in answers if a["key"] == "bad"]
    # A line's error is a google.rpc.Status: the canonical code (3, INVALID_ARGUMENT).
    assert bad["error"]["code"] == 3 and "candidates" in bad["error"]["message"], bad


def test_dev_batch_cancel_ends_it_cancelled(batch_emulator):
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=batch_emulator))
    job = client.batches.create(model="gemini-3.1-flash-image", src=[batch_request("a boat")])
    client.batches.cancel(name=job.name)
    states, job = poll_batch(client, job.name)
    assert states[-1] == "JOB_STATE_CANCELLED", states
