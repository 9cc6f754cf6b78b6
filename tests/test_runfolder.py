"""The --out folder: one process at a time, one owner, one line for operating-system
errors, stale temporaries of killed runs removed at the next start."""
import os
import subprocess
import sys

import pytest

from lib.cli import make_parser, parse_config, run
from lib.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = (
    "import sys, time; from lib.cli import make_parser, parse_config; "
    "parse_config(make_parser('hold', 'configs/tiny.yaml', 'x', 'train.py'), ['--out', sys.argv[1]]); "
    "print('locked', flush=True); time.sleep(120)"
)


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_process_on_one_out_gets_one_line(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run(
            [sys.executable, "prepare.py", "--out", str(out), "--input", str(tmp_path / "nowhere")],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0, second.stderr
    assert f"--out {out}: in use by train.py (pid {holder.pid}" in second.stderr
    # The kernel released the lock with the killed holder: the folder is usable again
    # (by train.py, its owner).
    parse_config(make_parser("t", "configs/tiny.yaml", "x", "train.py"), ["--out", str(out)])


@pytest.mark.parametrize("legacy", [False, True])
def test_evaluation_refuses_a_training_folder_and_keeps_its_config(tmp_path, legacy):
    import test_pixel_face

    out = tmp_path / "train"
    parse_config(make_parser("t", "configs/tiny.yaml", "x", "train.py"), ["--out", str(out), "train.epochs=7"])
    if legacy:  # a folder written before config.yaml named its owner
        text = (out / "config.yaml").read_text().split("\n", 1)[1]
        (out / "config.yaml").write_text(text)
        (out / "checkpoints").mkdir()
    before = (out / "config.yaml").read_bytes()
    with pytest.raises(UserError, match=f"--out {out}: holds the results of train.py"):
        test_pixel_face.main(["--out", str(out), "--config", os.path.join(ROOT, "configs/tiny.yaml")])
    assert (out / "config.yaml").read_bytes() == before


def test_out_that_is_a_file_is_one_line(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("not a folder")
    out = subprocess.run([sys.executable, "prepare.py", "--out", str(target), "--input", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert f"--out {target}: is a file, not a folder" in out.stderr


@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device", "runs/x/checkpoints/last.pt"),
    PermissionError(13, "Permission denied", "runs/x/metrics.jsonl"),
])
def test_os_errors_at_an_entry_point_are_one_line(error, capsys):
    def main(argv):
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run(main, [])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {error.filename}: {error.strerror}\n"


def test_stale_temporaries_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "run"
    dead, alive = _dead_pid(), os.getppid()
    stale = [
        f"checkpoints/last.pt.{dead}.k2j_x1ab.tmp",  # save_checkpoint of a killed run
        "checkpoints/last.pt.ab3_9xkq.tmp",  # an older run's name (no pid), outside the cache
        f"config.yaml.{dead}.tmp",
        "samples/s1/result.json.tmp",
    ]
    stale_dirs = [f"cache/synthetic-abc/train-4.tmp{dead}", f"cache/preprocess-k/ab/abcd.{dead}.77ee.tmp"]
    kept = [
        f"checkpoints/last.pt.{alive}.q1w2e3.tmp",  # a live writer's
        "cache/preprocess-k/ab/abcd.f00d.tmp",  # no pid inside a cache that may be shared: left alone
        "checkpoints/last.pt",
        "samples/s1/result.json",
    ]
    for name in stale + kept:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"x")
    for name in stale_dirs:
        (out / name).mkdir(parents=True)
        (out / name / "rgb.npy").write_bytes(b"x")
    parse_config(make_parser("t", "configs/tiny.yaml", "x", "train.py"), ["--out", str(out)])
    for name in stale + stale_dirs:
        assert not (out / name).exists(), name
    for name in kept:
        assert (out / name).exists(), name
