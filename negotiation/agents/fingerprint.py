"""What produced a run, as short hashes, so results are compared only with like results.

An agent's fingerprint hashes everything that decides how it plays: strategy, profile, model,
temperature, prompt format and the prompt version (the templates' hash, plus any strategy notes a
reflect sequence added). The seed and the code version are recorded beside it, not inside it: the
seed varies by design within a batch, and the code version changes with every commit while the
agent's behaviour usually does not. Pages show all three, so a reader can judge.

The batch's disclosure rule decides what each side receives, so it is part of a run's
fingerprint too: a run stamped `allow` never has the fingerprints of a `redact` run. Under the
default `redact` the agent hashes are the plain `agent_fingerprint`, which is what benchmarks and
the leaderboard match a configured agent against. The turn-taking rules (engine/protocol.py::Rules)
are stamped the same way: a `hidden`-deadline run (core-v2) never shares a fingerprint with a
`known`-deadline one, whose closing turn rewards waiting; `known` keeps the plain hashes, so
results recorded before the rules existed keep theirs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

FINGERPRINT_FIELDS = ("strategy", "profile", "model", "temperature", "prompt_format", "prompt_version", "fallback")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DISCLOSURE = "redact"  # negotiation.engine.disclosure.Disclosure.REDACT
DEFAULT_RULES = "known"  # negotiation.engine.protocol.Rules.KNOWN


def agent_fingerprint(entry: dict[str, Any]) -> str:
    """12 hex characters over the fields that decide how a resolved agent plays.

    A seeded baseline (agents/baseline.py::Tactic) carries `tactics` (its draw's version), hashed only
    when present: "boulware" played the nominal curve before seeds drew its beta, so its new runs
    must not share a fingerprint with the old ones, while every other entry keeps its hash.
    """
    data = {k: entry.get(k) for k in FINGERPRINT_FIELDS}
    if entry.get("tactics"):
        data["tactics"] = entry["tactics"]
    if data["temperature"] is not None:
        data["temperature"] = round(float(data["temperature"]), 4)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@functools.cache
def code_version() -> str:
    """MAMS_CODE_VERSION when set (deployments without .git), else the git commit, else 'unknown'."""
    if env := os.environ.get("MAMS_CODE_VERSION", "").strip():
        return env[:40]
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _with_rule(fingerprint: str, disclosure: str, rules: str = DEFAULT_RULES) -> str:
    if disclosure != DEFAULT_DISCLOSURE:
        fingerprint = hashlib.sha256(f"{fingerprint}|disclosure={disclosure}".encode()).hexdigest()[:12]
    if rules != DEFAULT_RULES:
        fingerprint = hashlib.sha256(f"{fingerprint}|rules={rules}".encode()).hexdigest()[:12]
    return fingerprint


def played_fingerprint(agent: dict[str, Any], *, rules: str = DEFAULT_RULES,
                       disclosure: str = DEFAULT_DISCLOSURE) -> str:
    """The fingerprint a run records for `agent` played under these rules (what benchmarks match)."""
    return _with_rule(agent_fingerprint(agent), disclosure, rules)


def run_fingerprints(agents: dict[str, dict[str, Any]], *, disclosure: str = "redact",
                     rules: str = DEFAULT_RULES) -> dict[str, str]:
    """The fingerprint columns of a run, from its resolved agents, its disclosure rule and its rules."""
    return {"buyer_fingerprint": _with_rule(agent_fingerprint(agents.get("buyer", {})), disclosure, rules),
            "seller_fingerprint": _with_rule(agent_fingerprint(agents.get("seller", {})), disclosure, rules),
            "code_version": code_version(), "disclosure": disclosure, "rules": rules}


__all__ = ["FINGERPRINT_FIELDS", "agent_fingerprint", "code_version", "played_fingerprint", "run_fingerprints"]
