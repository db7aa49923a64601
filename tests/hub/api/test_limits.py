"""Limits at the API edge: bodies refused before they are read, 422s that always serialise, bounded conflicts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

from tests.hub.api.conftest import TOKEN, Hub, anomaly, online


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send `head` (and `body`) over a raw socket; the status and body of the response."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_a_declared_50_mb_body_is_refused_before_it_is_read(hub: Hub) -> None:
    # Only the headers are sent: a 413 proves the server answered without waiting for (or reading) the body.
    head = (f"POST /annotations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN['technician']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {50 * 1024 * 1024}\r\n")
    status, body = raw_request(hub.url, head)
    assert status == 413, body
    assert b"at most 1048576 bytes" in body


def test_the_413_is_documented_on_every_operation(hub: Hub) -> None:
    """Found by the schema fuzz (a 1 MB list in a viewer's body): the middleware answered a 413 no operation
    documented. It answers before routing, so every operation may answer it."""
    spec = hub.client().get("/openapi.json").json()
    operations = [(f"{method.upper()} {path}", op) for path, ops in spec["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 30
    assert [name for name, op in operations if "413" not in op["responses"]] == []
    documented = spec["paths"]["/annotations"]["post"]["responses"]["413"]["content"]["application/json"]["schema"]
    assert documented == {"$ref": "#/components/schemas/ErrorPublic"}


def test_a_body_without_a_token_is_refused_before_it_is_read(hub: Hub) -> None:
    head = "POST /annotations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n"
    status, body = raw_request(hub.url, head)
    assert status == 401, body
    head = head.replace("Host: x", "Host: x\r\nAuthorization: Bearer not-a-token")
    assert raw_request(hub.url, head)[0] == 401


def test_a_streamed_body_is_counted_and_refused_past_the_limit(hub: Hub) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MB in all, no Content-Length

    client = hub.client("technician")
    response = client.post("/annotations", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text


def test_a_422_echoing_a_lone_surrogate_or_nan_is_a_422(hub: Hub) -> None:
    client = hub.client("technician")
    for raw in (b'{"trace_id": "\\ud800", "label": "maybe", "technician_id": "ann"}',
                b'{"trace_id": "t", "label": "fault", "technician_id": "ann", "confidence": NaN}',
                b'{"trace_id": "t", "label": NaN, "technician_id": "\\udfff"}'):
        response = client.post("/annotations", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (raw, response.status_code, response.text)
        assert response.json()["detail"]


def test_conflicts_are_bounded_and_paged(hub: Hub) -> None:
    predictions = [anomaly(ts=1_700_000_000.0 + i) for i in range(3)]
    hub.ingest(online(), *predictions)
    tech = hub.client("technician")
    for p in predictions:
        for technician, label in (("ann", "fault"), ("bob", "no_fault")):
            response = tech.post("/annotations", json={"trace_id": p.trace_id, "label": label,
                                                       "technician_id": technician})
            assert response.status_code == 201, response.text
    viewer = hub.client("viewer")
    everything = viewer.get("/labels/conflicts").json()
    assert sorted(c["trace_id"] for c in everything) == sorted(p.trace_id for p in predictions)
    page = viewer.get("/labels/conflicts", params={"limit": 2, "offset": 1}).json()
    assert [c["trace_id"] for c in page] == [c["trace_id"] for c in everything][1:3]
    assert viewer.get("/labels/conflicts", params={"limit": 100_000}).status_code == 422
