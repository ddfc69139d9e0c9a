"""guardrail's own progress bars (counts and ETA on stderr, decided in one place) and the
silencing of the libraries' progress output unless ``-v``."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from guardrail import progress
from guardrail.cli import main


@pytest.fixture(autouse=True)
def restore_progress_mode():
    saved = {k: (dict(v) if isinstance(v, dict) else v) for k, v in progress._state.items()}
    yield
    progress.configure("auto", verbose=1)  # undo any silencing done by the test
    progress._state.update(saved)


def test_forced_bar_prints_counts_and_eta(capsys):
    progress.configure("always")
    with progress.bar(total=5, desc="work", unit="item") as b:
        for _ in range(5):
            b.update(1)
    err = capsys.readouterr().err
    assert "work" in err and "5/5" in err and "<" in err  # elapsed<remaining (the ETA)


def test_auto_hides_bars_off_a_terminal_and_never_hides_them(capsys):
    progress.configure("auto")  # pytest's captured stderr is not a terminal
    assert not progress.enabled()
    progress.configure("always")
    assert progress.enabled()
    progress.configure("never")
    for _ in progress.bar(range(3), desc="hidden"):
        pass
    assert capsys.readouterr().err == ""


def test_json_output_means_never_unless_forced():
    assert progress.configure("auto", json_output=True) == "never"
    assert progress.configure("always", json_output=True) == "always"


def test_a_caller_that_asked_for_no_progress_wins_over_always(capsys):
    progress.configure("always")
    with progress.scope(False):
        assert not progress.enabled()
        with progress.scope(True):  # a nested scope cannot switch bars back on
            assert not progress.enabled()
        progress.note("not shown")
    assert progress.enabled() and not progress.enabled(False)
    assert capsys.readouterr().err == ""


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="progress mode"):
        progress.configure("sometimes")


def test_robustness_trials_show_counts(capsys):
    from guardrail._types import Artifact, GenerationMetadata, Modality
    from guardrail.robustness.harness import Detection, Marked, run_trials

    progress.configure("always")

    def mark(i):
        return Marked(Artifact(modality=Modality.TEXT, content=f"item {i}",
                               metadata=GenerationMetadata(model_id="test")), name=str(i))

    trials = run_trials(range(4), mark=mark, attacks=[],
                        detect=lambda _m, _a: Detection(detected=True))
    assert trials.rate("none")["rate"] == 1.0
    err = capsys.readouterr().err
    assert "robustness trials (0 attacks)" in err and "4/4" in err


def test_audit_run_with_forced_progress_prints_counts(capsys, tmp_path, monkeypatch):
    import audits.text
    from guardrail import Guard
    from tests.audits.conftest import SMALL_PROMPTS, SMALL_SUITE, GroupTextGenerator

    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(SMALL_SUITE))
    for key, value in {"N_BOOT": "50", "PERMUTATIONS": "50", "BATCH_SIZE": "8"}.items():
        monkeypatch.setenv(f"GUARDRAIL_AUDIT__{key}", value)
    gen = GroupTextGenerator()
    monkeypatch.setattr(audits.text, "build_guard", lambda config, store, **_: Guard(
        gen, store=store, config=config, stages=[]))
    data = ["--data-dir", str(tmp_path / "data")]
    code = main(["--progress", "always", "audit", "run", str(suite), "--samples", "1",
                 "--json", *data])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["status"] == "complete"  # stdout stays pure JSON
    assert f"{SMALL_PROMPTS}/{SMALL_PROMPTS}" in err and "audit small-test" in err


def _library_bars_on() -> dict[str, bool]:
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hub
    import transformers.utils.logging as transformers_logging

    return {"huggingface_hub": not hub.are_progress_bars_disabled(),
            "transformers": transformers_logging.is_progress_bar_enabled(),
            "diffusers": diffusers_logging.is_progress_bar_enabled()}


def test_library_switches_are_set_unless_verbose(capsys, tmp_path, monkeypatch):
    import os

    import huggingface_hub.utils as hub

    for key in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        monkeypatch.delenv(key, raising=False)
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["config", "show", *data]) == 0
    # read by transformers, diffusers and huggingface_hub when they are imported later
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    assert hub.are_progress_bars_disabled()
    assert logging.getLogger("piper").level == logging.ERROR
    assert main(["-v", "config", "show", *data]) == 0
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
    assert logging.getLogger("piper").level == logging.NOTSET
    capsys.readouterr()


def test_a_variable_the_user_set_is_kept(tmp_path, monkeypatch, capsys):
    import os

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    assert main(["config", "show", "--data-dir", str(tmp_path / "data")]) == 0
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
    capsys.readouterr()


@pytest.mark.slow
def test_library_progress_is_silenced_unless_verbose(capsys, tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["config", "show", *data]) == 0
    assert _library_bars_on() == {"huggingface_hub": False, "transformers": False,
                                  "diffusers": False}
    assert logging.getLogger("transformers").level == logging.ERROR
    assert logging.getLogger("piper").level == logging.ERROR
    assert not progress.library_bars()
    assert main(["-v", "--progress", "always", "config", "show", *data]) == 0
    assert all(_library_bars_on().values())
    assert logging.getLogger("piper").level == logging.NOTSET
    assert progress.library_bars()
    capsys.readouterr()


@pytest.mark.slow
def test_a_library_tqdm_bar_is_hidden_while_silenced(capsys, tmp_path):
    """A transformers-style bar (``transformers.utils.logging.tqdm``) prints nothing after a
    command without -v, while guardrail's own forced bar still does."""
    pytest.importorskip("transformers")
    from transformers.utils import logging as transformers_logging

    assert main(["--progress", "always", "config", "show", "--data-dir",
                 str(tmp_path / "data")]) == 0
    capsys.readouterr()
    for _ in transformers_logging.tqdm(range(3), desc="library bar", file=sys.stderr):
        pass
    with progress.bar(total=2, desc="our bar") as b:
        b.update(2)
    err = capsys.readouterr().err
    assert "library bar" not in err and "our bar" in err and "2/2" in err
