"""CLIP weights resolution (files, cache, checksum, download) and checkpoint import."""
import http.server
import pickle
import threading
from functools import partial

import pytest
import torch

from mmrl.clip import backbone
from mmrl.engine import checkpoint as ckpt
from mmrl.engine import rundir
from mmrl.errors import CheckpointError, WeightsError
from mmrl.models.mmrl import ArchSpec, MultiModalRepresentationLearner
from mmrl.models.prompts import Prompts
from mmrl.trainers.mmrl import MMRL, authors_arch, trainable_state
from mmrl.utils.download import sha256_file

MMRL_FOLDER = MMRL.model_folder


@pytest.fixture(scope="module")
def openai_style_file(tmp_path_factory, tiny_clip):
    """A plain state dict with OpenAI key names (open_clip's CLIP uses them)."""
    path = tmp_path_factory.mktemp("w") / "ViT-B-16.pt"
    torch.save(tiny_clip.state_dict(), path)
    return path


@pytest.mark.usefixtures("tiny_weights_pass_as_openai")
def test_explicit_weights_file_is_taken_as_given(openai_style_file, tiny_clip):
    model, info = backbone.load_backbone("ViT-B/16", weights=str(openai_style_file))
    assert info.source == "explicit-file" and info.sha256 == sha256_file(openai_style_file)
    assert torch.equal(model.visual.proj, tiny_clip.visual.proj)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.usefixtures("tiny_weights_pass_as_openai")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_openai_file_builds_the_same_model_as_open_clip_does(tmp_path, tiny_clip, dtype):
    """Construction without initial draws or the fp16 round trip ends with what open_clip's own
    build (random init, fp16 modules, then fp32 and the file reloaded) ends with: every
    parameter and buffer, the text tower's causal mask included."""
    from open_clip.model import build_model_from_openai_state_dict
    sd = {k: v.to(dtype) for k, v in tiny_clip.state_dict().items()}
    path = tmp_path / "ViT-B-16.pt"
    torch.save(sd, path)
    model, _ = backbone.load_backbone("ViT-B/16", weights=str(path))
    plain = build_model_from_openai_state_dict(dict(sd), quick_gelu=True, cast_dtype=None).float()
    plain.load_state_dict(sd)
    ours = dict(model.named_parameters()) | dict(model.named_buffers())
    theirs = dict(plain.named_parameters()) | dict(plain.named_buffers())
    assert ours.keys() == theirs.keys() and "attn_mask" in ours
    for k, v in theirs.items():
        assert ours[k].dtype == torch.float32 and torch.equal(ours[k], v), k
    assert torch.nn.init.normal_(torch.zeros(1000)).abs().sum() > 0  # the initialisers are back


def test_corrupt_and_truncated_files_are_named(tmp_path, openai_style_file):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="garbage.pt is corrupt or truncated"):
        backbone.load_backbone("ViT-B/16", weights=str(bad))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(openai_style_file.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="cut.pt is corrupt or truncated"):
        backbone.load_backbone("ViT-B/16", weights=str(cut))
    with pytest.raises(WeightsError, match="does not exist"):
        backbone.load_backbone("ViT-B/16", weights=str(tmp_path / "missing.pt"))


def test_cache_file_is_verified_against_url_hash(tmp_path):
    url, fname, sha = backbone.openai_url("ViT-B/16")
    assert sha == "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f" and fname == "ViT-B-16.pt"
    (tmp_path / fname).write_bytes(b"truncated download")
    with pytest.raises(WeightsError, match="does not match"):
        backbone.load_backbone("ViT-B/16", cache_dir=str(tmp_path))


def _serve(folder):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_download_verifies_and_offline_names_path_and_url(tmp_path, openai_style_file, monkeypatch):
    sha = sha256_file(openai_style_file)
    served = tmp_path / "srv" / sha
    served.mkdir(parents=True)
    (served / "ViT-B-16.pt").write_bytes(openai_style_file.read_bytes())
    srv = _serve(tmp_path / "srv")
    try:
        base = f"http://127.0.0.1:{srv.server_port}"
        monkeypatch.setattr(backbone, "openai_url", lambda name: (f"{base}/{sha}/ViT-B-16.pt", "ViT-B-16.pt", sha))
        cache = tmp_path / "cache"
        _, info = backbone.load_backbone("ViT-B/16", cache_dir=str(cache))
        assert info.source == "openai-file" and (cache / "ViT-B-16.pt").is_file() and info.sha256 == sha
        wrong = "0" * 64
        monkeypatch.setattr(backbone, "openai_url", lambda name: (f"{base}/{sha}/ViT-B-16.pt", "ViT-B-16.pt", wrong))
        with pytest.raises(WeightsError, match="SHA256"):
            backbone.load_backbone("ViT-B/16", cache_dir=str(tmp_path / "cache2"))
        monkeypatch.setattr(backbone, "openai_url",
                            lambda name: ("http://127.0.0.1:9/x/ViT-B-16.pt", "ViT-B-16.pt", sha))
        with pytest.raises(WeightsError) as e:
            backbone.load_backbone("ViT-B/16", cache_dir=str(tmp_path / "cache3"))
        assert str(tmp_path / "cache3" / "ViT-B-16.pt") in str(e.value) and "http://127.0.0.1:9" in str(e.value)
    finally:
        srv.shutdown()


