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


# A stand-in train.py: lists the descriptors it inherited, then writes a complete record.
_CHILD = r"""
import json, os, sys
out = sys.argv[sys.argv.index("--output-dir") + 1]
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass  # the listing's own descriptor, closed by now
os.makedirs(out, exist_ok=True)
with open(os.environ["FD_LOG"], "a") as f:
    f.write(json.dumps({"out": out, "fds": fds, "env": os.environ.get("MMRL_RUN_LOCK_FDS")}) + "\n")
with open(os.path.join(out, "record.json"), "w") as f:
    json.dump({"schema": 1, "status": "complete"}, f)
"""


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("executor", ["local", "gpus"])
def test_a_sweep_keeps_no_descriptor_per_job_and_hands_each_child_only_its_lock(tmp_path, monkeypatch, executor):
    from mmrl.engine.rundir import lock_path
    from mmrl.sweep.executors import run_gpu_pool, run_local
    from mmrl.sweep.plan import expand
    from mmrl.sweep.runner import CommandRunner
    log = tmp_path / "fds.jsonl"
    monkeypatch.setenv("FD_LOG", str(log))
    jobs = expand("b2n", root="/data", output=str(tmp_path / "out"), trainers=["MMRL"], datasets=["eurosat"],
                  seeds=list(range(1, 9)))
    runner = CommandRunner(prefix=(sys.executable, "-I", "-S", "-c", _CHILD))
    before = _open_fds()
    outcomes = (run_local(jobs, runner) if executor == "local" else
                run_gpu_pool(jobs, runner, ["0", "1", "2"]))  # three jobs at once, three locks held at once
    assert [o.action for o in outcomes] == ["ran"] * len(jobs)
    assert _open_fds() == before
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(seen) == len(jobs)
    for child in seen:
        inherited = {fd: target for fd, target in child["fds"].items() if fd not in ("0", "1", "2")}
        assert inherited == {child["env"]: str(lock_path(child["out"]))}, child


def _children() -> list[tuple[str, str]]:
    """(pid, state) of this process's children, zombies included."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            out.append((pid, fields[0]))
    return out


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory):
    from engine_helpers import write_eurosat
    return write_eurosat(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_runs_in_one_process_leave_no_handlers_descriptors_or_loader_workers(eurosat_root, tmp_path):
    from engine_helpers import argv
    from mmrl.engine.run import main as run_main, main_many
    logger = logging.getLogger("mmrl")

    def zeroshot(name, seed):
        a = argv(eurosat_root, tmp_path / name, "--eval-only", seed=seed, subsample="new",
                 opts=["DATALOADER.NUM_WORKERS", "2", "TEST.CACHE_DIR", str(tmp_path / "testcache")])
        a[a.index("--trainer") + 1] = "ZeroshotCLIP"
        return a

    assert run_main(zeroshot("warm", 1)) == 0  # the first run loads the backbone and builds the cache
    handlers, fds = list(logger.handlers), _open_fds()
    for i in range(2):
        assert run_main(zeroshot(f"single{i}", i + 2)) == 0
        assert main_many([zeroshot(f"many{i}a", i + 2), zeroshot(f"many{i}b", i + 2)]) == [0, 0]
        assert logger.handlers == handlers and _open_fds() == fds and _children() == []
    # each run's log holds its own lines only, once
    for name in ("single1", "many1b"):
        text = (tmp_path / name / "log.txt").read_text()
        assert text.count("=> result") == 1 and text.count("** Arguments **") == 1
