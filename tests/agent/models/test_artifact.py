"""A fetched artifact is checked against its assignment: version, sha256 and signature must all agree."""

from __future__ import annotations

import shutil

import pytest

from agent.models.artifact import check_artifact
from hub.registry.signing import SigningKey
from shared.errors import ModelIntegrityError
from shared.manifest import SIGNATURE_FILE
from shared.wire import replace
from tests.agent.models.test_manager import assignment


def test_check_artifact_compares_the_assignment_manifest_and_file(tmp_path, v2, key):
    good = assignment(v2)
    check_artifact(v2, good, key.verifier())
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch: the assignment says"):
        check_artifact(v2, replace(good, sha256="0" * 64), key.verifier())
    with pytest.raises(ModelIntegrityError, match="assigned v9"):
        check_artifact(v2, replace(good, version="v9"), key.verifier())
    with pytest.raises(ModelIntegrityError, match="bad signature"):
        check_artifact(v2, good, SigningKey.generate().verifier())
    # an artifact without manifest.sig takes the assignment's signature
    bare = shutil.copytree(v2, tmp_path / "bare")
    (bare / SIGNATURE_FILE).unlink()
    check_artifact(bare, good, key.verifier())
    assert (bare / SIGNATURE_FILE).read_text().strip() == good.signature
