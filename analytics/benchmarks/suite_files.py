"""Benchmark suites as files: read and check `suites/<name>-v<N>/` without a database.

A suite directory holds `suite.json` (name, version, description, and its scenarios: a slug, a
title, the scenario file and the items to negotiate) and one JSON file per scenario in the REST
API's session import format (negotiation/services/sessions.py::session_import). A suite is
referred to as `core-v1` (that version) or `core` (its latest version). A manifest may name the
turn-taking `rules` its runs play under (negotiation/engine/protocol.py::Rules: `known`, the
default, or `hidden`, which core-v2 uses so that waiting alone cannot win); the rules are part of
the content hash, so a suite version never changes its rules.

A scenario is checked against the session document's own model (negotiation/documents.py, the
database's rules: cost < least <= selling, weights in [0, 1] summing to 1, at most
MAMS_MAX_SELLERS sellers, unique handles), so that a bad file is reported with its path before
anything is imported, plus the suite's own rule: every listed item demanded and stocked. The
content hash covers the manifest and every scenario document (canonical JSON), so the database
side (analytics/benchmarks/services.py::suite_load) can refuse a changed file under an old version.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from negotiation.documents import SessionDocument, document_problems
from negotiation.engine.names import name_key
from negotiation.engine.protocol import parse_rules

SUITES_DIR = Path(__file__).resolve().parent.parent.parent / "suites"
_DIR_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*?)-v(?P<version>[1-9][0-9]*)$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class SuiteError(ValueError):
    """An unknown suite reference or an invalid suite file; the message says which and how to fix it."""


@dataclass(frozen=True)
class ScenarioFile:
    slug: str
    title: str
    document: dict[str, Any] = field(repr=False)  # as written: the content hash covers it
    items: list[str]
    parsed: SessionDocument = field(repr=False, compare=False)  # checked once, imported as is


@dataclass(frozen=True)
class SuiteFile:
    name: str
    version: int
    label: str
    description: str
    content_hash: str
    scenarios: list[ScenarioFile]
    rules: str = "known"
    replication: dict[str, Any] | None = None  # a replication suite's paper, metrics and published figures

    def scenario(self, slug: str) -> ScenarioFile:
        for s in self.scenarios:
            if s.slug == slug:
                return s
        raise SuiteError(f"suite {self.label} has no scenario '{slug}'")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(manifest: dict[str, Any], documents: dict[str, dict[str, Any]]) -> str:
    """sha256 over the canonical JSON of the manifest and every scenario document (by slug)."""
    return hashlib.sha256(canonical_json({"manifest": manifest, "scenarios": documents}).encode()).hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SuiteError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: not valid JSON ({exc})") from exc


def check_document(document: Any, items: list[str], where: str) -> list[str]:
    """Every rule the database would enforce on this scenario (negotiation/documents.py's SessionDocument),
    and the suite's own (each listed item demanded and stocked), as a list of problems (empty if fine)."""
    return _checked(document, items, where)[1]


def _checked(document: Any, items: list[str], where: str) -> tuple[SessionDocument | None, list[str]]:
    if not isinstance(document, dict):
        return None, [f"{where}: the scenario must be a JSON object in the session import format"]
    parsed, problems = document_problems(document)
    out = [f"{where}: {path}: {message}" for path, message in problems]
    if parsed is not None and not parsed.sellers:
        out.append(f"{where}: sellers must list at least one seller")
    if not items:
        out.append(f"{where}: the manifest lists no items to negotiate")
    if parsed is None:
        return None, out
    for item in items:
        if parsed.demand(item) is None:
            out.append(f"{where}: item '{item}' is not demanded by the buyer")
        elif not parsed.stocked(item):
            out.append(f"{where}: no seller stocks '{item}'")
    demanded = {name_key(d.item_name) for d in parsed.buyer.item_demands}
    if len(items) > 1 and {name_key(i) for i in items} != demanded:
        # A multi-item scenario runs as one batch over every demanded item (batch_create's item_name=None).
        out.append(f"{where}: a scenario with several items must list every demanded item "
                   f"({', '.join(d.item_name for d in parsed.buyer.item_demands)})")
    return parsed, out


# The metrics a replication suite may report (analytics/benchmarks/replication.py computes each from
# analytics/metrics.py).
REPLICATION_METRICS = ("deal_rate", "mean_price", "buyer_payoff", "price_reduction_rate", "relative_profit",
                       "out_of_budget_rate")


# A figure's scenario may be this: the paper pooled every budget and product, so MAMS pools every scenario.
POOLED = "all"


def check_replication(value: Any, slugs: set[str], where: str) -> list[str]:
    """A replication section: the paper, max_rounds, the metrics, optional scenario groups, and the
    published figures (each a scenario, group or "all", a metric, a label, a value or a low-high range,
    and optionally the source it was read from)."""
    if not isinstance(value, dict):
        return [f"{where}: must be an object with paper, max_rounds, metrics and figures"]
    problems = []
    if not isinstance(value.get("paper"), str) or not value["paper"].strip():
        problems.append(f"{where}.paper: name the paper")
    rounds = value.get("max_rounds")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= settings.MAMS_MAX_ROUNDS_LIMIT:
        problems.append(f"{where}.max_rounds: a whole number from 1 to {settings.MAMS_MAX_ROUNDS_LIMIT}")
    metrics = value.get("metrics")
    if not isinstance(metrics, list) or not metrics or not set(metrics) <= set(REPLICATION_METRICS):
        problems.append(f"{where}.metrics: a list of {', '.join(REPLICATION_METRICS)}")
        metrics = []
    groups = value.get("groups") or {}
    if not isinstance(groups, dict) or not set(groups) <= slugs:
        problems.append(f"{where}.groups: an object mapping scenario slugs to group names")
        groups = {}
    known = slugs | set(groups.values()) | {POOLED}
    figures = value.get("figures")
    if not isinstance(figures, list):
        return [*problems, f"{where}.figures: a list (empty when the paper gives no figure to compare)"]
    for i, f in enumerate(figures):
        at = f"{where}.figures[{i}]"
        if not isinstance(f, dict):
            problems.append(f"{at}: must be an object")
            continue
        if f.get("scenario") not in known:
            problems.append(f"{at}.scenario: one of {', '.join(sorted(known))}")
        if f.get("metric") not in metrics:
            problems.append(f"{at}.metric: one of the suite's metrics ({', '.join(metrics)})")
        if "source" in f and (not isinstance(f["source"], str) or not f["source"].strip()):
            problems.append(f"{at}.source: where the figure was read (URL or repository path and table)")
        numbers = [f.get(k) for k in ("value",) if k in f] or [f.get("low"), f.get("high")]
        if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
            problems.append(f"{at}: give a number as value, or low and high")
    return problems


def _load_dir(path: Path) -> SuiteFile:
    m = _DIR_RE.match(path.name)
    if not m:
        raise SuiteError(f"{path}: a suite directory is named <name>-v<N>, e.g. core-v1")
    manifest = _read_json(path / "suite.json")
    where = f"{path.name}/suite.json"
    if not isinstance(manifest, dict):
        raise SuiteError(f"{where}: must be a JSON object")
    name, version = manifest.get("name"), manifest.get("version")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SuiteError(f"{where}: name must be lower-case letters, digits, '-' or '_' (got {name!r})")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SuiteError(f"{where}: version must be a whole number >= 1 (got {version!r})")
    if (name, version) != (m["name"], int(m["version"])):
        raise SuiteError(f"{where}: says {name}-v{version} but lives in {path.name}/; rename one to match")
    try:
        rules = parse_rules(manifest.get("rules", "known")).value
    except ValueError as exc:
        raise SuiteError(f"{where}: rules: {exc}") from None
    entries = manifest.get("scenarios")
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"{where}: scenarios must list at least one scenario")
    scenarios: list[ScenarioFile] = []
    documents: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for i, entry in enumerate(entries):
        at = f"{where}: scenarios[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{at}: must be an object with slug, title, file and items")
            continue
        slug, file, items = entry.get("slug"), entry.get("file"), entry.get("items")
        if not isinstance(slug, str) or not _SLUG_RE.match(slug):
            problems.append(f"{at}.slug: lower-case letters, digits and '-', at most 64 (got {slug!r})")
            continue
        if slug in documents:
            problems.append(f"{at}.slug: '{slug}' is used twice")
            continue
        if not isinstance(file, str) or "/" in file or "\\" in file or not file.endswith(".json"):
            problems.append(f"{at}.file: a .json file name in the suite directory (got {file!r})")
            continue
        if not isinstance(items, list) or not all(isinstance(x, str) and x.strip() for x in items):
            problems.append(f"{at}.items: a list of item names (got {items!r})")
            continue
        document = _read_json(path / file)
        parsed, found = _checked(document, items, f"{path.name}/{file}")
        problems.extend(found)
        documents[slug] = document
        if parsed is not None:
            scenarios.append(ScenarioFile(slug=slug, title=str(entry.get("title") or slug), document=document,
                                          items=[x.strip() for x in items], parsed=parsed))
    replication = manifest.get("replication")
    if replication is not None:
        problems.extend(check_replication(replication, set(documents), f"{where}: replication"))
    if problems:
        raise SuiteError(f"suite {path.name} is invalid:\n- " + "\n- ".join(problems))
    return SuiteFile(name=name, version=version, label=f"{name}-v{version}",
                     description=str(manifest.get("description", "")), content_hash=content_hash(manifest, documents),
                     scenarios=scenarios, rules=rules, replication=replication)


