"""The one skip policy of tests/conftest.py: a missing resource skips with the reason, and
under CI (``CI=true``) fails the run instead; an unknown resource name is always an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

MISSING = "unobtainium"
REASON = "it has not been mined yet"


@pytest.fixture
def req(require: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real ``require``, with one made-up resource that is always missing."""
    monkeypatch.setitem(require.probes, MISSING, lambda: REASON)
    monkeypatch.setitem(require.probes, "everywhere", lambda: None)
    return require


def test_a_missing_resource_skips_with_its_reason(
    req: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"needs {MISSING}: {REASON}"):
        req(MISSING)


def test_under_ci_a_missing_resource_fails(req: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI=true, so {MISSING} .*{REASON}"):
        req(MISSING)


def test_traces_beside_a_checkout_skip_even_under_ci_unless_their_folder_is_named(
    require: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("SUANLI_TRACES_DIR", raising=False)
    monkeypatch.setitem(require.probes, "traces", lambda: "no public traces here")
    with pytest.raises(pytest.skip.Exception, match="needs traces"):
        require("traces")
    monkeypatch.setenv("SUANLI_TRACES_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(pytest.fail.Exception, match="CI=true, so traces must be here"):
        require("traces")


@pytest.mark.parametrize("ci", ["true", None])
def test_a_present_resource_passes_and_a_broken_one_is_reported(
    req: Any, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    req("everywhere")
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="did not start"):
        req("everywhere", "the daemon did not start")


@pytest.mark.parametrize("ci", ["true", None])
def test_an_unknown_resource_is_an_error_not_a_skip(
    req: Any, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="unknown resource 'unobtanium'"):
        req("unobtanium")


INNER_TESTS = f"""
import pytest

@pytest.mark.requires("{MISSING}")
def test_by_marker():
    pass

def test_by_fixture(require):
    require("{MISSING}")
"""


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [(None, {"skipped": 2}), ("false", {"skipped": 2}), ("true", {"failed": 1, "errors": 1})],
)
def test_a_whole_run_skips_or_under_ci_fails(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    ci: str | None,
    outcome: dict[str, int],
) -> None:
    """A run of two tests that need a missing resource, by marker and by fixture, with the
    project's conftest: skipped with the reason, or under CI=true red (the marker fails in
    setup, so it counts as an error)."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    conftest = (Path(__file__).parent / "conftest.py").read_text()
    pytester.makeconftest(f"{conftest}\nPROBES[{MISSING!r}] = lambda: {REASON!r}\n")
    pytester.makeini("[pytest]\nmarkers =\n    requires: needs resources\n    cluster: x\n")
    pytester.makepyfile(INNER_TESTS)
    result = pytester.runpytest("-rsfE")
    result.assert_outcomes(**outcome)
    result.stdout.fnmatch_lines([f"*{REASON}*"])
    assert result.ret == (1 if ci == "true" else 0)
