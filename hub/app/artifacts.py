"""Is a version's artifact URL reachable? Checked from the hub itself when a rollout starts.

A wrong ``artifact_base_url`` (the API moved to another port, say) made every device fail its download, and
the rollout rolled the candidate back as if the model were bad. The hub fetches the URL it is about to hand
out first, and refuses the rollout with the reason when it does not answer 200.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from hub.errors import ArtifactUnreachable

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
FIX = "set artifact_base_url (FLEETLOOP_HUB_ARTIFACT_BASE_URL) to the hub API URL devices can reach"


def check_artifact(version: str, url: str, *, timeout_s: float = TIMEOUT_S) -> None:
    """Fetch `url` (only its status and headers); ArtifactUnreachable naming the URL and the cause unless 200."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if not Path(unquote(parts.path)).exists():
            raise ArtifactUnreachable(f"the artifact of {version} is not at {url}; {FIX}")
        return
    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            code = response.status_code
    except httpx.HTTPError as exc:
        raise ArtifactUnreachable(f"devices could not fetch {version}: {url} does not answer from the hub "
                                  f"({exc or type(exc).__name__}); {FIX}") from None
    if code != 200:
        raise ArtifactUnreachable(f"devices could not fetch {version}: {url} answers HTTP {code}; {FIX}")
    log.debug("artifact of %s reachable at %s", version, url)
