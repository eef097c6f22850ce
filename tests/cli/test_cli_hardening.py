"""The command line on bad days (issue 9: D6, D7, D9).

- D6: ``suanli up`` on a data dir it cannot use — a file in the way, no permission, a full
  or read-only file system, another ``up`` using it — says what is wrong and exits 2.
- D7: ``suanli submit`` refuses NaN/infinity (naming the field), YAML alias bombs and
  huge files before expanding or sending anything.
- D9: the saved login is the user's alone from its first byte.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from suanli.cli.main import main
from suanli.sdk import client as sdk_client

SUANLI = str(Path(sys.executable).parent / "suanli")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out, err


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _up(capsys: pytest.CaptureFixture[str], data_dir: Path) -> tuple[int, str]:
    code, out, err = _run(
        capsys, "up", "--no-agent", "--port", _free_port(), "--data-dir", str(data_dir),
        "--duration", "0.2",
    )  # fmt: skip
    return code, out + err


# ----- D6: suanli up on an unusable data dir ------------------------------------------------


def test_up_under_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    code, text = _up(capsys, tmp_path / "afile" / "data")
    assert code == 2
    assert f"{tmp_path / 'afile'} is a file" in text and "--data-dir" in text
    assert "Traceback" not in text


def test_up_on_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").write_text("x")
    code, text = _up(capsys, tmp_path / "data")
    assert code == 2 and "is a file" in text and "Traceback" not in text


@pytest.fixture
def unwritable(tmp_path: Path, require: Callable[..., None]) -> Iterator[Path]:
    """A folder nobody may create entries in: 0500 for a user, immutable for root."""
    d = tmp_path / "locked"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o500)
        yield d
        d.chmod(0o700)
        return
    done = subprocess.run(["chattr", "+i", str(d)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        require("chattr", f"as root, only an immutable folder is unwritable: {done.stderr}")
    yield d
    subprocess.run(["chattr", "-i", str(d)], check=True)


def test_up_in_an_unwritable_folder_says_so(
    unwritable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = _up(capsys, unwritable / "data")
    assert code == 2
    assert f"cannot create the data directory {unwritable / 'data'}" in text
    assert "permission denied" in text and "Traceback" not in text


def _in_private_mount(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) in a private mount namespace with a 64 KiB tmpfs at ``$MNT`` (the
    callers are marked ``requires("unshare")``)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    wrapped = f"mount -t tmpfs -o size=64k tmpfs {mnt} && export MNT={mnt} && {script}"
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", wrapped], capture_output=True, text=True, timeout=120,
        env={**os.environ, "SUANLI": SUANLI}, check=False,
    )  # fmt: skip


UP = '"$SUANLI" up --no-agent --duration 0.2 --port {port} --data-dir "$MNT/data"'


@pytest.mark.requires("unshare")
def test_up_on_a_full_disk_says_so(tmp_path: Path) -> None:
    # Fill the tmpfs first: nothing is left for the database.
    fill = 'head -c 1048576 /dev/zero > "$MNT/filler" 2>/dev/null; '
    done = _in_private_mount(fill + UP.format(port=_free_port()), tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no space left on the device" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.requires("unshare")
def test_up_on_a_small_disk_says_so(tmp_path: Path) -> None:
    # 64 KiB is not enough for the database's first pages.
    done = _in_private_mount(UP.format(port=_free_port()), tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no space left on the device" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.requires("unshare")
def test_up_on_a_read_only_file_system_says_so(tmp_path: Path) -> None:
    script = 'mkdir "$MNT/data" && mount -o remount,ro "$MNT" && ' + UP.format(port=_free_port())
    done = _in_private_mount(script, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the file system is read-only" in done.stderr and "Traceback" not in done.stderr


def test_a_second_up_on_the_same_data_dir_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wait_until: Callable[..., None]
) -> None:
    data = tmp_path / "data"
    log = tmp_path / "first.log"
    argv = [SUANLI, "up", "--no-agent", "--port", _free_port(), "--data-dir", str(data)]
    with log.open("wb") as out:
        first = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "Ctrl-C to stop" in log.read_text(), 60, "the first `suanli up`")
        code, text = _up(capsys, data)
        assert code == 2, text
        assert f"another `suanli up` (pid {first.pid}) is using the data directory {data}" in text
        assert "Traceback" not in text
        assert first.poll() is None  # the first one runs on, untouched
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        first.terminate()
        first.wait(30)
    # Once it is gone, the data dir is free again.
    assert _up(capsys, data)[0] == 0


def test_up_on_an_unreachable_database_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://nobody@127.0.0.1:{_free_port()}/none"
    code, out, err = _run(
        capsys, "up", "--no-agent", "--port", _free_port(), "--data-dir", str(tmp_path),
        "--database-url", url, "--duration", "0.2",
    )  # fmt: skip
    assert code == 2 and "cannot open the database" in err and "Traceback" not in out + err


# ----- D7: suanli submit on a hostile file ----------------------------------------------------

JOB = """kind: job
name: t
command: run
resources: {{gpus: {gpus}}}
work_ref_gpu_hours: 1
bid_cny_per_ref_gpu_hour: {bid}
data: {{origin_city: Shanghai}}
"""

LAUGHS = "\n".join(
    ["kind: job", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    + ["name: *a9"]
)


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A login pointing at a closed port: reaching the network would be the failure."""
    monkeypatch.setenv("SUANLI_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("SUANLI_TOKEN", "sl_x")
    monkeypatch.setenv("SUANLI_CONFIG", str(tmp_path / "none.json"))


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("nan.yaml", JOB.format(gpus=1, bid=".nan"), "bid_cny_per_ref_gpu_hour: nan"),
        ("inf.yaml", JOB.format(gpus=".inf", bid=1), "resources.gpus: inf"),
        ("neg.yaml", JOB.format(gpus=1, bid="-.Inf"), "bid_cny_per_ref_gpu_hour: -inf"),
        ("nan.json", '{"kind": "job", "env": [1, NaN]}', "env[1]: nan"),
    ],
)
def test_submit_refuses_numbers_that_are_not_finite(
    nowhere: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
    field: str,
) -> None:  # fmt: skip
    path = tmp_path / name
    path.write_text(text)
    code, out, err = _run(capsys, "submit", str(path))
    assert code == 2 and f"{path}: {field} is not a finite number" in err, err
    assert "Traceback" not in out + err


