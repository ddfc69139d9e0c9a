"""The app's own access check (before any page runs): the token when one is configured, and
no service beyond this machine without one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("streamlit",
                    reason="streamlit is not installed (pip install 'guardrail[dashboard]')")
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from dashboard.access import cookie_value, load_token

from .conftest import APP
from .test_pages import PAGES


@pytest.fixture
def token(seeded_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "dashboard.key"
    value, _ = load_token(path)
    monkeypatch.setenv("GUARDRAIL_DASHBOARD__TOKEN_FILE", str(path))
    return value


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def shows_nothing_of_the_store(at: AppTest) -> bool:
    return not at.dataframe and not at.metric and not at.json and not at.sidebar.caption


def test_the_login_form_comes_first(token: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert titles(at) == ["guardrail dashboard"] and shows_nothing_of_the_store(at)
    at.text_input(key="login_token").input("f" * 64)
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["That is not the access token."]
    assert shows_nothing_of_the_store(at)
    at.text_input(key="login_token").input(token)
    at.button[0].click().run()
    assert not at.exception
    assert titles(at) == ["Overview"] and at.metric
    at.switch_page(PAGES["audits"]).run()  # the session stays logged in
    assert titles(at) == ["Bias audits"]


def test_a_direct_link_to_a_page_needs_the_token_too(token: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(PAGES["generations"]).run()
    assert titles(at) == ["guardrail dashboard"] and shows_nothing_of_the_store(at)


def test_the_token_in_the_link_logs_in_and_leaves_the_address(token: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["token"] = token
    at.run()
    assert titles(at) == ["Overview"] and "token" not in at.query_params
    at = AppTest.from_file(APP, default_timeout=60)
    # a wrong token: the last digit changed (to another digit than it was)
    at.query_params["token"] = token[:-1] + ("1" if token.endswith("0") else "0")
    at.run()
    assert titles(at) == ["guardrail dashboard"] and "token" not in at.query_params
    assert [e.value for e in at.error] == ["That is not the access token."]


def test_the_login_cookie_is_accepted(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import common

    monkeypatch.setattr(common, "presented_cookie", lambda: cookie_value(token))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert titles(at) == ["Overview"]
    monkeypatch.setattr(common, "presented_cookie", lambda: token)  # not the cookie's value
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert titles(at) == ["guardrail dashboard"]


def test_an_unreadable_token_file_shows_nothing(token: str, tmp_path: Path) -> None:
    (tmp_path / "dashboard.key").chmod(0o644)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert titles(at) == ["guardrail dashboard"] and shows_nothing_of_the_store(at)
    assert "accessible to other users" in at.error[0].value
    assert not at.text_input


@pytest.fixture
def all_interfaces() -> Iterator[None]:
    st_config.set_option("server.address", "0.0.0.0")
    yield
    st_config.set_option("server.address", "127.0.0.1")


def test_no_service_beyond_this_machine_without_a_token(seeded_url: str,
                                                        all_interfaces: None) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert titles(at) == ["guardrail dashboard"] and shows_nothing_of_the_store(at)
    assert "without an access token" in at.error[0].value
    assert not at.text_input


def test_beyond_this_machine_the_token_opens_it(token: str, all_interfaces: None) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["token"] = token
    at.run()
    assert titles(at) == ["Overview"]
