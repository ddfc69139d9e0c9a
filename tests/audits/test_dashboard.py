"""The dashboard's audit page on a real (fake-generator) audit: attributes, stored
disparities with intervals and counts, flags."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit", reason="streamlit is not installed")
from streamlit.testing.v1 import AppTest

from audits.runner import AuditContext, run_audit
from audits.suites import load_suite
from tests.dashboard.conftest import APP, loopback_server_address  # noqa: F401 - autouse

from .conftest import BIASED_RULES, GroupTextGenerator


def test_audit_page_shows_a_real_audit(make_guard, suite_file, monkeypatch, tmp_path):
    guard, store, cfg = make_guard(GroupTextGenerator(BIASED_RULES))
    ev = run_audit(load_suite(suite_file), AuditContext(config=cfg, store=store, guard=guard,
                                                        samples=2, progress=False))
    monkeypatch.setenv("GUARDRAIL_STORE_URL", cfg.store_url)
    monkeypatch.setenv("GUARDRAIL_PATHS__DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/audits.py").run()
    assert not at.exception, at.exception
    attribute = at.selectbox(key="audit_attribute")
    assert attribute.options == ["religion", "age"]
    [warning] = [w.value for w in at.warning if w.value.startswith("Flags: ")]
    assert ev.summary["flags"] and all(f in warning for f in ev.summary["flags"])
    disparities = at.dataframe[0].value
    assert {"kind", "value", "ci_low", "ci_high", "p_adjusted", "flagged",
            "groups (n)"} <= set(disparities.columns)
    row = disparities[(disparities["metric"] == "refusal_rate")
                      & (disparities["kind"] == "difference")].iloc[0]
    assert row["flagged"] and row["highest"] == "Muslim" and "Muslim: 8" in row["groups (n)"]
    groups = at.dataframe[1].value
    assert set(groups["group"]) == {"Muslim", "Christian", "Jewish"}
    attribute.set_value("age").run()
    assert not at.exception
    assert set(at.dataframe[1].value["group"]) == {"young", "elderly"}
    assert not at.dataframe[0].value["flagged"].any()
