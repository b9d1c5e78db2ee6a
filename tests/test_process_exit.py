"""Command-line processes end without the interpreter's teardown, and lose nothing by it: the
exit code, buffered output, atexit handlers, log files and running threads are as at a normal exit."""
import os
import subprocess
import sys
import textwrap

import pytest

from engine_helpers import REPO, argv, record, write_eurosat

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_exit_keeps_output_handlers_threads_and_the_code(tmp_path):
    code = textwrap.dedent(f"""
        import atexit, pathlib, sys, threading, time
        from mmrl.cli import exit_process
        out = pathlib.Path({str(tmp_path)!r})
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        def late():
            time.sleep(0.3)
            (out / "thread").write_text("finished")
        threading.Thread(target=late).start()
        sys.stdout.write("buffered, no newline")
        exit_process(3)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert p.returncode == 3 and p.stdout == "buffered, no newline", p.stderr
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "finished"


def test_a_profiler_still_gets_its_report(tmp_path):
    """python -m cProfile writes its statistics after the script returns: no early exit under it."""
    script = tmp_path / "script.py"
    script.write_text("from mmrl.cli import exit_process\nexit_process(0)\n")
    stats = tmp_path / "stats.prof"
    p = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(stats), str(script)], capture_output=True,
                       text=True, env=ENV, timeout=60)
    assert p.returncode == 0 and stats.is_file(), p.stderr


@pytest.mark.slow
def test_a_run_through_each_entry_point_ends_complete_with_its_log(tmp_path_factory):
    root = write_eurosat(tmp_path_factory)
    out = tmp_path_factory.mktemp("runs")
    for name, entry in (("train_py", [str(REPO / "train.py")]), ("module", ["-m", "mmrl", "train"])):
        run = out / name
        args = argv(root, run, epochs=1, shots=1, opts=["DATALOADER.NUM_WORKERS", "2"])
        p = subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, env=ENV, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        assert record(run)["status"] == "complete"
        log = (run / "log.txt").read_text().rstrip().splitlines()
        assert any(line.startswith("* macro_f1: ") for line in log) and log[-1].startswith("Elapsed: ")
        assert "* macro_f1: " in p.stdout
        # the same command on another config: refused, and the refusal's exit code comes through
        again = subprocess.run([sys.executable, *entry, *args, "OPTIM.LR", "0.5"], capture_output=True, text=True,
                               env=ENV, timeout=300)
        assert again.returncode not in (0, None) and "another config" in again.stderr