def _dirs(root: Path) -> list[tuple[str, int, Path]]:
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _DIR_RE.match(p.name)
        if p.is_dir() and m and (p / "suite.json").is_file():
            out.append((m["name"], int(m["version"]), p))
    return sorted(out)


def list_suites(root: Path | None = None) -> list[SuiteFile]:
    """Every suite version under the suites directory, by name then version (invalid ones raise)."""
    return [_load_dir(p) for _, _, p in _dirs(root or SUITES_DIR)]


def load_suite(ref: str, root: Path | None = None) -> SuiteFile:
    """The suite `ref` names: "core-v1" (that version) or "core" (its latest version)."""
    ref = (ref or "").strip()
    found = _dirs(root or SUITES_DIR)
    known = sorted({f"{n} (v{', v'.join(str(v) for nn, v, _ in found if nn == n)})" for n, _, _ in found})
    hint = f"Known suites: {', '.join(known)}." if known else f"No suites found under {root or SUITES_DIR}."
    m = _DIR_RE.match(ref)
    if m:
        for n, v, p in found:
            if (n, v) == (m["name"], int(m["version"])):
                return _load_dir(p)
    else:
        versions = [(v, p) for n, v, p in found if n == ref]
        if versions:
            return _load_dir(max(versions)[1])
    raise SuiteError(f"unknown suite '{ref}'. Use <name> for the latest version or <name>-v<N>. {hint}")


__all__ = ["REPLICATION_METRICS", "SUITES_DIR", "ScenarioFile", "SuiteError", "SuiteFile", "check_document",
           "check_replication", "content_hash", "list_suites", "load_suite"]
