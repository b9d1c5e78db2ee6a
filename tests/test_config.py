"""Config layering, provenance, validation and the LR schedule."""
import math
from pathlib import Path

import pytest
import torch

from mmrl.cli import main as cli_main
from mmrl.config import RunArgs, config_hash, resolve_config
from mmrl.engine.args import parse_run_args
from mmrl.engine.schedule import ProtocolLR
from mmrl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def args_for(dataset="eurosat", trainer="MMRL", cfg="vit_b16", opts=("TASK", "B2N"), seed=1):
    return RunArgs(trainer=trainer, seed=seed, dataset_config_file=str(REPO / f"configs/datasets/{dataset}.yaml"),
                   config_file=str(REPO / f"configs/trainers/{trainer}/{cfg}.yaml"), opts=list(opts))


def test_layers_in_order_and_overrides():
    r = resolve_config(args_for())
    assert r.cfg.TRAINER.MMRL.REP_DIM == 2048 and r.cfg.TRAINER.MMRL.REG_WEIGHT == 0.01
    assert r.provenance["TRAINER.MMRL.REP_DIM"].startswith("override:MMRL.yaml[B2N/EuroSAT]")
    assert r.cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and tuple(r.cfg.INPUT.RRCROP_SCALE) == (0.5, 1)
    # CLI opts beat the overrides file (the authors' CD scripts rely on this)
    r = resolve_config(args_for(opts=("TASK", "CD", "TRAINER.MMRL.REP_DIM", "512")))
    assert r.cfg.TRAINER.MMRL.REP_DIM == 512 and r.provenance["TRAINER.MMRL.REP_DIM"] == "cli opts"
    # the YAML value survives only where no override exists (ImageNet variants)
    assert resolve_config(args_for("imagenet_a", cfg="vit_b16_cross_datasets", opts=("TASK", "CD"))
                          ).cfg.TRAINER.MMRL.REG_WEIGHT == 0.2


def test_mmrlpp_overrides_depend_on_task():
    b2n = resolve_config(args_for("oxford_pets", "MMRLpp")).cfg.TRAINER.MMRLpp
    assert (b2n.BETA, b2n.REG_WEIGHT) == (0.7, 0.01)
    cd = resolve_config(args_for("oxford_pets", "MMRLpp", "vit_b16_cross_datasets", ("TASK", "CD"))).cfg.TRAINER.MMRLpp
    assert (cd.BETA, cd.REG_WEIGHT) == (0.6, 0.2)
    fs = resolve_config(args_for("dtd", "MMRLpp", "vit_b16_few_shot", ("TASK", "FS"))).cfg
    assert (fs.OPTIM.MAX_EPOCH, fs.OPTIM.LR, fs.TRAINER.MMRLpp.REG_WEIGHT) == (100, 0.002, 7.0)


def test_errors_name_the_key():
    with pytest.raises(ConfigError, match="TASK is not set"):
        resolve_config(args_for(opts=()))
    with pytest.raises(ConfigError, match="OPTIM.LRR.*Did you mean OPTIM.LR"):
        resolve_config(args_for(opts=("TASK", "B2N", "OPTIM.LRR", "0.1")))
    with pytest.raises(ConfigError, match="OPTIM.MAX_EPOCH must be of type int"):
        resolve_config(args_for(opts=("TASK", "B2N", "OPTIM.MAX_EPOCH", "ten")))
    with pytest.raises(ConfigError, match="REP_LAYERS must be sorted"):
        resolve_config(args_for(opts=("TASK", "B2N", "TRAINER.MMRL.REP_LAYERS", "[8, 6]")))
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(RunArgs(config_file="nope.yaml", opts=["TASK", "B2N"]))


def test_seed_zero_is_a_seed():
    assert resolve_config(args_for(seed=0)).cfg.SEED == 0
    assert resolve_config(args_for(seed=None)).cfg.SEED == -1


def test_hash_ignores_locations_not_content():
    a = args_for()
    b = args_for(opts=("TASK", "B2N"))
    b.root, b.output_dir = "/elsewhere", "/out/x"
    assert config_hash(resolve_config(a).cfg) == config_hash(resolve_config(b).cfg)
    c = args_for(opts=("TASK", "B2N", "OPTIM.LR", "0.002"))
    assert config_hash(resolve_config(a).cfg) != config_hash(resolve_config(c).cfg)


def test_explain_shows_override_layer(capsys):
    argv = ["--trainer", "MMRL", "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
            "--config-file", str(REPO / "configs/trainers/MMRL/vit_b16.yaml"), "TASK", "B2N"]
    assert cli_main(["explain", *argv]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("TRAINER.MMRL.REP_DIM"))
    assert "2048" in line and "override:MMRL.yaml[B2N/EuroSAT]" in line


