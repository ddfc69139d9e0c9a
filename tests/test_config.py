import os
from pathlib import Path

import pytest

from guardrail import Config
from guardrail.errors import ConfigError


def test_defaults_are_documented_and_valid():
    cfg = Config.load()
    assert cfg.policy["max_prompt_chars"] == 2000
    assert cfg.store_prompts is False
    assert cfg.on_fail("watermark") == "block"
    assert cfg.store_url.startswith("sqlite:///") and cfg.store_url.endswith("guardrail.db")
    assert cfg.generator("text")["model"] == "embedded:smollm2"
    assert cfg.limits.max_file_bytes == 256 * 1024 * 1024  # [limits], see tests/test_limits.py


def test_file_env_and_flags_in_order_of_precedence(tmp_path: Path):
    f = tmp_path / "g.toml"
    f.write_text('[policy]\nmax_prompt_chars = 100\nmin_prompt_chars = 2\n'
                 '[paths]\ndata_dir = "rel/data"\n[store]\nurl = "sqlite:///db/x.db"\n')
    env = {"GUARDRAIL_POLICY__MAX_PROMPT_CHARS": "200", "GUARDRAIL_STORE__STORE_PROMPTS": "yes"}
    cfg = Config.load(f, environ=env)
    assert cfg.policy["max_prompt_chars"] == 200  # env beats file
    assert cfg.policy["min_prompt_chars"] == 2  # file beats defaults
    assert cfg.store_prompts is True
    # relative paths resolve against the config file's folder, not the working directory
    assert cfg.data_dir == (tmp_path / "rel" / "data").resolve()
    assert cfg.store_url == f"sqlite:///{(tmp_path / 'db' / 'x.db').resolve()}"
    cfg = Config.load(f, environ=env, overrides={"policy": {"max_prompt_chars": 300}})
    assert cfg.policy["max_prompt_chars"] == 300  # flags beat env


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[policy]\nmax_prompt_chars = 'many'\n", "must be int"),
        ("[policy]\nmax_prompt_char = 3\n", "unknown setting 'policy.max_prompt_char'"),
        ("[nosuch]\nx = 1\n", "unknown setting 'nosuch'"),
        ("[policy.on_fail]\nwatermark = 'ignore'\n", "choose one of block, flag, continue"),
        ("[policy]\nunverifiable_text = 'allow'\n", "policy.unverifiable_text = 'allow'; choose one of"),
        ("[policy]\nmax_prompt_chars = 0\n", "max_prompt_chars must be >="),
        ("[limits]\nmax_file_bytes = 0\n", "limits.max_file_bytes must be positive"),
        ("[watermark.image]\ncopy_check = 'paranoid'\n",
         "watermark.image.copy_check = 'paranoid'; choose standard or strict"),
        ("not toml ===", "not valid TOML"),
    ],
)
def test_bad_config_files_are_named_clearly(tmp_path: Path, text: str, message: str):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.load(f, environ={})


def test_missing_config_file_and_bad_env():
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load("/nonexistent/guardrail.toml", environ={})
    with pytest.raises(ConfigError, match="GUARDRAIL_<SECTION>__<KEY>"):
        Config.load(environ={"GUARDRAIL_STOREURL": "x"})
    with pytest.raises(ConfigError, match="must be bool"):
        Config.load(environ={"GUARDRAIL_STORE__STORE_PROMPTS": "maybe"})


def test_config_file_from_environment_variable(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text("[policy]\nblocked_terms = ['x']\n")
    cfg = Config.load(environ={"GUARDRAIL_CONFIG": str(f)})
    assert cfg.source == str(f)
    assert cfg.policy["blocked_terms"] == ["x"]
    assert os.environ.get("GUARDRAIL_CONFIG") is None
