"""Who is calling: the identity a request was authenticated as, for the audit trail.

:data:`CALLER` holds it for the request being served (REST: set by
:class:`vectorizer.api.auth.AuthMiddleware` around the rest of the app; gRPC: by the key
interceptor around the call). It names the credential, never the secret:
``"api-key"`` (the full key), ``"read-only-api-key"``, ``"jwt:<subject>"`` (a JWT's ``sub``,
or ``"jwt"`` without one), or ``"anonymous"`` when the API has no keys.
"""

from __future__ import annotations

from contextvars import ContextVar

ANONYMOUS = "anonymous"
FULL_KEY = "api-key"
READ_ONLY_KEY = "read-only-api-key"

CALLER: ContextVar[str] = ContextVar("vectorizer_caller", default=ANONYMOUS)
