"""What a long process accumulates per job or run: descriptors, log handlers, child processes, cache files."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def module_scoped_env():
    """What a module-scoped fixture (a shared training, say) sees of the cache settings."""
    return os.environ.get("MMRL_CACHE"), os.environ.get("MMRL_CLIP_CACHE")


def test_module_scoped_fixtures_write_to_the_isolated_caches(module_scoped_env, tmp_path_factory):
    # pytest sets up wider-scoped fixtures first: a function-scoped isolation came too late for them,
    # and their test-image caches piled up in ~/.cache/mmrl/testcache, one per pytest temp folder
    base = tmp_path_factory.getbasetemp()
    cache, clip_cache = module_scoped_env
    assert cache is not None and Path(cache).is_relative_to(base)
    assert clip_cache is not None and Path(clip_cache).is_relative_to(base)
