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
