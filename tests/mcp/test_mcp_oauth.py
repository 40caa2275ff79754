"""The whole OAuth flow as an MCP client does it, with the official MCP Python SDK's
`OAuthClientProvider` against Larder's protected API (`/api/me`, the simplest protected route):
discovery from the 401 (RFC 9728 protected-resource metadata, RFC 8414 server metadata),
dynamic registration (RFC 7591), PKCE S256 authorization with the person's consent, code
exchange, refresh-token rotation, reuse detection and revocation.

The "browser" is a signed-in requests session: it opens the authorization URL the SDK hands
over, reads the consent page and presses Allow (or Deny), and the redirect it gets back is what
the SDK's callback receives.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
import urllib.parse

import httpx2
import pytest
import requests
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.auth.exceptions import OAuthFlowError
from mcp.shared.auth import (AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata,
                             OAuthToken)

REDIRECT = "http://127.0.0.1:38111/callback"


class MemoryStorage(TokenStorage):
    def __init__(self):
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


def hidden_fields(page: str) -> dict[str, str]:
    return {m.group(1): html.unescape(m.group(2))
            for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}


class Browser:
    """The person's browser: signed in to Larder, answers the consent page."""

    def __init__(self, person, decision: str = "allow"):
        self.person = person
        self.decision = decision
        self.redirect: str | None = None
        self.consent_page: str | None = None

    async def open(self, authorization_url: str) -> None:
        def visit():
            page = self.person.http.get(authorization_url, timeout=30, allow_redirects=False)
            assert page.status_code == 200, (page.status_code, page.text[:500])
            self.consent_page = page.text
            fields = hidden_fields(page.text)
            fields["decision"] = self.decision
            answer = self.person.http.post(f"{self.person.base}/authorize", data=fields, timeout=30,
                                           allow_redirects=False)
            assert answer.status_code == 303, (answer.status_code, answer.text[:500])
            self.redirect = answer.headers["location"]
        await asyncio.to_thread(visit)

    async def callback(self) -> AuthorizationCodeResult:
        assert self.redirect and self.redirect.startswith(REDIRECT), self.redirect
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.redirect).query))
        if "error" in q:
            raise OAuthFlowError(f"{q['error']}: {q.get('error_description')}")
        return AuthorizationCodeResult(code=q["code"], state=q.get("state"), iss=q.get("iss"))


def provider(base: str, storage: MemoryStorage, browser: Browser) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url=f"{base}/api/me",
        client_metadata=OAuthClientMetadata(
            client_name="SDK test client",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )


async def get_me(base: str, auth: OAuthClientProvider) -> httpx2.Response:
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        return await http.get(f"{base}/api/me")


def form_post(base: str, path: str, data: dict) -> requests.Response:
    return requests.post(f"{base}{path}", data=data, timeout=30)


def test_an_mcp_client_discovers_registers_and_is_authorized_with_no_configuration(larder, owner):
    storage, browser = MemoryStorage(), Browser(owner)
    res = asyncio.run(get_me(larder.base, provider(larder.base, storage, browser)))
    assert res.status_code == 200, res.text
    me = res.json()
    assert (me["id"], me["name"], me["auth"]) == (owner.id, owner.name, "oauth")
    assert me["client_id"] == storage.client.client_id

    # The person saw who asked and where they would be sent.
    assert "SDK test client" in browser.consent_page
    assert "http://127.0.0.1:38111" in browser.consent_page
    # The SDK registered itself as a public client and got tokens bound to the API resource.
    assert storage.client.client_id.startswith("lc_")
    assert storage.tokens.token_type.lower() == "bearer"
    assert storage.tokens.refresh_token
    # The connected app is listed for its person, and not for anyone else.
    page = owner.request("GET", "/settings/connections")
    assert "SDK test client" in page.text and storage.client.client_id in page.text


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_family(larder, owner):
    storage, browser = MemoryStorage(), Browser(owner)
    auth = provider(larder.base, storage, browser)
    assert asyncio.run(get_me(larder.base, auth)).status_code == 200
    first = storage.tokens

    # Let the SDK refresh on its own: it believes the access token expired.
    auth.context.token_expiry_time = time.time() - 10
    browser.redirect = None
    res = asyncio.run(get_me(larder.base, auth))
    assert res.status_code == 200, res.text
    assert browser.redirect is None, "a refresh, not a new authorization"
    second = storage.tokens
    assert second.refresh_token != first.refresh_token, "refresh tokens rotate"
    assert second.access_token != first.access_token

    # Replaying the rotated-away refresh token is refused and revokes the whole family.
    client_id = storage.client.client_id
    replay = form_post(larder.base, "/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": first.refresh_token, "client_id": client_id})
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert "already used" in replay.json()["error_description"]
    assert replay.headers["cache-control"] == "no-store"
    newest = form_post(larder.base, "/oauth/token", {
        "grant_type": "refresh_token", "refresh_token": second.refresh_token, "client_id": client_id})
    assert newest.json()["error"] == "invalid_grant", "the newest refresh token died with its family"
    dead = requests.get(f"{larder.base}/api/me", timeout=30,
                        headers={"Authorization": f"Bearer {second.access_token}"})
    assert dead.status_code == 401, "and so did its access token"
    assert 'error="invalid_token"' in dead.headers["www-authenticate"]


