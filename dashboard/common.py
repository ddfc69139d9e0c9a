"""Shared helpers of the dashboard pages: the store, cached read-only queries, hints.

The dashboard only reads the record store. Heavy objects (the configuration, the store's
engine) are cached with ``st.cache_resource``; query results (plain dicts, so they can be
pickled) with ``st.cache_data(ttl=5)``.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import streamlit as st

from guardrail.config import Config
from guardrail.store import ReportNotFound, ReportStore

from . import queries

STORE_ENV = "GUARDRAIL_STORE_URL"
TTL = 5  # seconds a query result is reused

DEMO_HINT = ("The record store is empty. Produce some records with `guardrail demo` "
             "(one text, one image and one audio output through the guard), or with "
             "`guardrail generate --modality image --prompt \"...\" -o out.png`.")


@st.cache_resource(show_spinner=False)
def get_config() -> Config:
    """The configuration (``GUARDRAIL_STORE_URL`` is not a config key, so it is left out)."""
    environ = {k: v for k, v in os.environ.items() if k != STORE_ENV}
    return Config.load(environ=environ)


def store_url() -> str:
    return os.environ.get(STORE_ENV) or get_config().store_url


@st.cache_resource(show_spinner=False)
def get_store(url: str) -> ReportStore:
    return ReportStore(url)


def store() -> ReportStore:
    return get_store(store_url())


# -- cached queries (return plain, picklable data) ----------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def count_reports(url: str, **filters: Any) -> int:
    return get_store(url).count(**filters)


@st.cache_data(ttl=TTL, show_spinner=False)
def list_reports(url: str, *, limit: int, offset: int, **filters: Any) -> list[dict[str, Any]]:
    return [r.to_dict() for r in get_store(url).list(limit=limit, offset=offset, **filters)]


@st.cache_data(ttl=TTL, show_spinner=False)
def get_report(url: str, report_id: str) -> dict[str, Any] | None:
    try:
        return get_store(url).get(report_id).to_dict()
    except ReportNotFound:
        return None


@st.cache_data(ttl=TTL, show_spinner=False)
def overview_data(url: str) -> dict[str, Any]:
    engine = get_store(url).engine
    return {"shares": queries.shares(engine), "per_day": queries.per_modality_per_day(engine),
            "problems": queries.recent_problems(engine, limit=20)}


@st.cache_data(ttl=TTL, show_spinner=False)
def list_evaluations(url: str, kind: str, limit: int = 50) -> list[dict[str, Any]]:
    return [e.to_dict() for e in get_store(url).list_evaluations(kind=kind, limit=limit)]


def when(iso: str | None) -> str:
    """``2025-01-02 03:04:05`` from an ISO timestamp."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def evaluation_label(ev: dict[str, Any]) -> str:
    return f"{ev['name']} - {when(ev['created_at'])} ({ev['evaluation_id'][:8]})"


def empty_store_hint() -> None:
    st.info(DEMO_HINT)