def test_unknown_backbone_name():
    with pytest.raises(WeightsError, match="not known"):
        backbone.load_backbone("ViT-X/99")


# ---------------------------------------------------------------------------------------------

class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def authors_file(path, model, frozen_clip, extra=None):
    """A Dassl checkpoint as the authors' code writes it: full model state dict incl. frozen CLIP."""
    sd = {f"image_encoder.{k[len('visual.'):]}": v for k, v in frozen_clip.state_dict().items() if k.startswith("visual.")}
    sd.update({k: v.clone() for k, v in model.state_dict().items()})
    sd["prompt_learner.prompt_embeddings"] = torch.zeros(3, 4)
    # Dassl pickles its warm-up scheduler whose state holds the cosine successor object
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    obj = {"state_dict": sd, "epoch": 10, "optimizer": opt.state_dict(),
           "scheduler": {"successor": cosine, "last_epoch": 10}, "val_result": None}
    if extra:
        obj.update(extra)
    torch.save(obj, path)


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_authors_checkpoint_imports(tmp_path, tiny_clip, trainer):
    prompts = Prompts.build(["a", "b", "c"], "a photo of a {}.")
    src = MultiModalRepresentationLearner(ArchSpec(trainer=trainer, backbone="tiny-test", rep_dim=64), tiny_clip, prompts)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    folder = tmp_path / "run" / MMRL_FOLDER
    folder.mkdir(parents=True)
    authors_file(folder / "model.pth.tar-10", src, tiny_clip)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(folder / "model.pth.tar-10", weights_only=True)  # why a restricted unpickler is needed
    path = rundir.find_checkpoint(tmp_path / "run")
    sd, arch, epoch = ckpt.read_for_eval(path)
    arch = authors_arch(sd, ArchSpec(trainer=trainer, backbone="tiny-test").to_dict())
    assert arch["rep_dim"] == 64 and arch["trainer"] == trainer and epoch == 10
    dst = MultiModalRepresentationLearner(ArchSpec.from_dict(arch), tiny_clip, prompts)
    dst.load_state_dict(trainable_state(sd, dict(dst.state_dict())))
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {}, "scheduler": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load global"):
        ckpt.load_checkpoint_file(path)


def test_shape_mismatch_names_key_and_cause(tiny_clip):
    prompts = Prompts.build(["a", "b"], "{}")
    big = MultiModalRepresentationLearner(ArchSpec(rep_dim=2048, backbone="tiny-test"), tiny_clip, prompts)
    small = MultiModalRepresentationLearner(ArchSpec(rep_dim=512, backbone="tiny-test"), tiny_clip, prompts)
    with pytest.raises(CheckpointError, match=r"compound_rep_tokens.*\(5, 2048\) vs model \(5, 512\).*REP_DIM"):
        trainable_state(big.state_dict(), dict(small.state_dict()))


def test_load_epoch_and_missing(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        rundir.find_checkpoint(tmp_path / "nope")
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        rundir.find_checkpoint(tmp_path / "run")
    for e in (5, 10):
        ckpt.save_checkpoint(tmp_path / "run", folder=MMRL_FOLDER, state_dict={"x": torch.ones(1) * e}, epoch=e, arch={})
    assert rundir.find_checkpoint(tmp_path / "run").name == "model.pth.tar-10"
    assert rundir.find_checkpoint(tmp_path / "run", 5).name == "model.pth.tar-5"
    with pytest.raises(CheckpointError, match="--load-epoch 7"):
        rundir.find_checkpoint(tmp_path / "run", 7)


def test_checkpoint_pointer_outside_the_folder_is_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path / "run", folder=MMRL_FOLDER, state_dict={"x": torch.ones(1)}, epoch=1, arch={})
    (tmp_path / "run" / MMRL_FOLDER / "checkpoint").write_text("../../elsewhere/model.pth.tar-9\n")
    with pytest.raises(CheckpointError, match="not a checkpoint file in"):
        rundir.find_checkpoint(tmp_path / "run")


