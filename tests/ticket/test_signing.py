"""Signed ticket codes a gate checks offline, and the published per-tenant keys."""

import base64

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import func, select

from tests.factories import CUSTOMER, OPERATOR
from tests.ticket.helpers import paid_ticket
from ticketing.models import TicketSigningKey
from ticketing.ticket.codes import new_ticket_code
from ticketing.ticket.signing import (
    KeyPair,
    from_b64url,
    public_bytes,
    sign_code,
    verify_signed_code,
)


def test_a_signed_code_verifies_and_names_its_ticket():
    keys, code = KeyPair.generate(), new_ticket_code()
    payload = sign_code(keys.private, "default", code)
    assert payload.startswith(code + ".") and len(payload) == len(code) + 1 + 103
    assert verify_signed_code(keys.public, "default", payload) == code
    assert verify_signed_code(keys.public, "default", f"  {payload}\n") == code  # scanner padding


def test_tampering_of_any_kind_fails():
    keys, code = KeyPair.generate(), new_ticket_code()
    payload = sign_code(keys.private, "default", code)
    body, _, signature = payload.partition(".")
    other_code = new_ticket_code()
    flipped = "B" if signature[10] != "B" else "C"
    for forged in (
        other_code + "." + signature,                         # another ticket's code
        body[:-1] + ("A" if body[-1] != "A" else "B") + "." + signature,  # one symbol changed
        body + "." + signature[:10] + flipped + signature[11:],  # signature changed
        body + "." + signature[:-4],                          # signature cut short
        body + "." + signature.lower(),                       # not our encoding
        body + ".",                                           # no signature
        body,                                                 # no separator
        "TKT-0000000000000000." + signature,                  # not a ticket code
        "",
    ):
        assert verify_signed_code(keys.public, "default", forged) is None, forged
    assert verify_signed_code(keys.public, "acme", payload) is None        # another tenant
    assert verify_signed_code(KeyPair.generate().public, "default", payload) is None  # other key


def test_the_public_key_is_published_without_auth_and_stays_put(client):
    first = client.get("/tenants/default/ticket-key")
    assert first.status_code == 200
    body = first.json()
    raw = from_b64url(body["public_key"])
    assert len(raw) == 32 and "=" not in body["public_key"]
    assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == body["public_key"]
    assert public_bytes(load_pem_public_key(body["public_key_pem"].encode())) == raw
    assert body["algorithm"] == "Ed25519" and body["tenant"] == "default"
    assert client.get("/tenants/default/ticket-key").json() == body


def test_each_tenant_has_its_own_key_and_the_private_half_never_leaves(client, db):
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    default_key = client.get("/tenants/default/ticket-key").json()
    acme_key = client.get("/tenants/acme/ticket-key").json()
    assert default_key["public_key"] != acme_key["public_key"]
    code = paid_ticket(client)["code"]
    payload = client.get(f"/tickets/{code}/qr", params={"format": "txt"}, headers=CUSTOMER).text
    assert verify_signed_code(from_b64url(default_key["public_key"]), "default", payload) == code
    assert verify_signed_code(from_b64url(acme_key["public_key"]), "acme", payload) is None
    with db.transaction(readonly=True) as session:
        stored = session.execute(select(TicketSigningKey)).scalars().all()
        assert session.execute(select(func.count()).select_from(TicketSigningKey)).scalar() == 2
    secrets = {k.private_key for k in stored}
    for response in (client.get("/tenants/default/ticket-key"), client.get("/tenants/acme/ticket-key"),
                     client.get(f"/tickets/{code}", headers=CUSTOMER)):
        assert not any(s in response.text for s in secrets)


def test_unknown_tenant_has_no_key(client):
    r = client.get("/tenants/nosuch/ticket-key")
    assert r.status_code == 404 and r.json()["code"] == "tenant_not_found"
    assert client.get("/tenants/Not_A_Slug/ticket-key").status_code == 422
