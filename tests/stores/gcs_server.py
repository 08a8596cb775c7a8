"""The GCS-API server of the object-store test (tests/it/fleet/stores.rs).

It is gcp-storage-emulator from PyPI (pinned in tests/sdk/requirements.txt), run with
three response details real GCS's XML API has and object_store's GCS client relies on,
which that package (2026.7.19) leaves out:

- `ETag` on object uploads and downloads (object_store fails a put without one),
- `Last-Modified` on downloads (object_store's GCS `get` requires it),
- `HEAD` on an object (object_store's `head`).

Real GCS sends both headers on every object response and answers HEAD
(https://cloud.google.com/storage/docs/xml-api/reference-headers). Everything else is the
package's own server, unchanged. Why this server and not fake-gcs-server: see
docs/design/storage.md.

Usage: gcs_server.py start --host 127.0.0.1 --port N --default-bucket B --in-memory
"""

import base64
import email.utils
import sys
from datetime import datetime, timezone

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.handlers import objects

HEAD = "HEAD"


def object_headers(request, response, storage):
    """Sets `ETag` (the hex MD5, quoted, as GCS does) and `Last-Modified`."""
    try:
        obj = storage.get_file_obj(
            request.params["bucket_name"], request.params["object_id"]
        )
    except Exception:  # not found: the wrapped handler has set the status
        return
    if obj.get("md5Hash"):
        md5 = base64.b64decode(obj["md5Hash"]).hex()
        response["ETag"] = '"{}"'.format(md5)
    updated = obj.get("updated")
    if updated:
        when = datetime.strptime(updated, "%Y-%m-%dT%H:%M:%S.%fZ")
        response["Last-Modified"] = email.utils.format_datetime(
            when.replace(tzinfo=timezone.utc), usegmt=True
        )


def with_headers(handler):
    def wrapped(request, response, storage, *args, **kwargs):
        handler(request, response, storage, *args, **kwargs)
        object_headers(request, response, storage)

    return wrapped


def head(request, response, storage, *args, **kwargs):
    """GET's status and headers, no body."""
    with_headers(objects.download)(request, response, storage, *args, **kwargs)
    body = response._content
    response._content = b""
    response.head_length = len(body)


_close = server.Response.close


def close(self):
    length = getattr(self, "head_length", None)
    if length is None:
        return _close(self)
    self._handler.send_response(self.status.value, self.status.phrase)
    for k, v in self._headers.items():
        self._handler.send_header(k, v)
    self._handler.send_header("Content-Length", str(length))
    self._handler.end_headers()


def patch():
    for _, handlers in server.HANDLERS:
        if handlers.get(server.GET) is objects.download:
            handlers[server.GET] = with_headers(objects.download)
            handlers[HEAD] = head
        if handlers.get(server.PUT) is objects.xml_upload:
            handlers[server.PUT] = with_headers(objects.xml_upload)
    server.Response.close = close
    server.RequestHandler.do_HEAD = lambda self: server.Router(self).handle(HEAD)


if __name__ == "__main__":
    patch()
    main(sys.argv[1:])