def _ctx(trainer, clip, classnames=("a", "b"), opts=()):
    """What build_for_eval needs to build ``trainer``'s model on ``clip`` (its B2N config, tiny-test, ``opts``)."""
    from mmrl.config import resolve_config
    from mmrl.engine.args import parse_run_args
    from mmrl.sweep.plan import cfg_for, trainer_config_file
    from mmrl.trainers import BuildContext
    cfg = resolve_config(parse_run_args([
        "--trainer", trainer, "--config-file", trainer_config_file(trainer, cfg_for("b2n", trainer, "eurosat")),
        "MODEL.BACKBONE.NAME", "tiny-test", "TASK", "B2N", *opts])).cfg
    return BuildContext(cfg=cfg, classnames=list(classnames), template="a photo of a {}.",
                        device=torch.device("cpu"), backbone=lambda name: clip)


@pytest.mark.parametrize("trained, evaluated", [("KgCoOp", "CoOp"), ("CoOp", "KgCoOp"), ("PromptSRC", "IVLP"),
                                                ("IVLP", "PromptSRC")])
def test_our_checkpoint_of_another_method_sharing_the_model_folder_is_refused(tiny_clip, trained, evaluated):
    """KgCoOp and CoOp (prompt_learner), IVLP and PromptSRC (VLPromptLearner) share a model folder
    and their learned tensors' names: our file says which method trained it."""
    from mmrl.trainers import EvalCheckpoint, registry
    src = registry.get(trained)
    model = src.build(_ctx(trained, tiny_clip), for_training=False)
    ck = EvalCheckpoint(path=f"/runs/{trained}/model.pth.tar-5", epoch=5, arch=src.arch(model),
                        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()})
    assert ck.arch["trainer"] == trained
    with pytest.raises(CheckpointError, match=f"{ck.path} holds a {trained} model but --trainer is {evaluated}"):
        registry.get(evaluated).build_for_eval(_ctx(evaluated, tiny_clip), ck)


def test_our_class_specific_context_for_another_class_count_is_refused_by_name(tiny_clip):
    from mmrl.models.coop import PromptArch
    from mmrl.trainers import EvalCheckpoint, registry
    coop = registry.get("CoOp")
    arch = PromptArch(trainer="CoOp", backbone="tiny-test", n_ctx=4, csc=True)
    ck = EvalCheckpoint(path="/runs/coop/model.pth.tar-5", epoch=5, arch=arch.to_dict(),
                        state_dict={"prompt_learner.ctx": torch.zeros(3, 4, 64)})
    trained_with = ("TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.CSC", "True", "TRAINER.COOP.N_CTX", "4")
    assert coop.build_for_eval(_ctx("CoOp", tiny_clip, ("a", "b", "c"), trained_with), ck) is not None
    with pytest.raises(CheckpointError, match=r"/runs/coop/model.pth.tar-5.*prompt_learner.ctx.*\(3, 4, 64\)"):
        coop.build_for_eval(_ctx("CoOp", tiny_clip, ("a", "b"), trained_with), ck)


def test_authors_checkpoint_of_another_backbone_is_refused(tmp_path, tiny_clip):
    """The authors' file holds the frozen image encoder it was trained with: its shapes must be the
    backbone's (ViT-B/32 and ViT-B/16 have the same widths, so the learned tensors alone load on either)."""
    from mmrl.trainers import EvalCheckpoint
    prompts = Prompts.build(["a", "b"], "a photo of a {}.")
    src = MultiModalRepresentationLearner(ArchSpec(trainer="MMRL", backbone="tiny-test"), tiny_clip, prompts)
    authors_file(tmp_path / "model.pth.tar-10", src, tiny_clip)
    sd, arch, _ = ckpt.read_for_eval(tmp_path / "model.pth.tar-10")
    ctx = _ctx("MMRL", tiny_clip)
    assert MMRL().build_for_eval(ctx, EvalCheckpoint(str(tmp_path), dict(sd), arch, 10)) is not None
    pos = sd["image_encoder.positional_embedding"]
    sd["image_encoder.positional_embedding"] = torch.zeros(pos.shape[0] * 4 - 3, pos.shape[1])  # smaller patches
    with pytest.raises(CheckpointError, match=r"image_encoder.positional_embedding.*tiny-test"):
        MMRL().build_for_eval(ctx, EvalCheckpoint(str(tmp_path), sd, arch, 10))
    sd["image_encoder.positional_embedding"] = pos
    sd["image_encoder.conv1.weight"] = sd["image_encoder.conv1.weight"].half()  # an fp16 copy: the same weights
    assert MMRL().build_for_eval(ctx, EvalCheckpoint(str(tmp_path), dict(sd), arch, 10)) is not None
    sd["image_encoder.conv1.weight"] = sd["image_encoder.conv1.weight"].float() * 1.1  # another pretraining
    with pytest.raises(CheckpointError, match=r"its frozen image_encoder.conv1.weight differs from backbone tiny-test"):
        MMRL().build_for_eval(ctx, EvalCheckpoint(str(tmp_path), sd, arch, 10))


