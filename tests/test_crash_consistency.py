"""Runs SIGKILLed at the points a crash can really hit (around a rename, between files), then rerun:
the rerun ends bit-identical to an uninterrupted run, or refuses clearly; never complete on partial data.

The kill is injected in a child process: ``os.replace`` / ``os.link`` (every atomic write's last
step) send SIGKILL to their own process at the Nth rename onto a given file name ("*.suffix": any
name with that suffix), before or after the rename.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrl.engine.run import main as run_main, main_many
from mmrl.results.collect import read_job
from mmrl.sweep.plan import Job
from engine_helpers import REPO, argv, final_state, record, write_eurosat

MODEL = "MultiModalRepresentationLearner"

CHILD = r"""
import json, os, signal, sys
name, nth, when, entry = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
seen = [0]

def killing(real):
    def move(src, dst, *a, **k):
        hit = os.path.basename(os.fspath(dst)) == name or (name[0] == "*" and os.fspath(dst).endswith(name[1:]))
        seen[0] += hit
        if hit and seen[0] == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst, *a, **k)
        if hit and seen[0] == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    return move

os.replace, os.link = killing(os.replace), killing(os.link)
from mmrl.engine import run
args = json.loads(sys.stdin.read())
sys.exit(run.main(args) if entry == "main" else max(run.main_many(args)))
"""


def killed_at(args, name: str, nth: int = 1, when: str = "before", entry: str = "main") -> None:
    """Run ``args`` in a child that SIGKILLs itself at the ``nth`` rename onto ``name``."""
    # the child's float reductions must be the in-process runs' (conftest sets their thread count)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))
    p = subprocess.run([sys.executable, "-c", CHILD, name, str(nth), when, entry], input=json.dumps(args),
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, f"not killed at {name}#{nth} {when}: rc {p.returncode}\n{p.stderr[-3000:]}"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_eurosat(tmp_path_factory)


@pytest.fixture(scope="module")
def full(data_root, tmp_path_factory):
    """The uninterrupted 2-epoch training (with its test) every killed run is compared with."""
    out = tmp_path_factory.mktemp("full") / "run"
    assert run_main(argv(data_root, out, opts=["TEST.SAVE_LOGITS", "True"])) == 0
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Same final trainables, predictions and accuracy, bit for bit."""
    sa, sb = final_state(a), final_state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    pa, pb = np.load(a / "predictions.npz"), np.load(b / "predictions.npz")
    assert all(np.array_equal(pa[k], pb[k]) for k in ("impath", "label", "pred", "logits"))
    assert record(a)["metrics"] == record(b)["metrics"]


def no_temp_files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*.tmp"))


