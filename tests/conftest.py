import os

import pytest
import torch

# Keep every test on small thread counts (OMP_NUM_THREADS=1 on a shared machine: a contended
# two-thread step can be 50x slower) and away from the user's caches.
torch.set_num_threads(min(2, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
    # session scope: pytest sets up module-scoped fixtures (shared trainings) before function-scoped
    # ones, and those would write test-image caches into the user's ~/.cache/mmrl
    cache = tmp_path_factory.getbasetemp() / "mmrl-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMRL_CACHE", str(cache))
        mp.setenv("MMRL_CLIP_CACHE", str(cache / "clip"))
        yield


@pytest.fixture(scope="session")
def tiny_clip():
    from mmrl.clip.backbone import load_backbone
    return load_backbone("tiny-test")[0]


@pytest.fixture
def tiny_weights_pass_as_openai(monkeypatch, tiny_clip):
    """tiny-test state dicts stand in for OpenAI release files (ViT-B/16 ...): the release's shapes
    are taken to be tiny-test's."""
    from mmrl.clip import backbone
    shapes = backbone.architecture_of(tiny_clip)
    monkeypatch.setattr(backbone, "openai_architecture", lambda name: shapes)


@pytest.fixture(scope="session")
def vitb16_clip():
    """ViT-B/16-sized CLIP with random weights (no download)."""
    from mmrl.clip.backbone import load_backbone
    torch.manual_seed(0)
    return load_backbone("random:ViT-B-16")[0]
