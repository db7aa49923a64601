"""Settings of the console (`HubSettings.console`): the key that signs session cookies, and how long they last."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

MIN_SECRET_CHARS = 32


class ConsoleSettings(BaseModel):
    """The web console served by the hub at ``/console``."""

    model_config = ConfigDict(extra="forbid")

    secret: SecretStr | None = Field(
        default=None, description="signs session cookies (at least 32 characters; from the env or the settings file, "
        "never the repository). Default: derived from the API tokens (every worker of one hub derives the same; "
        "changing a token signs everyone out); in dev mode without tokens, a random key per process")
    session_max_age_s: int = Field(default=12 * 3600, ge=60, le=30 * 86400,
                                   description="a session ends this long after sign-in")
    poll_s: float = Field(default=2.0, gt=0, le=300, description="how often live parts (rollout progress) refresh")

    def secret_problems(self) -> list[str]:
        """A console secret too short to sign with (refused outside dev mode)."""
        if self.secret is not None and len(self.secret.get_secret_value()) < MIN_SECRET_CHARS:
            return [f"console.secret is shorter than {MIN_SECRET_CHARS} characters: make one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"]
        return []