def test_explain_help_shows_its_own_flags(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["explain", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mmrl explain") and "--changed" in out and "--json" in out


def test_train_py_flags_parse():
    a = parse_run_args(["--root", "D", "--seed", "0", "--trainer", "MMRL", "--eval-only", "--model-dir", "m",
                        "--load-epoch", "10", "DATASET.NUM_SHOTS", "16", "TASK", "B2N"])
    assert (a.seed, a.eval_only, a.model_dir, a.load_epoch) == (0, True, "m", 10)
    assert a.opts == ["DATASET.NUM_SHOTS", "16", "TASK", "B2N"]


@pytest.mark.parametrize("max_epoch,warmup,table", [
    (10, 1, [1e-5, 1e-3, 9.7553e-4, 9.0451e-4, 7.9389e-4, 6.5451e-4, 5.0e-4, 3.4549e-4, 2.0611e-4, 9.5492e-5]),
    (5, 1, [1e-5, 1e-3, 9.0451e-4, 6.5451e-4, 3.4549e-4]),
    (1, 0, [1e-3]),
])
def test_lr_table(max_epoch, warmup, table):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = ProtocolLR(opt, 1e-3, max_epoch, warmup, 1e-5)
    got = []
    for _ in range(max_epoch):
        got.append(opt.param_groups[0]["lr"])
        sched.step()
    assert all(math.isclose(g, t, rel_tol=1e-4) for g, t in zip(got, table))


def test_lr_few_shot_tail():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = ProtocolLR(opt, 1e-3, 50, 1, 1e-5)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert math.isclose(lrs[2], 9.9901e-4, rel_tol=1e-4)
    assert math.isclose(lrs[48], 8.8564e-6, rel_tol=1e-4) and math.isclose(lrs[49], 3.9426e-6, rel_tol=1e-4)


def test_enumerated_keys_are_validated_with_the_config():
    bad = {"OPTIM.NAME": "rmsprop", "OPTIM.LR_SCHEDULER": "multi_step", "OPTIM.WARMUP_TYPE": "linear",
           "TEST.EVALUATOR": "Fancy", "TEST.SPLIT": "val", "DATALOADER.TRAIN_X.SAMPLER": "RandomDomainSampler",
           "INPUT.INTERPOLATION": "area", "TRAINER.MMRL.PREC": "fp8", "INPUT.TRANSFORMS": "['colorjitter']"}
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=rf"{key}.*(set by cli opts).*(allowed|supported)"):
            resolve_config(args_for(opts=("TASK", "B2N", key, value)))
    # an evaluation builds no optimiser: Dassl's default "adam" stays legal there
    ev = args_for(opts=("TASK", "B2N", "OPTIM.NAME", "adam", "OPTIM.LR_SCHEDULER", "single_step"))
    ev.eval_only = True
    assert resolve_config(ev).cfg.OPTIM.NAME == "adam"
    # a warm-up type matters only with a warm-up
    assert resolve_config(args_for(opts=("TASK", "B2N", "OPTIM.WARMUP_EPOCH", "0", "OPTIM.WARMUP_TYPE", "linear")))


def test_schedule_refuses_with_the_config_error_type():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match="OPTIM.LR_SCHEDULER"):
        ProtocolLR(opt, 1e-3, 10, 1, 1e-5, "constant", "single_step")


def test_changed_keys_lists_what_the_hash_covers():
    from mmrl.config import changed_keys, config_to_dict
    a = resolve_config(args_for()).cfg
    b = resolve_config(args_for(opts=("TASK", "B2N", "OPTIM.LR", "0.5", "DATASET.ROOT", "/elsewhere"))).cfg
    assert changed_keys(config_to_dict(a), b) == [("OPTIM.LR", 0.001, 0.5)]  # DATASET.ROOT is not identity
    assert changed_keys(config_to_dict(a), a) == []
    assert config_hash(a) != config_hash(b)


def test_train_epoch_zero_is_applied_then_refused():
    with pytest.raises(ConfigError, match=r"OPTIM.MAX_EPOCH must be >= 1; got 0 \(set by cli --train-epoch\)"):
        resolve_config(RunArgs(**{**vars(args_for()), "train_epoch": 0}))


@pytest.mark.parametrize("flag", ["--root", "--output-dir", "--model-dir", "--config-file", "--backbone"])
def test_empty_named_flags_are_refused(flag):
    with pytest.raises(ConfigError, match=f"{flag} was given an empty value"):
        parse_run_args([flag, "", "TASK", "B2N"])
    with pytest.raises(ConfigError, match="--allow-unfinished only applies to --eval-only"):
        parse_run_args(["--allow-unfinished", "TASK", "B2N"])


@pytest.mark.parametrize("opts", [("MODEL.HEAD.NAME", "mlp"), ("DATASET.SOURCE_DOMAINS", "['a']"),
                                  ("RESUME", "/elsewhere/run")])
def test_dassl_options_mmrl_would_ignore_are_refused(opts):
    with pytest.raises(ConfigError, match=rf"{opts[0]} .*(ignored|--output-dir)"):
        resolve_config(args_for(opts=("TASK", "B2N", *opts)))
    with pytest.raises(ConfigError, match="--head"):
        resolve_config(parse_run_args(["--head", "mlp", "--trainer", "MMRL", "--config-file",
                                       str(REPO / "configs/trainers/MMRL/vit_b16.yaml"), "TASK", "B2N"]))
