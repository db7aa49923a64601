"""The model registry: signed versions on disk under one root, their records and audit trail in the store.

Every version the hub ever makes is kept, rejected ones too. A version directory is copied in through a
staging directory, signed (Ed25519 over the exact manifest bytes) and only then recorded, so a record
always points at a complete, signed artifact. That signature says "made by this hub"; approval for the fleet
is the signed assignment (`signed_assignment`), which the hub issues only for versions the gate (or an
operator) did not reject: an agent serves nothing without one. A rollout takes only a candidate whose gate
passed or was skipped with a reason (`skip_gate`, audited): `hub.registry.approval`.
"""

from __future__ import annotations

import gzip
import io
import logging
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hub.errors import RegistryError
from hub.registry.approval import UNAPPROVED, rollout_refusal, skipped_gate
from hub.registry.signing import SigningKey
from hub.store import ModelVersionRow, RegistryStore
from shared.errors import ModelError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, ModelManifest, load_manifest, sha256_bytes
from shared.messages import Assign
from shared.wire import replace, to_dict

log = logging.getLogger(__name__)

ARTIFACT_FILES = (MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE)


class Registry:
    def __init__(
        self, store: RegistryStore, root: Path, key: SigningKey, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.root = root
        self.key = key
        self.clock = clock
        root.mkdir(parents=True, exist_ok=True)

    def register(
        self, version_dir: Path, *, actor: str, reason: str, status: str = "candidate", trigger_id: str | None = None,
    ) -> ModelVersionRow:
        """Copy a version directory into the registry, sign it and record it."""
        from models.version import read_version  # hub side: the recipe library verifies sha256

        manifest, _ = read_version(version_dir)
        if self.store.model_version(manifest.version) is not None:
            raise RegistryError(f"model version {manifest.version} is already registered")
        target = self.root / manifest.version
        if target.exists():
            raise RegistryError(f"{target} exists but is not registered: remove it or pick another version")
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.", dir=self.root))
        try:
            for name in (MODEL_FILE, MANIFEST_FILE):
                shutil.copyfile(version_dir / name, staging / name)
            signature = self.key.sign_version(staging).read_text().strip()
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        now = self.clock()
        row = ModelVersionRow(
            version=manifest.version, parent_version=manifest.parent_version, status=status, created_ts=now,
            updated_ts=now, created_by=manifest.provenance.created_by, reason=reason,
            trigger_id=manifest.provenance.trigger_id or trigger_id, sha256=manifest.onnx_sha256,
            signature=signature, manifest=to_dict(manifest),
        )
        self.store.save_model_version(row, actor=actor)
        log.info("registered model %s (%s) by %s: %s", manifest.version, status, actor, reason)
        return row

    def get(self, version: str) -> ModelVersionRow:
        row = self.store.model_version(version)
        if row is None:
            raise RegistryError(f"no model version {version!r} in the registry")
        return row

    def manifest(self, version: str) -> ModelManifest | None:
        """For drift references and training parents: the manifest of a registered version."""
        row = self.store.model_version(version)
        return None if row is None else load_manifest(row.manifest)

    def transition(
        self, version: str, status: str, *, actor: str, action: str, reason: str,
        details: Mapping[str, Any] | None = None, gate: Mapping[str, Any] | None = None,
    ) -> ModelVersionRow:
        self.get(version)
        return self.store.set_model_status(version, status, actor=actor, action=action, reason=reason,
                                           ts=self.clock(), details=details, gate=gate)

    def activate(
        self, version: str, *, actor: str, action: str, reason: str, details: Mapping[str, Any] | None = None,
        retire: Iterable[str] | None = None, retire_action: str = "retire", retire_reason: str | None = None,
    ) -> list[str]:
        """Make `version` the fleet's version: activate it, then retire the other active ones (or just `retire`).

        Activating first, there is never a moment without an active version (a retrain or a rollout start
        then would find none); in the moment two rows say ``active``, `active_version` already names
        `version`, the one activated last. Already active: only the others are retired, so calling it again
        finishes what a crash between the writes left. Returns the versions it retired.
        """
        if self.get(version).status != "active":
            self.transition(version, "active", actor=actor, action=action, reason=reason, details=details)
        old = {r.version for r in self.store.model_versions(status="active", limit=1000)} - {version}
        if retire is not None:
            old &= set(retire)
        why = retire_reason or f"replaced by {version}"
        for other in sorted(old):
            self.transition(other, "retired", actor=actor, action=retire_action, reason=why, details=details)
        return sorted(old)

    def skip_gate(self, version: str, *, actor: str, reason: str) -> ModelVersionRow:
        """Clear a candidate for rollout without judging it: recorded as its gate decision and in its audit trail.

        A version the gate could not judge (``insufficient_data``: too few labels, e.g. one with regime statistics
        learned from the field before the technicians' labels came back) may be cleared too; one it found worse
        (``rejected``) may not."""
        if not actor or not reason.strip():
            raise RegistryError("skipping the gate needs an actor and a reason")
        row = self.get(version)
        if row.status not in ("candidate", "insufficient_data"):
            raise RegistryError(f"{version} is {row.status}: only a candidate's gate, or one the gate could not judge "
                                "(insufficient_data), can be skipped")
        gate = skipped_gate(actor=actor, reason=reason, ts=self.clock(), incumbent=self.active_version())
        log.warning("gate of %s skipped by %s: %s", version, actor, reason)
        return self.transition(version, "candidate", actor=actor, action="gate_skipped", reason=reason, gate=gate)

    def rollout_refusal(self, version: str) -> str | None:
        """Why `version` may not be rolled out as a candidate (no passed or skipped gate…); None when it may."""
        return rollout_refusal(self.get(version))

    def active_version(self) -> str | None:
        """The version the whole fleet should serve: the `active` one activated last (`activate`)."""
        rows = self.store.model_versions(status="active", limit=1000)
        return max(rows, key=lambda r: (r.updated_ts, r.created_ts)).version if rows else None

    def path(self, version: str) -> Path:
        self.get(version)
        return self.root / version

    def artifact(self, version: str) -> bytes:
        """The version as a deterministic tar.gz (model.onnx, manifest.json, manifest.sig): what devices fetch."""
        directory = self.path(version)
        buffer = io.BytesIO()
        # gzip's header carries a timestamp: 0, or the bytes would change every second ("w:gz" stamps now)
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w") as tar:
            for name in ARTIFACT_FILES:
                data = (directory / name).read_bytes()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def approved(self, version: str) -> bool:
        """Whether devices may get `version`: registered and not rejected (by the gate or an operator)."""
        row = self.store.model_version(version)
        return row is not None and row.status not in UNAPPROVED

    def signed_assignment(self, assign: Assign, *, device_id: str, ttl_s: float, rollback: bool = False) -> Assign:
        """`assign` for one device, approved: the next per-device counter (persisted; at least the time in ms,
        so a restored hub database still counts up), an expiry `ttl_s` from now, signed with the hub key."""
        now = self.clock()
        counter = self.store.next_assign_counter(device_id, floor=int(now * 1000))
        unsigned = replace(assign, device_id=device_id, ts=now, expires=now + ttl_s, counter=counter, rollback=rollback)
        return self.key.sign_assignment(unsigned)

    def assignment(self, version: str, *, mode: str, url: str, rollout_id: str | None = None) -> Assign:
        """The retained hub → device message that tells a device to serve (or shadow) `version` (unsigned until
        `signed_assignment`); ModelError for a version that was never approved or no longer verifies."""
        row = self.get(version)
        if row.status in UNAPPROVED:
            raise ModelError(f"{version} is {row.status}: a version that was not approved is never assigned")
        model = (self.root / version / MODEL_FILE).read_bytes()
        if sha256_bytes(model) != row.sha256:
            raise ModelError(f"registry artifact of {version} no longer matches its sha256: refusing to assign it")
        return Assign(ts=self.clock(), version=version, mode=mode, sha256=row.sha256,  # type: ignore[arg-type]
                      signature=row.signature, url=url, rollout_id=rollout_id)
