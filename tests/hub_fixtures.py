"""Fixtures isolating the Hugging Face cache and kvmm's converted-weights cache.

Loaded as a pytest plugin from conftest.py.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_kvmm_cache(tmp_path, monkeypatch):
    """Every test converts into its own cache folder, never into ~/.cache/kvmm."""
    cache = tmp_path / "kvmm_cache"
    monkeypatch.setenv("KVMM_CACHE", str(cache))
    return cache


@pytest.fixture
def kvmm_cache(_isolated_kvmm_cache):
    return _isolated_kvmm_cache


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache under a temporary HF_HOME, in offline mode.

    Returns the hub cache folder (``$HF_HOME/hub``) to install checkpoints into with
    ``hf_checkpoints.install_in_hf_cache``.
    """
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    hub = home / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these once at import time.
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub
