"""The method registry: names, a config block per method, what a run's hash covers."""
import pytest
from yacs.config import CfgNode as CN

from mmrl.config import RunArgs, config_hash, get_default_config, resolve_config
from mmrl.errors import ConfigError
from mmrl.trainers import Method, registry

from engine_helpers import REPO


def _block(**kw):
    node = CN()
    for k, v in kw.items():
        setattr(node, k, v)
    return node


class _Shared(Method):
    """Two methods reading one block, each with its own defaults (as CoOp and KgCoOp do)."""
    model_folder = "x"

    def __init__(self, name, ctx_init):
        self.name, self.ctx_init = name, ctx_init

    @property
    def block_key(self):
        return "SHARED"

    def config_block(self):
        return _block(CTX_INIT=self.ctx_init, PREC="fp16")


@pytest.fixture
def more_methods(monkeypatch):
    have = {n: registry.get(n) for n in registry.names()}
    extra = {"PhraseInit": _Shared("PhraseInit", ""), "FlagInit": _Shared("FlagInit", False)}
    monkeypatch.setattr(registry, "_methods", {**have, **extra})


def _mmrl_args(*opts):
    return RunArgs(trainer="MMRL", dataset_config_file=str(REPO / "configs/datasets/eurosat.yaml"),
                   config_file=str(REPO / "configs/trainers/MMRL/vit_b16.yaml"), opts=["TASK", "B2N", *opts])


def test_adding_a_method_keeps_every_existing_runs_hash(more_methods, monkeypatch):
    with_more = config_hash(resolve_config(_mmrl_args()).cfg)
    monkeypatch.undo()
    assert "PhraseInit" not in registry.names()
    assert config_hash(resolve_config(_mmrl_args()).cfg) == with_more


def test_a_shared_block_has_the_running_methods_defaults(more_methods):
    assert get_default_config("PhraseInit").TRAINER.SHARED.CTX_INIT == ""
    assert get_default_config("FlagInit").TRAINER.SHARED.CTX_INIT is False


def test_a_runs_hash_covers_its_own_block_not_another_methods(more_methods):
    base = resolve_config(_mmrl_args()).cfg
    other = resolve_config(_mmrl_args("TRAINER.SHARED.PREC", "fp32")).cfg
    own = resolve_config(_mmrl_args("TRAINER.MMRL.ALPHA", "0.5")).cfg
    assert config_hash(other) == config_hash(base) != config_hash(own)


def test_an_unknown_trainer_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"'MRL' is not known; choose one of .*MMRL.*Did you mean MMRL"):
        resolve_config(RunArgs(trainer="MRL", opts=["TASK", "B2N"]))


def test_a_second_method_under_a_taken_name_is_refused():
    class Impostor(Method):
        name, model_folder = "MMRL", "elsewhere"
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(Impostor())


def test_the_built_in_order_does_not_depend_on_which_method_is_imported_first():
    """Tables list methods in the registry's order: importing one method's module first (as a test
    module or a user script may) must not move it to the front."""
    import subprocess
    import sys
    code = ("import mmrl.trainers.mmrl; from mmrl.trainers import registry; "
            "print(' '.join(registry.names()))")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from mmrl.trainers import registry
    built_in = [m.name for m in registry.methods() if type(m).__module__ in registry.BUILTIN]
    assert first == built_in and first[0] == "ZeroshotCLIP"
