"""``guardrail dashboard``: the address, port, token and verify folder it serves with, and
what it refuses."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from dashboard import cli
from guardrail import Config
from guardrail.cli import build_parser
from guardrail.errors import ConfigError, KeyFileError


def test_defaults_serve_this_machine_only(config: Config) -> None:
    env, link = cli.dashboard_env(config, store_url="sqlite:///x.db", environ={})
    assert link is None
    assert env["GUARDRAIL_DASHBOARD__ADDRESS"] == "127.0.0.1"
    assert env["GUARDRAIL_DASHBOARD__PORT"] == "8501"
    assert env["GUARDRAIL_DASHBOARD__TOKEN_FILE"] == ""
    assert env["GUARDRAIL_DASHBOARD__VERIFY_DIR"] == ""
    assert env["GUARDRAIL_STORE_URL"] == "sqlite:///x.db"
    assert env["GUARDRAIL_PATHS__DATA_DIR"] == str(config.data_dir.absolute())
    env, _ = cli.dashboard_env(config, environ={"KEEP": "1"})
    assert env["GUARDRAIL_STORE_URL"] == config.store_url and env["KEEP"] == "1"


def test_the_server_reads_the_same_settings(config: Config, tmp_path: Path) -> None:
    from dashboard.server import load_config

    env, _ = cli.dashboard_env(config, address="::1", port=9000, verify_dir=tmp_path,
                               environ={})
    dash = load_config(env).section("dashboard")
    assert (dash["address"], dash["port"]) == ("::1", 9000)
    assert dash["verify_dir"] == str(tmp_path.resolve())


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.10", "dashboard.example.org"])
def test_beyond_loopback_a_token_is_required(config: Config, address: str) -> None:
    with pytest.raises(ConfigError, match=f"refusing to serve the dashboard on '{address}' "
                                          "without an access token"):
        cli.dashboard_env(config, address=address, environ={})


def test_a_token_file_is_created_once_and_its_link_shown_once(config: Config,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "keys" / "dashboard.key"
    env, link = cli.dashboard_env(config, address="0.0.0.0", port=9000, token_file=path,
                                  environ={})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert link is not None and link.endswith(f":9000/?token={token}")
    assert env["GUARDRAIL_DASHBOARD__TOKEN_FILE"] == str(path)
    _, again = cli.dashboard_env(config, address="0.0.0.0", token_file=path, environ={})
    assert again is None  # the token is printed only when it is created
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="accessible to other users"):
        cli.dashboard_env(config, address="0.0.0.0", token_file=path, environ={})


def test_bad_settings_are_refused(config: Config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port 70000 is not between 1 and 65535"):
        cli.dashboard_env(config, port=70000, environ={})
    with pytest.raises(ConfigError, match="is not a folder"):
        cli.dashboard_env(config, verify_dir=tmp_path / "missing", environ={})
    with pytest.raises(ConfigError, match="address is empty"):
        cli.dashboard_env(config, address=" ", environ={})


def test_the_verb_parses_its_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "run_server", lambda env: seen.append(dict(env)) or 0)
    args = build_parser().parse_args([
        "dashboard", "--address", "0.0.0.0", "--port", "8600", "--token-file",
        str(tmp_path / "t.key"), "--verify-dir", str(tmp_path), "--data-dir",
        str(tmp_path / "data"), "--store", "sqlite:///y.db"])
    assert args.func(args) == 0
    env, = seen
    assert env["GUARDRAIL_DASHBOARD__ADDRESS"] == "0.0.0.0"
    assert env["GUARDRAIL_DASHBOARD__PORT"] == "8600"
    assert env["GUARDRAIL_STORE_URL"] == "sqlite:///y.db"
    out, err = capsys.readouterr()
    assert "http://0.0.0.0:8600/" in out and "?token=" in out
    assert "reverse proxy with TLS" in err
    assert args.func(args) == 0
    assert "?token=" not in capsys.readouterr().out  # shown once


def test_server_command_runs_the_server_module() -> None:
    assert cli.server_command()[-2:] == ["-m", "dashboard.server"]


def test_relative_dashboard_paths_in_a_config_file_are_its_folders(tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "guardrail.toml"
    conf.parent.mkdir()
    conf.write_text('[dashboard]\naddress = "0.0.0.0"\nport = 9100\n'
                    'token_file = "dashboard.key"\nverify_dir = "inbox"\n')
    dash = Config.load(conf, environ={}).section("dashboard")
    assert dash["token_file"] == str((conf.parent / "dashboard.key").resolve())
    assert dash["verify_dir"] == str((conf.parent / "inbox").resolve())
    (conf.parent / "inbox").mkdir()
    env, link = cli.dashboard_env(Config.load(conf, environ={}), environ={})
    assert env["GUARDRAIL_CONFIG"] == str(conf)
    assert env["GUARDRAIL_DASHBOARD__PORT"] == "9100" and link and ":9100/?token=" in link
