"""kvmm.utils.hub: offline lookups in the Hugging Face cache agree with huggingface_hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hf_checkpoints as hfc
from kvmm.errors import HubUnavailableError
from kvmm.utils import hub

REPO = "someone/some-model"


@pytest.fixture
def repo_files(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    (folder / "spiece.model").write_bytes(b"not really a vocabulary")
    return folder


def test_offline_lookup_matches_hf_hub_download(repo_files, hf_cache):
    import huggingface_hub

    commit = hfc.install_in_hf_cache(repo_files, REPO, hf_cache, blobs=True)
    # A second branch pointing at the same snapshot.
    (hf_cache / f"models--{REPO.replace('/', '--')}" / "refs" / "dev").write_text(commit)
    for revision in (None, "main", "dev", commit):
        for name in ("config.json", "spiece.model"):
            ours = hub._cached_offline(REPO, name, revision)
            theirs = huggingface_hub.hf_hub_download(REPO, name, revision=revision)
            assert ours == theirs and Path(ours).read_bytes() == (repo_files / name).read_bytes()
            assert hub.hub_file(REPO, name, revision=revision) == theirs
    # Anything not in the cache is left to huggingface_hub, which raises as before.
    assert hub._cached_offline(REPO, "model.safetensors", None) is None
    assert hub._cached_offline(REPO, "config.json", "no-such-branch") is None
    assert hub._cached_offline("nobody/nothing", "config.json", None) is None
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        hub.hub_file(REPO, "model.safetensors")


def test_online_lookups_go_through_huggingface_hub(repo_files, hf_cache, monkeypatch):
    """With the Hub allowed, huggingface_hub is asked (it may find a newer revision)."""
    from huggingface_hub import constants

    hfc.install_in_hf_cache(repo_files, REPO, hf_cache)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hub._cached_offline(REPO, "config.json", None) is None


def test_offline_named_load_does_not_import_the_download_machinery(tmp_path, hf_cache):
    """A load from the local cache, offline, reads the cache layout itself: importing
    huggingface_hub.file_download (its HTTP client and the rest) cost 0.07-0.16 s of a
    0.2-0.4 s cached load."""
    import tiny_family

    folder = tmp_path / "tiny"
    hfc.save_checkpoint(hfc.build_siglip(hfc.TINY), folder)
    hfc.install_in_hf_cache(folder, tiny_family.TINY_REPO, hf_cache)
    script = (
        "import sys, tiny_family\n"
        "tiny_family.build_tiny(weights='test_32')\n"
        "tiny_family.build_tiny(weights='test_32')\n"  # the cached load
        "print('file_download' in ' '.join(sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent)] + sys.path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