def test_revocation_endpoint_and_the_settings_page_end_access(larder, owner):
    storage, browser = MemoryStorage(), Browser(owner)
    assert asyncio.run(get_me(larder.base, provider(larder.base, storage, browser))).status_code == 200
    client_id = storage.client.client_id
    bearer = {"Authorization": f"Bearer {storage.tokens.access_token}"}
    assert requests.get(f"{larder.base}/api/me", headers=bearer, timeout=30).status_code == 200

    # RFC 7009: revoking the refresh token ends the grant, its access token included.
    res = form_post(larder.base, "/oauth/revoke", {
        "token": storage.tokens.refresh_token, "token_type_hint": "refresh_token", "client_id": client_id})
    assert res.status_code == 200, res.text
    assert requests.get(f"{larder.base}/api/me", headers=bearer, timeout=30).status_code == 401
    # Unknown tokens are not an error (and change nothing).
    assert form_post(larder.base, "/oauth/revoke", {"token": "nonsense", "client_id": client_id}).status_code == 200

    # A second grant, disconnected by the person in Settings.
    storage2, browser2 = MemoryStorage(), Browser(owner)
    assert asyncio.run(get_me(larder.base, provider(larder.base, storage2, browser2))).status_code == 200
    bearer2 = {"Authorization": f"Bearer {storage2.tokens.access_token}"}
    page = owner.request("GET", "/settings/connections").text
    ids = re.findall(r'hx-delete="/settings/connections/([0-9a-f-]+)"', page)
    assert len(ids) >= 1
    for grant in ids:
        res = owner.request("DELETE", f"/settings/connections/{grant}")
        assert res.status_code == 200, res.text
    assert "No connected apps" in owner.request("GET", "/settings/connections").text
    res = requests.get(f"{larder.base}/api/me", headers=bearer2, timeout=30)
    assert res.status_code == 401
    assert "revoked" in res.json()["detail"]


def test_a_person_who_denies_sends_the_app_away_with_access_denied(larder, owner):
    storage, browser = MemoryStorage(), Browser(owner, decision="deny")
    with pytest.raises(Exception) as raised:
        asyncio.run(get_me(larder.base, provider(larder.base, storage, browser)))
    assert "access_denied" in str(raised.value)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(browser.redirect).query))
    assert q["error"] == "access_denied"
    assert q["iss"] == larder.base
    assert storage.tokens is None


def test_tokens_act_for_their_person_only(larder, owner, bob):
    storage, browser = MemoryStorage(), Browser(bob)
    res = asyncio.run(get_me(larder.base, provider(larder.base, storage, browser)))
    assert res.json()["name"] == "bob"
    bearer = {"Authorization": f"Bearer {storage.tokens.access_token}"}
    # Bob's token reads Bob's catalog; the owner's connected apps do not list Bob's grant.
    assert requests.get(f"{larder.base}/api/catalog", headers=bearer, timeout=30).status_code == 200
    assert storage.client.client_id not in owner.request("GET", "/settings/connections").text
    # The owner cannot disconnect Bob's grant either.
    page = bob.request("GET", "/settings/connections").text
    (grant,) = re.findall(r'hx-delete="/settings/connections/([0-9a-f-]+)"', page)
    res = owner.request("DELETE", f"/settings/connections/{grant}")
    assert "already disconnected" in res.text
    assert requests.get(f"{larder.base}/api/me", headers=bearer, timeout=30).status_code == 200