def test_a_weights_file_of_another_release_is_refused_naming_the_shapes(openai_style_file):
    """The model is built from the file's shapes: without the check a ViT-B/32 file given as
    ViT-B/16 would train, and be recorded, as ViT-B/16."""
    with pytest.raises(WeightsError, match=r"is not a ViT-B/16 CLIP: its patch size 32 \(not 16\), vision width 64 "
                                           r"\(not 768\)") as e:
        backbone.load_backbone("ViT-B/16", weights=str(openai_style_file))
    assert str(openai_style_file) in str(e.value) and "MODEL.BACKBONE.NAME" in str(e.value)


def test_the_shapes_read_from_a_built_clip_are_its_configs(tiny_clip):
    from mmrl.clip.archs import TINY_ARCHS
    a = TINY_ARCHS["tiny-test"]
    assert backbone.architecture_of(tiny_clip) == {
        "image size": a["image_size"], "patch size": a["patch_size"], "vision width": a["vision_width"],
        "vision layers": a["layers"], "text width": a["text_width"], "text layers": a["layers"],
        "embedding": a["embed_dim"]}


@pytest.mark.slow
def test_a_vit_b16_is_a_vit_b16_and_not_a_vit_b32(vitb16_clip):
    shapes = backbone.architecture_of(vitb16_clip)
    assert shapes == backbone.openai_architecture("ViT-B/16")
    other = backbone.openai_architecture("ViT-B/32")
    assert {k for k in shapes if shapes[k] != other[k]} == {"patch size"}


@pytest.mark.parametrize("trainer, key, value, field", [
    ("MMRL", "TRAINER.MMRL.REP_DIM", "256", "rep_dim"),
    ("MMRL", "TRAINER.MMRL.REP_LAYERS", "[7, 8]", "rep_layers"),
    ("MMRLpp", "TRAINER.MMRLpp.RES_LORA_DIM", "8", "res_lora_dim"),
    ("CoOp", "TRAINER.COOP.CTX_INIT", "a photo", "ctx_init"),
    ("CoCoOp", "TRAINER.COCOOP.CTX_INIT", "a photo", "ctx_init"),
    ("IVLP", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "3", "depth_vision"),
    ("MaPLe", "TRAINER.MAPLE.PROMPT_DEPTH", "3", "depth_text"),
    ("PromptSRC", "TRAINER.PROMPTSRC.N_CTX_TEXT", "2", "n_ctx_text"),
    ("CoOp", "MODEL.BACKBONE.NAME", "demo-tiny", "backbone"),
])
def test_an_evaluation_config_describing_another_model_is_built_as_the_checkpoint_and_says_so(
        tiny_clip, caplog, trainer, key, value, field):
    """The model comes from the file's architecture (never from, e.g., a CD target's per-dataset
    overrides); the config keys it did not use are logged and go into the record's checkpoint notes."""
    from mmrl.trainers import EvalCheckpoint, registry
    method = registry.get(trainer)
    model = method.build(_ctx(trainer, tiny_clip), for_training=False)

    def checkpoint():
        return EvalCheckpoint(path=f"/runs/{trainer}/model.pth.tar-5", epoch=5, arch=method.arch(model),
                              state_dict={k: v.detach().clone() for k, v in model.state_dict().items()})
    same = checkpoint()
    method.build_for_eval(_ctx(trainer, tiny_clip), same)
    assert "config_not_used" not in same.notes
    other = checkpoint()
    built = method.build_for_eval(_ctx(trainer, tiny_clip, opts=(key, value)), other)
    assert method.arch(built) == other.arch  # as trained
    note = other.notes["config_not_used"]
    assert field in note and note[field]["checkpoint"] == other.arch[field] and note[field]["config"] != other.arch[field]
    assert f"{field} {other.arch[field]!r} (config: " in caplog.text
