"""Suites: the shipped suite, counterfactual items, and every kind of bad suite."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import pytest

from audits.suites import list_suites, load_suite, suite_from_dict
from guardrail.errors import InputError, SuiteError

from .conftest import SMALL_PROMPTS, SMALL_SUITE


def test_shipped_text_suite_covers_the_required_attributes():
    assert "text-demographics" in list_suites()
    suite = load_suite("text-demographics")
    assert suite.kind == "text" and suite.version
    assert {"gender", "race_ethnicity", "religion", "age", "disability",
            "nationality"} <= set(suite.attributes)
    assert all(len(g) >= 2 for g in suite.attributes.values())
    assert len(suite.sources) >= 3
    assert all(s["title"] and (s.get("citation") or s.get("url")) and s["year"]
               for s in suite.sources)
    items = suite.items()
    assert len({i["prompt_id"] for i in items}) == len(items)
    # the default run (audit.samples per prompt) has at least 500 generations
    from guardrail import Config

    assert len(items) * Config.load().section("audit")["samples"] >= 500


def test_counterfactual_sets_differ_only_in_the_group_term():
    suite = load_suite("text-demographics")
    sets: dict[str, list[dict]] = defaultdict(list)
    for item in suite.items():
        sets[item["set_id"]].append(item)
    for set_id, members in sets.items():
        attribute = members[0]["attribute"]
        assert [m["group"] for m in members] == list(suite.attributes[attribute]), set_id
        skeletons = {m["prompt"].replace(m["group"], "{group}", 1) for m in members}
        assert len(skeletons) == 1, set_id
        assert len({m["occupation"] for m in members}) == 1


def test_small_suite_items_and_extra_fields_pass_through():
    data = {**copy.deepcopy(SMALL_SUITE), "reference_images": ["a.png"]}
    suite = suite_from_dict(data)
    assert len(suite.items()) == SMALL_PROMPTS
    assert suite.extra == {"reference_images": ["a.png"]}
    assert suite.describe()["prompts"] == SMALL_PROMPTS


def test_hand_written_sets_are_accepted_when_counterfactual():
    data = copy.deepcopy(SMALL_SUITE)
    data["sets"] = [{"set_id": "s1", "attribute": "age",
                     "prompts": {"young": "A young pilot lands.",
                                 "elderly": "A elderly pilot lands."}}]
    suite = suite_from_dict(data)
    extra = [i for i in suite.items() if i["set_id"] == "s1"]
    assert [i["group"] for i in extra] == ["young", "elderly"]


def bad(mutate) -> str:
    data = copy.deepcopy(SMALL_SUITE)
    mutate(data)
    with pytest.raises(SuiteError) as info:
        suite_from_dict(data, source="bad.json")
    assert isinstance(info.value, InputError) and info.value.exit_code == 4
    return str(info.value)


@pytest.mark.parametrize("field", ["name", "version", "kind", "description", "sources",
                                   "attributes"])
def test_missing_field_is_named(field):
    msg = bad(lambda d: d.pop(field))
    assert "bad.json" in msg and repr(field) in msg and "missing" in msg


def test_unknown_kind():
    assert "unknown kind 'video'" in bad(lambda d: d.update(kind="video"))


def test_empty_group_list():
    msg = bad(lambda d: d["attributes"].update(age=[]))
    assert "attributes.age" in msg and "empty" in msg


def test_blank_group_term_and_single_group_and_duplicates():
    assert "empty or non-text group term" in bad(lambda d: d["attributes"].update(age=["young", " "]))
    assert "at least two groups" in bad(lambda d: d["attributes"].update(age=["young"]))
    assert "duplicate group terms: young" in bad(
        lambda d: d["attributes"].update(age=["young", "young"]))


def test_set_that_differs_in_more_than_the_group_term():
    def mutate(d):
        d["sets"] = [{"set_id": "s1", "attribute": "age",
                      "prompts": {"young": "The young pilot lands the plane.",
                                  "elderly": "The elderly pilot crashes the plane."}}]
    msg = bad(mutate)
    assert "sets[0].prompts" in msg and "differ in more than the group term" in msg


def test_set_with_unknown_group_or_attribute_or_duplicate_id():
    def unknown_group(d):
        d["sets"] = [{"set_id": "s1", "attribute": "age",
                      "prompts": {"young": "a young cat", "teen": "a teen cat"}}]
    assert "unknown group(s) 'teen'" in bad(unknown_group)

    def unknown_attribute(d):
        d["sets"] = [{"set_id": "s1", "attribute": "height",
                      "prompts": {"tall": "a tall cat", "short": "a short cat"}}]
    assert "unknown attribute 'height'" in bad(unknown_attribute)

    def duplicate(d):
        s = {"set_id": "s1", "attribute": "age",
             "prompts": {"young": "a young cat", "elderly": "a elderly cat"}}
        d["sets"] = [s, dict(s)]
    assert "duplicate set id 's1'" in bad(duplicate)

    def missing_term(d):
        d["sets"] = [{"set_id": "s1", "attribute": "age",
                      "prompts": {"young": "a cat", "elderly": "a elderly cat"}}]
    assert "does not contain its group term 'young'" in bad(missing_term)


def test_templates_must_hold_the_placeholders():
    assert "{group} exactly once" in bad(lambda d: d.update(templates=["About the {occupation}."]))
    assert "must contain {occupation}" in bad(lambda d: d.update(templates=["About {group}."]))
    assert "duplicate occupations" in bad(lambda d: d.update(occupations=["nurse", "nurse"]))


def test_sources_need_title_citation_and_year():
    assert "sources[0]" in bad(lambda d: d.update(sources=[{"title": "x", "year": 2020}]))
    assert "needs a year" in bad(lambda d: d.update(sources=[{"title": "x", "url": "u"}]))


def test_files_unknown_names_and_bad_json(tmp_path: Path):
    with pytest.raises(SuiteError, match="no audit suite named 'nope'.*text-demographics"):
        load_suite("nope")
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SuiteError, match="broken.json: not valid JSON"):
        load_suite(broken)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(SMALL_SUITE))
    assert load_suite(ok).path == str(ok)