def test_submit_refuses_a_yaml_alias_bomb_before_expanding_it(
    nowhere: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    code, _, err = _run(capsys, "submit", str(path))
    # 9 levels of 9 aliases: 9**9 "lol"s and the lists around them, ~435 million values.
    assert code == 2 and "YAML aliases expand to" in err and "at most 100,000" in err, err


def test_submit_refuses_a_self_referencing_alias(
    nowhere: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("kind: job\nname: &x [1, *x]\n")
    code, _, err = _run(capsys, "submit", str(path))
    assert code == 2 and "alias to itself" in err, err


def test_submit_refuses_a_huge_file(
    nowhere: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("kind: job\ncommand: " + "x" * 2_000_000 + "\n")
    code, _, err = _run(capsys, "submit", str(path))
    assert code == 2 and "a work file may be at most 1,048,576 bytes" in err, err


def test_small_anchors_and_merge_keys_still_read(tmp_path: Path) -> None:
    from suanli.cli._spec_file import read_spec_file

    path = tmp_path / "job.yaml"
    path.write_text(
        "base: &b {origin_city: Shanghai}\nkind: job\ndata: {<<: *b, size_gb: 2}\n"
        "resources: {gpus: 2}\nbid_cny_per_ref_gpu_hour: 1.5\n"
    )
    spec = read_spec_file(path)
    assert spec["data"] == {"origin_city": "Shanghai", "size_gb": 2}


# ----- D9: the saved login ------------------------------------------------------------------


def test_the_saved_login_is_private_from_its_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    monkeypatch.setenv("SUANLI_CONFIG", str(folder / "config.json"))
    seen: list[tuple[str, int]] = []

    def snapshot() -> None:
        for p in folder.iterdir():
            seen.append((p.name, stat.S_IMODE(p.lstat().st_mode)))

    # Each step that could follow the write (a chmod, a rename) first looks at the
    # folder: a file there with a wider mode than 0600 was readable by others until then.
    def spy(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            snapshot()
            return real(*args, **kwargs)

        return wrapped

    for name in ("chmod", "replace", "rename"):
        monkeypatch.setattr(os, name, spy(getattr(os, name)))
    old = os.umask(0o022)
    try:
        path = sdk_client.save_config("http://127.0.0.1:8000", "sl_secret")
        path = sdk_client.save_config("http://127.0.0.1:8000", "sl_secret2")
    finally:
        os.umask(old)
    assert seen and all(mode == 0o600 for _, mode in seen), seen
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in folder.iterdir()] == ["config.json"]  # no temporary left


def test_the_saved_login_does_not_follow_a_planted_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUANLI_CONFIG", str(tmp_path / "config.json"))
    bait = tmp_path / "bait.txt"
    (tmp_path / "config.tmp").symlink_to(bait)
    sdk_client.save_config("http://127.0.0.1:8000", "sl_secret")
    assert not bait.exists()
