"""Console sessions: an API token exchanged, once, for a signed cookie; and the CSRF token of every form.

The cookie holds no token: only the role, who signed in (tokens carry only a role, so the person names
themselves, as the API's ``technician_id`` does), a fingerprint of the token, the CSRF token and the time,
signed with itsdangerous (HMAC-SHA1 over a key derived from the console secret) and dated, so it expires
after ``console.session_max_age_s``. Every request checks the fingerprint against the hub's current tokens:
removing a token ends its sessions at once.

The signing key is ``console.secret`` when set, else derived from the API tokens (HMAC-SHA256, as the MQTT share
group is derived from the password): every worker of one hub agrees without another secret to provision,
and outside dev mode tokens are required and long, so the key is too. In dev mode without tokens the key
is random per process (a restart signs everyone out).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from hub.app.settings import ROLES, HubSettings, Role

COOKIE = "fleetloop_console"
NONCE_COOKIE = "fleetloop_console_sign_in"
KEY_CONTEXT = b"fleetloop console session v1"
OPEN_ACCESS = "open-access"
"""The fingerprint of a dev-mode session on a hub without tokens (every caller is an operator there)."""


@dataclass(frozen=True)
class Session:
    """Who is signed in: the role of the token they presented, their own name, and their forms' CSRF token."""

    role: Role
    who: str
    token_id: str
    csrf: str
    since: float


def token_id(token: str) -> str:
    """A fingerprint of `token` to keep in the cookie (the token itself never leaves the sign-in request)."""
    return hashlib.sha256(KEY_CONTEXT + token.encode()).hexdigest()[:32]


def session_key(settings: HubSettings) -> bytes:
    """The key that signs cookies (see the module docstring)."""
    if settings.console.secret is not None:
        return settings.console.secret.get_secret_value().encode()
    if settings.tokens:
        material = "\n".join(sorted(f"{t}\t{r}" for t, r in settings.tokens.items())).encode()
        return hmac.new(material, KEY_CONTEXT, hashlib.sha256).digest()
    return secrets.token_bytes(32)


class SessionCodec:
    """Signs sessions into cookie values and reads them back (None when forged, expired or stale)."""

    def __init__(self, key: bytes, tokens: Mapping[str, Role], max_age_s: int) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="fleetloop-console-session")
        self._nonces = URLSafeTimedSerializer(key, salt="fleetloop-console-sign-in")
        self._roles = {token_id(t): r for t, r in tokens.items()}
        self.max_age_s = max_age_s

    def sign_in_nonce(self) -> tuple[str, str]:
        """A fresh sign-in form nonce and its signed cookie value: the form's CSRF token before a session exists
        (double submit: a page elsewhere can neither read the cookie nor set it)."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._nonces.dumps(nonce)

    def nonce(self, cookie: str | None) -> str | None:
        """The sign-in nonce a cookie carries (signed by us, at most an hour old), else None."""
        if cookie is None:
            return None
        try:
            nonce = self._nonces.loads(cookie, max_age=3600)
        except BadSignature:
            return None
        return nonce if isinstance(nonce, str) else None

    def nonce_ok(self, cookie: str | None, presented: str | None) -> bool:
        """Whether the sign-in form's nonce is the one its cookie carries."""
        nonce = self.nonce(cookie)
        return nonce is not None and presented is not None and secrets.compare_digest(nonce.encode(),
                                                                                     presented.encode())

    def new(self, role: Role, who: str, token: str | None, now: float) -> Session:
        return Session(role=role, who=who, token_id=OPEN_ACCESS if token is None else token_id(token),
                       csrf=secrets.token_urlsafe(24), since=now)

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps(asdict(session))

    def loads(self, value: str) -> Session | None:
        try:
            data = self._serializer.loads(value, max_age=self.max_age_s)
            session = Session(**data)
        except (BadSignature, TypeError):
            return None
        if session.role not in ROLES:
            return None
        if self._roles:  # the token must still exist with the same role
            return session if self._roles.get(session.token_id) == session.role else None
        return session if session.token_id == OPEN_ACCESS else None


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether a form's CSRF token is the session's (constant time)."""
    return presented is not None and secrets.compare_digest(session.csrf.encode(), presented.encode())
