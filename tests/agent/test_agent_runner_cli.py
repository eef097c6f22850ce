"""``suanli agent`` refuses bad input with a message and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give a seller token: --token or SUANLI_TOKEN"),
        (("--token", "t", "--backend", "kubernetes"), "kubernetes"),
        (("--token", "t", "--backend-opt", "no-equals-sign"), "expected KEY=VALUE"),
        (("--token", "t", "--backend", "slurm", "--inventory", "x.yaml"), "for the local backend"),
        (("--token", "t", "--backend", "ray", "--backend-opt", "timeout_s=-1"), "timeout_s"),
        (("--token", "t", "--backend", "slurm", "--unsafe-no-sandbox"), "for the local backend"),
    ],
)
def test_bad_agent_options_name_the_problem(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.delenv("SUANLI_TOKEN", raising=False)
    code, text = _run(capsys, "agent", "--state-dir", str(tmp_path), *args)
    assert code == 2, text
    assert message in text and "Traceback" not in text


def test_a_backend_config_file_must_be_a_mapping(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "backend.yaml"
    cfg.write_text("- just\n- a list\n")
    code, text = _run(
        capsys, "agent", "--token", "t", "--state-dir", str(tmp_path), "--config", str(cfg)
    )
    assert code == 2 and "expected a mapping of settings" in text


def test_an_agent_that_cannot_sandbox_work_refuses_to_start_and_says_how_to_fix_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "backend.yaml"
    cfg.write_text("sandbox: {bwrap: /nonexistent/bwrap}\n")  # as if bubblewrap were missing
    code, text = _run(
        capsys, "agent", "--token", "t", "--state-dir", str(tmp_path), "--config", str(cfg)
    )
    assert code == 2, text
    assert "cannot sandbox buyers' work" in text and "--unsafe-no-sandbox" in text
    assert "Traceback" not in text