# (file renamed onto, which rename, kill before or after it, how often epochs 1 and 2 ran in all):
# in the order a 2-epoch training reaches them. A rerun trains again only the epoch whose end the
# kill interrupted; once the final checkpoint and resume file are written, nothing is trained again.
TRAIN_KILLS = [
    ("shot_4-seed_1.json", 1, "before", (1, 1)),  # the few-shot subset drawn, its file not yet linked
    ("resume.pth", 1, "before", (2, 1)),       # epoch 1's resume file written to its temp name, not renamed
    ("model.pth.tar-2", 1, "after", (1, 2)),   # the final checkpoint, before the pointer names it
    ("checkpoint", 1, "after", (1, 2)),        # the final checkpoint named, its resume file not yet written
    ("resume.pth", 2, "after", (1, 1)),        # everything trained, nothing evaluated
    ("predictions.npz", 1, "before", (1, 1)),  # during the final evaluation
    # the resume file goes just before the record says complete (a complete run holds no resume
    # state), so a kill inside the record's write trains again: the same result, more slowly
    ("record.json", 2, "before", (2, 2)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,nth,when,epochs_run", TRAIN_KILLS)
def test_training_killed_then_rerun_equals_the_uninterrupted_run(data_root, full, tmp_path, name, nth, when,
                                                                 epochs_run):
    out = tmp_path / "run"
    args = argv(data_root, out, opts=["TEST.SAVE_LOGITS", "True"])
    killed_at(args, name, nth, when)
    assert record(out)["status"] == "running"
    assert run_main(args) == 0
    rec = record(out)
    assert rec["status"] == "complete" and rec["history"][-1]["status"] == "running"
    assert_same_run(full, out)
    log = (out / "log.txt").read_text()
    assert tuple(log.count(f"epoch [{e}/2] batch [5/5]") for e in (1, 2)) == epochs_run
    assert no_temp_files(out) == []


@pytest.mark.slow
def test_zero_byte_resume_file_is_refused_never_completed(data_root, tmp_path, monkeypatch):
    """What an older non-atomic writer or a full disk leaves: a clear refusal naming the file."""
    out = tmp_path / "run"
    args = argv(data_root, out, epochs=2, opts=["TEST.NO_TEST", "True"])
    monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
    assert run_main(args) != 0
    monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    resume = out / MODEL / "resume.pth"
    for size in (0, resume.stat().st_size // 2):
        with open(resume, "r+b") as f:
            f.truncate(size)
        assert run_main(args) == 1
        rec = record(out)
        assert rec["status"] == "failed" and str(resume) in rec["error"] and f"mv {out}" in rec["error"]
        assert not (out / MODEL / "model.pth.tar-2").exists()


@pytest.fixture(scope="module")
def eval_reference(data_root, full, tmp_path_factory):
    """An evaluation of ``full`` (new classes) without the test-image cache."""
    out = tmp_path_factory.mktemp("eval_ref") / "run"
    assert run_main(eval_argv(data_root, full, out, "none")) == 0
    return out


def eval_argv(data_root, model_dir, out, cache_dir):
    return argv(data_root, out, "--eval-only", "--model-dir", str(model_dir), subsample="new",
                opts=["TEST.SAVE_LOGITS", "True", "TEST.CACHE_DIR", str(cache_dir)])


def same_predictions(a: Path, b: Path) -> bool:
    pa, pb = np.load(a / "predictions.npz"), np.load(b / "predictions.npz")
    return all(np.array_equal(pa[k], pb[k]) for k in ("impath", "label", "pred", "logits")) and \
        record(a)["metrics"] == record(b)["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("name,when", [("*.u8", "before"), ("*.u8", "after"), ("*.stat.npy", "after"),
                                       ("predictions.npz", "before")])
def test_evaluation_killed_while_caching_or_writing_then_rerun_equals_a_plain_one(
        data_root, full, eval_reference, tmp_path, name, when):
    """A half-built test-image cache is never read; the rerun rebuilds it and leaves no temp file."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = eval_argv(data_root, full, out, cache)
    killed_at(args, name, 1, when)
    assert record(out)["status"] == "running" and not (out / "predictions.npz").exists()
    # the tables read nothing from it, though its log.txt may already print the result block
    job = Job("b2n", "MMRL", "eurosat", 4, 1, "vit_b16", "eval", "novel", str(out), tuple(args), model_dir=str(full))
    assert ("=> result" in (out / "log.txt").read_text()) == (name == "predictions.npz")
    got = read_job(job)
    assert got.value is None and "running" in got.source
    assert run_main(args) == 0
    assert record(out)["status"] == "complete" and same_predictions(eval_reference, out)
    assert "Test image cache: building" in (out / "log.txt").read_text().split("Arguments")[-1] or \
        name == "predictions.npz"
    assert sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")) == \
        sorted(p.name for p in cache.rglob("*") if p.suffix in (".u8", ".json", ".npy"))  # no temp file left
    assert no_temp_files(out) == []


@pytest.mark.slow
def test_eval_many_killed_between_its_runs_completes_only_the_rest(data_root, full, eval_reference, tmp_path):
    outs = [tmp_path / f"eval{i}" for i in (1, 2)]
    jobs = [eval_argv(data_root, full, o, "none") for o in outs]
    killed_at(jobs, "predictions.npz", 2, "before", entry="many")
    assert [record(o)["status"] for o in outs] == ["complete", "running"]
    first = (outs[0] / "record.json").read_bytes()
    assert main_many(jobs) == [0, 0]
    assert (outs[0] / "record.json").read_bytes() == first  # the finished one is not redone
    assert all(record(o)["status"] == "complete" and same_predictions(eval_reference, o) for o in outs)


# ---------------------------------------------------------------------------------------------
# Locks

LOCK_CHILD = r"""
import os, signal, subprocess, sys
from mmrl.engine.rundir import RunLock, handoff_env
lock = RunLock(sys.argv[1])
assert lock.acquire()
if sys.argv[2] == "handoff":  # as a sweep does: a train.py inherits the held lock, then the sweep dies
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=[lock.fd],
                             env=dict(os.environ, **handoff_env([lock])), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_a_lock_of_a_killed_process_is_free_and_one_handed_down_is_kept(tmp_path):
    from mmrl.engine.rundir import RunLock, is_locked
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", LOCK_CHILD, str(run), "alone"], env=env, timeout=120)
    assert p.returncode == -signal.SIGKILL
    assert not is_locked(run)
    with RunLock(run) as lock:
        assert lock.acquire()
    p = subprocess.run([sys.executable, "-c", LOCK_CHILD, str(run), "handoff"], env=env, timeout=120,
                       capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL
    grandchild = int(p.stdout.split()[0])
    try:
        assert is_locked(run) and not RunLock(run).acquire()  # the train.py still runs it
    finally:
        os.kill(grandchild, signal.SIGKILL)
    for _ in range(100):  # until the kernel has closed its files
        if not is_locked(run):
            break
        time.sleep(0.05)
    assert not is_locked(run)


# ---------------------------------------------------------------------------------------------
# What a host crash (not a process kill) can leave


def test_atomic_path_makes_the_data_durable_before_the_rename(tmp_path, monkeypatch):
    """A rename can reach the disk before unsynced data: after a power loss a checkpoint or
    predictions.npz that a complete record.json vouches for would be empty."""
    from mmrl.data.fileio import atomic_path
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", os.fspath(a))), real_replace(a, b))[1])
    dest = tmp_path / "model.pth.tar-1"
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"x" * 100)
    assert dest.read_bytes() == b"x" * 100
    assert [e for e, _ in events] == ["fsync", "replace"] and events[0][1] == events[1][1] == str(tmp)


def test_a_half_written_result_block_is_never_read_as_another_value(tmp_path):
    """An authors' log.txt cut anywhere (a full disk) gives its accuracy or none, never a wrong one."""
    from mmrl.engine.evaluator import result_lines
    from mmrl.engine.logparse import last_result
    text = "epoch [2/2] batch [5/5] loss 0.1\n" + "\n".join(result_lines(300, 226, 75.3333, 24.6667, 71.25)) + "\n"
    log = tmp_path / "log.txt"
    for cut in range(len(text) + 1):
        log.write_text(text[:cut])
        assert last_result(log) in (None, 75.3), text[:cut]
    assert last_result(log) == 75.3


@pytest.mark.slow
def test_promptsrc_killed_in_its_final_test_resumes_with_its_aggregate(tmp_path):
    """The final model of PromptSRC is the epoch hook's aggregate (set after the last epoch): a
    rerun that skips training must test that aggregate, not the last epoch's weights."""
    def promptsrc(out):
        return ["--seed", "1", "--trainer", "PromptSRC",
                "--dataset-config-file", str(REPO / "configs/datasets/demo.yaml"),
                "--config-file", str(REPO / "configs/trainers/PromptSRC/demo.yaml"), "--output-dir", str(out),
                "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "TASK", "B2N",
                "DATASET.FEWSHOT_DIR", str(tmp_path / "fewshot"), "OPTIM.MAX_EPOCH", "3", "TEST.SAVE_LOGITS", "True",
                "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1"]
    full, out = tmp_path / "full", tmp_path / "run"
    assert run_main(promptsrc(full)) == 0
    killed_at(promptsrc(out), "predictions.npz")
    assert run_main(promptsrc(out)) == 0
    logs = (out / "log.txt").read_text().split("Arguments")
    assert "epoch [3/3]" in logs[-2] and "epoch [3/3]" not in logs[-1]  # nothing trained again
    pa, pb = np.load(full / "predictions.npz"), np.load(out / "predictions.npz")
    assert np.array_equal(pa["logits"], pb["logits"]) and record(full)["metrics"] == record(out)["metrics"]


def test_a_filesystem_without_file_locks_is_named_not_misread(data_root, tmp_path, monkeypatch, capsys):
    """Lustre without -o flock answers ENOSYS: the run cannot be guarded against a second host, and
    the message says so (not "remove whatever is at that path")."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    out = tmp_path / "run"
    assert run_main(argv(data_root, out, epochs=1)) == 2
    err = capsys.readouterr().err
    assert "does not support file locks" in err and "remove whatever" not in err and "Traceback" not in err
    assert not (out / "record.json").exists()


def test_the_lock_probe_works_where_an_exclusive_flock_needs_write_access(tmp_path, monkeypatch):
    """On NFS flock is a byte-range lock, and an exclusive one needs a file open for writing
    (flock(2)): the probe a sweep makes before deciding must not fail there."""
    import errno
    import fcntl
    from mmrl.engine.rundir import RunLock, is_locked
    real = fcntl.flock

    def nfs_flock(fd, op):
        if op & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real(fd, op)
    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    run = tmp_path / "run"
    with RunLock(run) as held:
        assert held.acquire() and is_locked(run)
    assert not is_locked(run)
