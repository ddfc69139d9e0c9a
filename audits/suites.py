"""Prompt suites: versioned JSON files of counterfactual prompt sets, with their sources.

A suite names demographic *attributes* (gender, religion, ...) and, for each, the *group
terms* that stand in for one another. Prompts come in counterfactual sets: the prompts of one
set are identical except for the group term, so any difference between their outputs is
attributable to that term.

Two ways to write the sets, both in one file:

* ``templates`` x ``occupations`` x ``attributes``: every template (with ``{group}`` and, if
  the suite has occupations, ``{occupation}``) is filled with every occupation; each
  (template, occupation, attribute) is one set, with one prompt per group of the attribute.
* ``sets``: hand-written sets ``{"set_id", "attribute", "prompts": {group: prompt}}``;
  validation checks that the prompts differ only in the group term.

Required fields: ``name``, ``version``, ``kind`` (a registered audit runner: ``text``,
``image``, ``safety`` or one a plug-in adds, see :mod:`audits.runner`),
``description``, ``sources`` (each with ``title``, ``citation`` or ``url``, ``year``) and
``attributes``. Any other top-level field is kept in :attr:`Suite.extra` for the runner of
that kind.

Examples
--------
>>> suite = load_suite("text-demographics")
>>> suite.kind, "gender" in suite.attributes
('text', True)
>>> item = suite.items()[0]
>>> sorted(item)[:3]
['attribute', 'group', 'occupation']
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from guardrail import plugins
from guardrail.errors import SuiteError

__all__ = ["Suite", "list_suites", "load_suite", "suite_from_dict"]

_REQUIRED = ("name", "version", "kind", "description", "sources", "attributes")
_KNOWN = {*_REQUIRED, "templates", "occupations", "sets", "limits"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")


@dataclass(frozen=True)
class Suite:
    """A validated prompt suite. Build it with :func:`load_suite` or :func:`suite_from_dict`.

    Attributes
    ----------
    attributes : dict
        Attribute name -> list of group terms (at least two per attribute).
    templates, occupations : list of str
        Template prompts (``{group}``, ``{occupation}``) and the occupations they are filled
        with; either may be empty when the suite has hand-written ``sets``.
    sets : list of dict
        Hand-written counterfactual sets.
    extra : dict
        Kind-specific fields (passed through unchecked for the runner of that kind).
    digest : str
        SHA-256 of the file's canonical JSON (the audit records it).
    """

    name: str
    version: str
    kind: str
    description: str
    sources: tuple[Mapping[str, Any], ...]
    attributes: Mapping[str, tuple[str, ...]]
    templates: tuple[str, ...] = ()
    occupations: tuple[str, ...] = ()
    sets: tuple[Mapping[str, Any], ...] = ()
    limits: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None
    digest: str = ""

    def items(self) -> list[dict[str, Any]]:
        """Every prompt of the suite, set by set: dicts with ``prompt_id``, ``set_id``,
        ``attribute``, ``group``, ``prompt`` and ``occupation`` (``None`` when unused),
        and ``template`` (the template's index, or ``None`` for a hand-written set)."""
        out: list[dict[str, Any]] = []
        occupations = self.occupations or (None,)
        for t, template in enumerate(self.templates):
            for occupation in occupations:
                for attribute, groups in self.attributes.items():
                    set_id = f"t{t}:{_slug(occupation or '-')}:{attribute}"
                    for group in groups:
                        prompt = template.replace("{group}", group)
                        if occupation is not None:
                            prompt = prompt.replace("{occupation}", occupation)
                        out.append({"prompt_id": f"{set_id}:{_slug(group)}", "set_id": set_id,
                                    "attribute": attribute, "group": group, "prompt": prompt,
                                    "occupation": occupation, "template": t})
        for s in self.sets:
            for group, prompt in s["prompts"].items():
                out.append({"prompt_id": f"{s['set_id']}:{_slug(group)}", "set_id": s["set_id"],
                            "attribute": s["attribute"], "group": group, "prompt": prompt,
                            "occupation": s.get("occupation"), "template": None})
        return out

    def describe(self) -> dict[str, Any]:
        """What an audit records about its suite."""
        return {"name": self.name, "version": self.version, "kind": self.kind,
                "description": self.description, "sources": [dict(s) for s in self.sources],
                "attributes": {a: list(g) for a, g in self.attributes.items()},
                "prompts": len(self.items()), "digest": self.digest, "path": self.path,
                "limits": list(self.limits)}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def suites_dir() -> Path:
    """The folder of the shipped suites (package data of ``audits``)."""
    return Path(str(resources.files("audits").joinpath("suites")))


def list_suites() -> list[str]:
    """Names of the shipped suites."""
    folder = suites_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_suite(name_or_path: str | Path) -> Suite:
    """Load a shipped suite by name (``text-demographics``) or a suite file by path.

    Raises
    ------
    SuiteError
        The suite does not exist, is not valid JSON, or fails validation (the message names
        the file and the field).
    """
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.suffix == ".json" or candidate.exists() or "/" in text:
        path = candidate
    else:
        path = suites_dir() / f"{text}.json"
        if not path.is_file():
            known = ", ".join(list_suites()) or "(none)"
            raise SuiteError(f"no audit suite named {text!r}; shipped suites: {known} "
                             "(or pass the path of a suite file)")
    if not path.is_file():
        raise SuiteError(f"suite file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        what = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else "cannot read it"
        raise SuiteError(f"{path}: {what}: {exc}") from None
    return suite_from_dict(data, source=str(path))


def suite_from_dict(data: Any, *, source: str = "<suite>") -> Suite:
    """Validate a suite given as a dict (the parsed JSON file)."""
    def fail(field_name: str, problem: str) -> SuiteError:
        return SuiteError(f"{source}: field {field_name!r}: {problem}")

    if not isinstance(data, Mapping):
        raise SuiteError(f"{source}: a suite must be a JSON object, got {type(data).__name__}")
    for key in _REQUIRED:
        if key not in data or data[key] in (None, "", [], {}):
            raise fail(key, "missing or empty (required: " + ", ".join(_REQUIRED) + ")")
    for key in ("name", "version", "description"):
        if not isinstance(data[key], str):
            raise fail(key, f"must be a string, got {type(data[key]).__name__}")
    if not _ID.match(data["name"]):
        raise fail("name", f"{data['name']!r} must be letters, digits and - _ . only")
    kinds = plugins.names(plugins.AUDITS)
    if data["kind"] not in kinds:
        raise fail("kind", f"unknown kind {data['kind']!r}; choose one of {', '.join(kinds)}")
    sources = _sources(data["sources"], fail)
    attributes = _attributes(data["attributes"], fail)
    templates = _strings(data.get("templates", []), "templates", fail)
    occupations = _strings(data.get("occupations", []), "occupations", fail)
    limits = _strings(data.get("limits", []), "limits", fail)
    for i, template in enumerate(templates):
        if template.count("{group}") != 1:
            raise fail(f"templates[{i}]", "must contain {group} exactly once")
        if occupations and "{occupation}" not in template:
            raise fail(f"templates[{i}]", "must contain {occupation} (the suite has occupations)")
        if not occupations and "{occupation}" in template:
            raise fail(f"templates[{i}]", "uses {occupation} but the suite has no occupations")
    if len(set(templates)) != len(templates):
        raise fail("templates", "duplicate templates")
    if len(set(occupations)) != len(occupations):
        dup = [o for o, c in Counter(occupations).items() if c > 1]
        raise fail("occupations", f"duplicate occupations: {', '.join(dup)}")
    sets = _sets(data.get("sets", []), attributes, fail)
    if not templates and not sets:
        raise fail("templates", "the suite has neither templates nor sets, so no prompts")
    extra = {k: v for k, v in data.items() if k not in _KNOWN}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    suite = Suite(name=data["name"], version=data["version"], kind=data["kind"],
                  description=data["description"], sources=sources, attributes=attributes,
                  templates=templates, occupations=occupations, sets=sets, limits=limits,
                  extra=extra, path=None if source.startswith("<") else source, digest=digest)
    ids = Counter(item["prompt_id"] for item in suite.items())
    dups = [i for i, c in ids.items() if c > 1]
    if dups:
        raise fail("sets", f"duplicate prompt ids: {', '.join(sorted(dups)[:5])}")
    return suite


def _sources(value: Any, fail: Any) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list):
        raise fail("sources", "must be a list of {title, citation or url, year, note}")
    out = []
    for i, src in enumerate(value):
        if not isinstance(src, Mapping) or not src.get("title"):
            raise fail(f"sources[{i}]", "each source needs a title")
        if not (src.get("citation") or src.get("url")):
            raise fail(f"sources[{i}]", "each source needs a citation or a url")
        if "year" not in src:
            raise fail(f"sources[{i}]", "each source needs a year")
        out.append(dict(src))
    return tuple(out)


def _attributes(value: Any, fail: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise fail("attributes", "must be an object: attribute -> list of group terms")
    out: dict[str, tuple[str, ...]] = {}
    for attribute, groups in value.items():
        where = f"attributes.{attribute}"
        if not _ID.match(str(attribute)):
            raise fail(where, "attribute names are letters, digits and - _ . only")
        if not isinstance(groups, list) or not groups:
            raise fail(where, "empty: list at least two group terms")
        terms = []
        for g in groups:
            if not isinstance(g, str) or not g.strip():
                raise fail(where, f"empty or non-text group term {g!r}")
            terms.append(g.strip())
        if len(terms) < 2:
            raise fail(where, "needs at least two groups to compare")
        if len(set(terms)) != len(terms):
            dup = [t for t, c in Counter(terms).items() if c > 1]
            raise fail(where, f"duplicate group terms: {', '.join(dup)}")
        out[str(attribute)] = tuple(terms)
    return out


def _strings(value: Any, name: str, fail: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise fail(name, "must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _sets(value: Any, attributes: Mapping[str, tuple[str, ...]],
          fail: Any) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list):
        raise fail("sets", "must be a list of {set_id, attribute, prompts: {group: prompt}}")
    out, seen = [], set()
    for i, s in enumerate(value):
        where = f"sets[{i}]"
        if not isinstance(s, Mapping):
            raise fail(where, "must be an object")
        for key in ("set_id", "attribute", "prompts"):
            if not s.get(key):
                raise fail(f"{where}.{key}", "missing or empty")
        if not _ID.match(str(s["set_id"])):
            raise fail(f"{where}.set_id", "letters, digits and - _ . : + only")
        if s["set_id"] in seen:
            raise fail(f"{where}.set_id", f"duplicate set id {s['set_id']!r}")
        seen.add(s["set_id"])
        attribute = s["attribute"]
        if attribute not in attributes:
            raise fail(f"{where}.attribute",
                       f"unknown attribute {attribute!r}; the suite's attributes: "
                       + ", ".join(attributes))
        prompts = s["prompts"]
        if not isinstance(prompts, Mapping) or len(prompts) < 2:
            raise fail(f"{where}.prompts", "needs one prompt for each of at least two groups")
        unknown = [g for g in prompts if g not in attributes[attribute]]
        if unknown:
            raise fail(f"{where}.prompts",
                       f"unknown group(s) {', '.join(map(repr, unknown))} for attribute "
                       f"{attribute!r} (known: {', '.join(attributes[attribute])})")
        skeletons = {}
        for group, prompt in prompts.items():
            if not isinstance(prompt, str) or not prompt.strip():
                raise fail(f"{where}.prompts.{group}", "empty prompt")
            skeleton, n = re.subn(r"(?<!\w)" + re.escape(group) + r"(?!\w)", "{group}", prompt)
            if n == 0:
                raise fail(f"{where}.prompts.{group}",
                           f"the prompt does not contain its group term {group!r}")
            skeletons[group] = skeleton
        if len(set(skeletons.values())) > 1:
            a = next(iter(skeletons))
            b = next(g for g in skeletons if skeletons[g] != skeletons[a])
            raise fail(f"{where}.prompts",
                       "not a counterfactual set: the prompts differ in more than the group "
                       f"term (e.g. {a!r}: {skeletons[a]!r} vs {b!r}: {skeletons[b]!r})")
        out.append({**s, "prompts": dict(prompts)})
    return tuple(out)
