"""Fingerprints: pure hashing of what decides how an agent plays (no database)."""

from negotiation.agents.fingerprint import agent_fingerprint, code_version, run_fingerprints

LLM = {"strategy": "llm", "profile": "local", "model": "gemma", "temperature": 0.7, "prompt_format": "completion",
       "prompt_version": "abc123", "fallback": "linear"}


def test_same_configuration_same_fingerprint_and_order_does_not_matter():
    assert agent_fingerprint(LLM) == agent_fingerprint(dict(reversed(list(LLM.items()))))
    assert len(agent_fingerprint(LLM)) == 12


def test_every_field_that_decides_play_changes_the_fingerprint():
    base = agent_fingerprint(LLM)
    for key, other in [("strategy", "boulware"), ("profile", "openrouter"), ("model", "claude"),
                       ("temperature", 0.2), ("prompt_format", "chat"), ("prompt_version", "def456"),
                       ("fallback", "conceder")]:
        assert agent_fingerprint({**LLM, key: other}) != base, key


def test_fields_that_do_not_decide_play_are_ignored():
    assert agent_fingerprint({**LLM, "note": "anything"}) == agent_fingerprint(LLM)
    assert agent_fingerprint({**LLM, "temperature": 0.70000001}) == agent_fingerprint(LLM)


def test_run_fingerprints_split_roles_and_carry_code_version(monkeypatch):
    code_version.cache_clear()
    monkeypatch.setenv("MAMS_CODE_VERSION", "v-test")
    stamps = run_fingerprints({"buyer": LLM, "seller": {**LLM, "model": "other"}})
    code_version.cache_clear()
    assert stamps["code_version"] == "v-test"
    assert stamps["buyer_fingerprint"] == agent_fingerprint(LLM)
    assert stamps["seller_fingerprint"] != stamps["buyer_fingerprint"]


def test_the_rules_are_stamped_into_run_fingerprints_and_known_keeps_the_plain_hash():
    from negotiation.agents.fingerprint import played_fingerprint
    agents = {"buyer": {"strategy": "linear", "temperature": 0.7}, "seller": {"strategy": "boulware"}}
    known = run_fingerprints(agents)
    hidden = run_fingerprints(agents, rules="hidden")
    # known (core-v1, and every run made before the rules existed) keeps the plain agent hash
    assert known["buyer_fingerprint"] == agent_fingerprint(agents["buyer"]) and known["rules"] == "known"
    # hidden (core-v2) never shares a fingerprint with known, for either role
    assert hidden["buyer_fingerprint"] != known["buyer_fingerprint"]
    assert hidden["seller_fingerprint"] != known["seller_fingerprint"] and hidden["rules"] == "hidden"
    # and what a benchmark records for an agent is what its runs record
    assert played_fingerprint(agents["buyer"], rules="hidden") == hidden["buyer_fingerprint"]
    # and the disclosure rule and the rules combine into yet another hash
    both = run_fingerprints(agents, rules="hidden", disclosure="allow")["buyer_fingerprint"]
    assert both not in (hidden["buyer_fingerprint"], run_fingerprints(agents, disclosure="allow")["buyer_fingerprint"])


def test_a_seeded_baseline_never_shares_a_fingerprint_with_the_nominal_curve():
    from negotiation.agents.config import SEEDED_TACTICS
    old = {"strategy": "boulware", "profile": "", "model": "", "temperature": 0.7, "fallback": "linear"}
    # runs recorded before seeds drew beta (no tactics) keep their hash; seeded ones get another
    assert agent_fingerprint({**old, "tactics": SEEDED_TACTICS}) != agent_fingerprint(old)
    assert agent_fingerprint({**old, "tactics": ""}) == agent_fingerprint(old)
