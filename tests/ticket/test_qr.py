"""GET /tickets/{code}/qr: a scannable image of the signed code; both databases."""

import io
import struct
import zlib
from xml.etree import ElementTree

import segno

from tests.factories import CUSTOMER, OPERATOR, STAFF
from tests.ticket.helpers import new_user, paid_ticket
from ticketing.ticket.signing import from_b64url, verify_signed_code


def _png_modules(data: bytes, border: int = 4) -> list[list[bool]]:
    """Decode a 1-bit greyscale PNG and sample each module's centre (True = dark)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        header = chunk if kind == b"IHDR" else header
        idat += chunk if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (width == height, depth, colour) == (True, 1, 0)
    stride = (width + 7) // 8 + 1
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    for i in range(height):
        kind, line = raw[i * stride], raw[i * stride + 1:(i + 1) * stride]
        assert kind in (0, 2)  # None and Up are the PNG filters segno writes
        if kind == 2:
            line = bytes((a + b) & 0xFF for a, b in zip(line, rows[-1], strict=True))
        rows.append(line)

    def dark(x: int, y: int) -> bool:
        return not (rows[y][x // 8] >> (7 - x % 8)) & 1

    size = None
    for version_size in range(21, 178, 4):  # find the scale that fits a QR symbol size
        if width % (version_size + 2 * border) == 0:
            size = version_size
            break
    assert size is not None
    scale = width // (size + 2 * border)
    return [[dark((border + c) * scale + scale // 2, (border + r) * scale + scale // 2)
             for c in range(size)] for r in range(size)]


def _payload(client, code, headers=CUSTOMER) -> str:
    r = client.get(f"/tickets/{code}/qr", params={"format": "txt"}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


def test_png_by_default_encoding_the_signed_code(client):
    code = paid_ticket(client)["code"]
    r = client.get(f"/tickets/{code}/qr", headers=CUSTOMER)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "no-store"
    payload = _payload(client, code)
    key = from_b64url(client.get("/tenants/default/ticket-key").json()["public_key"])
    assert verify_signed_code(key, "default", payload) == code
    expected = segno.make_qr(payload, error="m", boost_error=False)
    assert not expected.is_micro
    assert _png_modules(r.content) == [[bool(v) for v in row] for row in expected.matrix]


def test_svg_by_parameter_or_accept_header(client):
    code = paid_ticket(client)["code"]
    by_param = client.get(f"/tickets/{code}/qr", params={"format": "svg"}, headers=CUSTOMER)
    by_accept = client.get(f"/tickets/{code}/qr",
                           headers={**CUSTOMER, "Accept": "image/svg+xml, */*;q=0.1"})
    for r in (by_param, by_accept):
        assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
        assert ElementTree.fromstring(r.content).tag == "{http://www.w3.org/2000/svg}svg"
    expected = io.BytesIO()
    segno.make_qr(_payload(client, code), error="m", boost_error=False).save(
        expected, kind="svg", scale=8, border=4)
    assert by_param.content == by_accept.content == expected.getvalue()
    explicit_png = client.get(f"/tickets/{code}/qr", params={"format": "png"},
                              headers={**CUSTOMER, "Accept": "image/svg+xml"})
    assert explicit_png.headers["content-type"] == "image/png"


def test_owner_and_staff_only(client):
    code = paid_ticket(client)["code"]
    assert client.get(f"/tickets/{code}/qr", headers=STAFF).status_code == 200
    stranger = new_user(client, name="Stranger", role="customer")
    r = client.get(f"/tickets/{code}/qr", headers=stranger["headers"])
    assert r.status_code == 404 and r.json()["code"] == "ticket_not_found"
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    acme_staff = new_user(client, name="Acme gate", role="staff", tenant="acme")
    assert client.get(f"/tickets/{code}/qr", headers=acme_staff["headers"]).status_code == 404
    assert client.get(f"/tickets/{code}/qr").status_code == 401
    assert client.get("/tickets/TKT-ZZZZZZZZZZZZZZZZ/qr", headers=CUSTOMER).status_code == 404
    r = client.get(f"/tickets/{code}/qr", params={"format": "gif"}, headers=CUSTOMER)
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


def test_payload_stays_inside_the_qr_alphanumeric_set(client):
    payload = _payload(client, paid_ticket(client)["code"])
    assert set(payload) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-.")
    assert segno.make_qr(payload).mode == "alphanumeric"
