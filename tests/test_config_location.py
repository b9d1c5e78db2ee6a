"""The config YAMLs ship inside the package and resolve from any working directory."""
import shutil
from pathlib import Path

import pytest

import mmrl
from mmrl.config import RunArgs, packaged_configs, resolve_config
from mmrl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _elsewhere(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MMRL_CONFIGS", raising=False)


def eurosat(trainer="MMRL", trainer_cfg="configs/trainers/MMRL/vit_b16.yaml"):
    return RunArgs(trainer=trainer, seed=1, dataset_config_file="configs/datasets/eurosat.yaml",
                   config_file=trainer_cfg, opts=["TASK", "B2N"])


def test_the_shipped_configs_are_package_data_and_the_repository_links_to_them():
    assert packaged_configs() == Path(mmrl.__file__).parent / "configs"
    assert (REPO / "configs").resolve() == packaged_configs().resolve()


def test_the_authors_relative_paths_resolve_to_the_shipped_files_from_another_cwd():
    r = resolve_config(eurosat())
    assert r.cfg.TRAINER.MMRL.REP_DIM == 2048 and r.cfg.TRAINER.MMRL.REG_WEIGHT == 0.01
    assert r.provenance["INPUT.SIZE"] == f"trainer:{packaged_configs() / 'trainers/MMRL/vit_b16.yaml'}"


def test_an_existing_relative_file_wins_over_the_shipped_one(tmp_path):
    mine = tmp_path / "configs/trainers/MMRL/vit_b16.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text((packaged_configs() / "trainers/MMRL/vit_b16.yaml").read_text().replace("MAX_EPOCH: 10", "MAX_EPOCH: 3"))
    r = resolve_config(eurosat())
    assert r.cfg.OPTIM.MAX_EPOCH == 3 and r.provenance["OPTIM.MAX_EPOCH"] == "trainer:configs/trainers/MMRL/vit_b16.yaml"


def test_a_missing_overrides_file_is_an_error_naming_it(tmp_path, monkeypatch):
    copy = tmp_path / "my_configs"
    shutil.copytree(packaged_configs(), copy)
    (copy / "overrides" / "MMRL.yaml").unlink()
    monkeypatch.setenv("MMRL_CONFIGS", str(copy))
    # a file the user's tree lacks is the packaged one
    r = resolve_config(eurosat())
    assert r.provenance["TRAINER.MMRL.REG_WEIGHT"].startswith("override:MMRL.yaml")
    monkeypatch.setattr("mmrl.config.files.packaged_configs", lambda: copy)
    with pytest.raises(ConfigError, match=f"overrides file not found: {copy / 'overrides' / 'MMRL.yaml'}"):
        resolve_config(eurosat())
    # ZeroshotCLIP has no per-dataset settings: no file is looked for
    zs = resolve_config(eurosat("ZeroshotCLIP"))
    assert not any(layer.startswith("override:") for layer in zs.provenance.values())


def test_an_installed_copy_inside_another_repository_records_no_commit_of_that_repository(tmp_path):
    import subprocess
    from mmrl import __version__
    from mmrl.engine.runenv import code_version
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "other project"], check=True)
    site = tmp_path / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    assert code_version(site) == __version__
    assert code_version(REPO).startswith(f"{__version__}+")  # the checkout: its commit
