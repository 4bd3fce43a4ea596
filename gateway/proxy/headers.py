"""Header rules for the proxy: pure functions over ASGI header lists, compiled once at start.

Names are compared after lower-casing and treating "_" as "-", because many backends (CGI, WSGI,
PHP, nginx with underscores_in_headers) read ``X_Forwarded_User`` as ``X-Forwarded-User``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.config import Network, ServerSettings
from gateway.http import REQUEST_ID, HeaderList, RawHeaders, is_trusted
from gateway.http.headers import normalize
from gateway.policy import Principal
from gateway.proxy.links import REWRITTEN, rewrite_header

HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
        b"te", b"trailer", b"transfer-encoding", b"upgrade",
    }
)
# Routing headers that could steer the app if believed; only a trusted proxy's copies pass.
ROUTING = frozenset(
    {
        b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
        b"x-forwarded-prefix", b"x-forwarded-uri", b"x-forwarded-server", b"x-forwarded-ssl",
        b"x-original-url", b"x-original-uri", b"x-rewrite-url", b"x-real-ip", b"forwarded",
        b"x-forwarded-scheme", b"x-scheme", b"x-url-scheme",
    }
)
# Set by the gateway itself or meaningless across it; never passed on from a client.
# (Expect: the gateway reads the body itself, so a 100-continue handshake upstream would only stall.
# X-Request-ID: the gateway sends its own, which keeps the client's only when that is a sane token.
# Content-Length: the gateway writes its own from what it read (proxy/framing.py); Content_Length
# too, which a backend reading "_" as "-" would frame the body by.)
ALWAYS_STRIPPED = frozenset({b"remote-addr", b"host", b"expect", b"content-length", REQUEST_ID})

# Every X-Forwarded-* name the gateway does not set itself is removed, from trusted proxies too:
# apps and frameworks read X-Forwarded-Email, -Groups, -Uid, -Access-Token ... as identity. Only
# routing names (ROUTING above) pass, and only from a trusted proxy.
FORWARDED_FAMILY = b"x-forwarded-"

# Other gateways' identity headers (normalised names). An app written for one of them believes
# these, so they are removed whoever sends them, trusted proxy or not.
FOREIGN_IDENTITY = frozenset(
    {
        # oauth2-proxy (pass_user_headers, pass_access_token, GAP-Auth/GAP-Signature); this
        # gateway's own X-Forwarded-Mfa (DESIGN 7). The X-Forwarded- family rule covers them too.
        b"x-forwarded-user", b"x-forwarded-email", b"x-forwarded-groups", b"x-forwarded-preferred-username",
        b"x-forwarded-access-token", b"x-forwarded-mfa", b"gap-auth", b"gap-signature",
        # This gateway's signed assertion (DESIGN 7): only the gateway may ever send it.
        b"x-gateway-assertion",
        # Kong (key-auth, oauth2, oidc plugins)
        b"x-anonymous-consumer", b"x-userinfo",
        # Keycloak Gatekeeper / Louketo proxy
        b"x-auth-username", b"x-auth-userid", b"x-auth-email", b"x-auth-roles", b"x-auth-groups", b"x-auth-subject",
        # Google Cloud IAP's signed header (its user headers are a prefix below)
        b"x-goog-iap-jwt-assertion",
        # IIS / Azure Application Request Routing: the client certificate
        b"x-arr-clientcert",
        # Shibboleth SP with ShibUseHeaders: Auth-Type and the usual attribute-map ids (as the
        # nginx-shibboleth guides clear them)
        b"auth-type", b"eppn", b"affiliation", b"unscoped-affiliation", b"entitlement", b"targeted-id",
        b"persistent-id", b"pairwise-id", b"subject-id", b"transient-name", b"mail", b"displayname",
    }
)
# Open-ended families of the same: any name starting with one of these.
FOREIGN_IDENTITY_PREFIXES = (
    b"x-auth-request-",  # oauth2-proxy's set_xauthrequest: User, Email, Groups, Preferred-Username, Access-Token
    b"remote-",  # Authelia: Remote-User, -Groups, -Email, -Name; CGI's REMOTE_USER read from a header
    b"x-remote-",  # Apache-style X-Remote-User, X-Remote-Group
    b"x-pomerium-",  # Pomerium: X-Pomerium-Jwt-Assertion, X-Pomerium-Claim-*
    b"x-vouch-",  # Vouch Proxy: X-Vouch-User, X-Vouch-Success, X-Vouch-Idp-*
    b"x-authentik-",  # Authentik: X-authentik-username, -groups, -email, -uid, -jwt, -meta-*
    b"cf-access-",  # Cloudflare Access: Cf-Access-Authenticated-User-Email, Cf-Access-Jwt-Assertion
    b"x-webauth-",  # Grafana, Gitea and other apps' auth-proxy mode: X-WEBAUTH-USER, -EMAIL, -NAME, -ROLE
    b"x-consumer-",  # Kong: X-Consumer-ID, -Custom-ID, -Username, -Groups
    b"x-authenticated-",  # Kong: X-Authenticated-Userid, -Scope, -Groups
    b"x-credential-",  # Kong: X-Credential-Identifier, -Username
    b"x-goog-authenticated-",  # Google Cloud IAP: X-Goog-Authenticated-User-Email, -Id
    b"x-amzn-oidc-",  # AWS ALB authentication: X-Amzn-Oidc-Identity, -Data, -Accesstoken
    b"x-ms-client-principal",  # Azure App Service authentication: X-MS-CLIENT-PRINCIPAL, -NAME, -ID, -IDP
    b"x-ms-token-",  # Azure App Service token store: X-MS-TOKEN-AAD-ACCESS-TOKEN & co.
    b"tailscale-",  # Tailscale serve: Tailscale-User-Login, -Name, -Profile-Pic
    b"shib-",  # Shibboleth SP: Shib-Session-ID, Shib-Identity-Provider, Shib-Authentication-Instant ...
    b"mellon-",  # Apache mod_auth_mellon: MELLON_NAME_ID and the attributes
    b"oidc-",  # Apache mod_auth_openidc: OIDC_CLAIM_*, OIDC_access_token, OIDC_id_token_payload
    b"x-ssl-",  # client certificates from nginx/HAProxy recipes: X-SSL-Client-Cert, -DN, -Verify, X-SSL-Cert
    b"ssl-client-",  # Apache mod_ssl variables exported as headers: SSL_CLIENT_CERT, SSL_CLIENT_S_DN
    b"x-client-cert",  # X-Client-Cert (Google Cloud load balancers, ingresses), X-Client-Cert-Chain-Verified
)


def connection_tokens(headers: RawHeaders) -> frozenset[bytes]:
    """Header names a Connection header nominates as hop-by-hop (RFC 9110 section 7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(normalize(token.strip()) for token in value.split(b",") if token.strip())
    return frozenset(tokens)


def strip_cookies(header: bytes, names: frozenset[bytes]) -> bytes | None:
    """The Cookie header without the gateway's own cookies; None when nothing is left."""
    kept = [part.strip() for part in header.split(b";") if part.strip()]
    kept = [part for part in kept if part.partition(b"=")[0].strip() not in names]
    return b"; ".join(kept) if kept else None


HSTS = (b"strict-transport-security", b"max-age=31536000")


def transport_security_headers(server: ServerSettings) -> tuple[tuple[bytes, bytes], ...]:
    """Headers for every response, decided once at start: HSTS when browsers reach us over HTTPS,
    that is when the gateway serves TLS itself or its declared public_url is https (a terminator
    in front). Over plain HTTP a browser ignores HSTS, and a localhost trial must stay reachable."""
    over_https = server.tls or (server.public_url or "").startswith("https://")
    return (HSTS,) if server.hsts and over_https else ()


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """Everything the per-request functions need, computed once from the settings."""

    user_header: bytes
    roles_header: bytes
    cookie_names: frozenset[bytes]
    upstream_host: bytes  # sent as Host unless preserve_host
    preserve_host: bool
    trusted_proxies: tuple[Network, ...]
    # Added to every response the browser gets, proxied or the gateway's own (HSTS); the app's
    # copies of these names are replaced, not doubled (and of X-Request-ID, which the gateway sets).
    response_headers: tuple[tuple[bytes, bytes], ...] = ()
    # [proxy] strip_headers: more names removed from every request; a trailing "*" makes a prefix.
    strip_headers: tuple[bytes, ...] = ()
    # Derived once here, not per request: lower-cased cookie names.
    cookie_names_folded: frozenset[bytes] = field(init=False)
    replaced_response_names: frozenset[bytes] = field(init=False)
    # Every exact name removed from every request, and the prefixes checked after ROUTING.
    stripped: frozenset[bytes] = field(init=False)
    stripped_prefixes: tuple[bytes, ...] = field(init=False)

    def __post_init__(self) -> None:
        identity = frozenset({normalize(self.user_header), normalize(self.roles_header)})
        extra = {normalize(name) for name in self.strip_headers}
        exact = {name for name in extra if not name.endswith(b"*")}
        prefixes = tuple(sorted(name[:-1] for name in extra if name.endswith(b"*")))
        # The prefix test comes after ROUTING (which the built-in X-Forwarded- family must not
        # swallow), so a configured prefix that covers a routing name strips it here, by name.
        exact.update(name for name in ROUTING if name.startswith(prefixes))
        object.__setattr__(self, "stripped",
                           frozenset(HOP_BY_HOP | ALWAYS_STRIPPED | identity | FOREIGN_IDENTITY | exact))
        object.__setattr__(self, "stripped_prefixes", (FORWARDED_FAMILY, *FOREIGN_IDENTITY_PREFIXES, *prefixes))
        object.__setattr__(self, "cookie_names_folded", frozenset(n.lower() for n in self.cookie_names))
        object.__setattr__(self, "replaced_response_names",
                           frozenset({REQUEST_ID, *(n.lower() for n, _ in self.response_headers)}))


def upstream_request_headers(
    headers: RawHeaders,
    rules: HeaderRules,
    *,
    principal: Principal | None,
    client: str | None,
    scheme: str,
    request_id: bytes | None = None,
) -> HeaderList:
    """The request headers sent upstream.

    Removes hop-by-hop headers (and those named in Connection), the client's body framing (the
    caller adds the gateway's own Content-Length), every client copy of an identity
    header, every X-Forwarded-* the gateway does not set, other gateways' identity headers, the
    names of [proxy] strip_headers, Quart's synthetic Remote-Addr, the client's X-Request-ID, routing
    headers from untrusted clients and the gateway's own cookies; then adds Host, X-Forwarded-*,
    the request id and the identity of the signed-in user.
    """
    trusted = is_trusted(client, rules.trusted_proxies)
    nominated = connection_tokens(headers)
    stripped_names = rules.stripped
    stripped_prefixes = rules.stripped_prefixes
    out: HeaderList = []
    host = b""
    forwarded: dict[bytes, bytes] = {}
    for name, value in headers:
        key = normalize(name)
        if key == b"host":
            host = value
        if key in stripped_names or key in nominated:
            continue
        if key in ROUTING:
            # Keep a trusted proxy's values (exact names only) to extend them below.
            if trusted and name.lower() == key:
                forwarded[key] = forwarded[key] + b", " + value if key in forwarded else value
            continue
        if key.startswith(stripped_prefixes):
            continue
        if key == b"cookie":
            stripped = strip_cookies(value, rules.cookie_names)
            if stripped is not None:
                out.append((b"cookie", stripped))
            continue
        out.append((name.lower(), value))
    address = (client or "").encode()
    out.append((b"host", host if rules.preserve_host and host else rules.upstream_host))
    if trusted:
        for key in (b"forwarded", b"x-real-ip", b"x-forwarded-prefix"):
            if key in forwarded:
                out.append((key, forwarded[key]))
    prior = forwarded.get(b"x-forwarded-for")
    out.append((b"x-forwarded-for", prior + b", " + address if prior else address))
    out.append((b"x-forwarded-proto", forwarded.get(b"x-forwarded-proto", scheme.encode())))
    out.append((b"x-forwarded-host", forwarded.get(b"x-forwarded-host", host)))
    if request_id is not None:
        out.append((REQUEST_ID, request_id))
    if principal is not None:
        out.append((rules.user_header.lower(), principal.user.encode()))
        out.append((rules.roles_header.lower(), ",".join(sorted(principal.roles)).encode()))
    return out


BODILESS = frozenset({204, 304})


def downstream_response_headers(
    headers: Iterable[tuple[bytes, bytes]],
    rules: HeaderRules,
    *,
    upstream_origin: str,
    public_origin: str,
    status: int = 200,
    request_id: bytes | None = None,
) -> HeaderList:
    """The upstream's response headers as sent to the browser.

    Drops hop-by-hop headers and any Set-Cookie for the gateway's own cookies (the app must not be
    able to plant or clear the gateway's session), rewrites the URLs in Location, Content-Location,
    Link and Refresh that point at the upstream's own address to the gateway's (see links.py),
    and adds the gateway's own response headers (HSTS)
    and the request id (the app's own X-Request-ID is replaced: the gateway's is the one it logged).
    """
    headers = list(headers)
    nominated = connection_tokens(headers)
    replaced = rules.replaced_response_names
    # A 204 or 304 has no body whatever its Content-Length says (RFC 9110 8.6); passed on, the
    # server would wait for those bytes and break the browser's connection.
    bodiless = status in BODILESS
    out: HeaderList = []
    for name, value in headers:
        key = name.lower()
        if key in HOP_BY_HOP or key in nominated or key == b"date" or key in replaced:
            continue
        if bodiless and key == b"content-length":
            continue
        if key == b"set-cookie" and _plants_gateway_cookie(value, rules.cookie_names_folded):
            continue
        if key in REWRITTEN:
            value = rewrite_header(key, value, upstream_origin, public_origin)
        out.append((key, value))
    out.extend(rules.response_headers)
    if request_id is not None:
        out.append((REQUEST_ID, request_id))
    return out


def _plants_gateway_cookie(set_cookie: bytes, folded_names: frozenset[bytes]) -> bool:
    """True for a Set-Cookie that names a gateway cookie (in any case) or has no name at all.

    A nameless cookie (``=gateway_session=x`` or ``gateway_session``) is sent back by browsers as
    its bare value, which reads as ``gateway_session=x``: the app could plant a session that way.
    """
    pair = set_cookie.split(b";", 1)[0]
    if b"=" not in pair:
        return True
    name = pair.partition(b"=")[0].strip()
    return not name or name.lower() in folded_names
