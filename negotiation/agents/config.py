"""Agent configuration per role (buyer, seller, analyst), validated once when a batch is made.

A role is played by an LLM through a named profile, or by a baseline concession strategy with no
LLM at all. The resolved form (model filled in from the profile, prompt version stamped) is stored
on every run, so a result can always be traced to exactly what produced it.
"""

from __future__ import annotations

from typing import Literal

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from negotiation.agents.gateway import LLMError, get_profile, profile_names
from negotiation.agents.prompts import VARIANTS, prompt_version

BASELINES = ("boulware", "linear", "conceder")
# The same curves with no per-run draw (agents/baseline.py::Tactic): the deterministic mode, by name.
FIXED_BASELINES = tuple(f"{name}-fixed" for name in BASELINES)
# Buyer-only reference policies a sound benchmark must not reward (agents/canaries.py).
CANARIES = ("canary-patient", "canary-accept-first", "canary-random")
STRATEGIES = ("llm", *BASELINES, *FIXED_BASELINES, *CANARIES)
# Stamped on a seeded baseline's resolved entry, so its fingerprint differs from the nominal curve's runs
# recorded before seeds drew beta and the opening (negotiation/agents/fingerprint.py).
SEEDED_TACTICS = "seeded-v1"
Baseline = Literal["boulware", "linear", "conceder", "boulware-fixed", "linear-fixed", "conceder-fixed"]
ROLES = ("buyer", "seller", "analyst")


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    strategy: Literal["llm", "boulware", "linear", "conceder", "boulware-fixed", "linear-fixed",
                      "conceder-fixed", "canary-patient", "canary-accept-first", "canary-random"] = "llm"
    profile: str = Field(default_factory=lambda: settings.LLM_DEFAULT_PROFILE)
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    fallback: Baseline = "linear"
    prompt_variant: str = "default"

    @field_validator("prompt_variant")
    @classmethod
    def _known_variant(cls, v: str) -> str:
        if v not in VARIANTS:
            raise ValueError(f"unknown prompt variant '{v}'; choose one of {', '.join(VARIANTS)}")
        return v

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        if v not in settings.LLM_PROFILES:
            raise ValueError(f"unknown profile '{v}'; choose one of {', '.join(profile_names())}")
        return v


class AgentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    buyer: AgentSpec = Field(default_factory=AgentSpec)
    seller: AgentSpec = Field(default_factory=AgentSpec)
    analyst: AgentSpec = Field(default_factory=AgentSpec)

    @model_validator(mode="after")
    def _canaries_buy(self) -> AgentsConfig:
        for role in ("seller", "analyst"):
            if getattr(self, role).strategy in CANARIES:
                raise ValueError(f"{getattr(self, role).strategy} is a buyer policy; the {role} cannot play it")
        return self


class UnknownModel(LLMError):
    """A model the profile does not serve; `role` says which agent asked for it."""

    def __init__(self, role: str, message: str) -> None:
        super().__init__(message)
        self.role = role


def resolve_agents(raw: dict | None, *, temperature: float) -> dict[str, dict]:
    """Validate and resolve; raises ValueError (pydantic) or LLMError naming the setting to fix."""
    config = AgentsConfig.model_validate(raw or {})
    resolved: dict[str, dict] = {}
    for role in ROLES:
        spec: AgentSpec = getattr(config, role)
        entry = spec.model_dump()
        entry["temperature"] = temperature if spec.temperature is None else spec.temperature
        if spec.strategy == "llm":
            profile = get_profile(spec.profile)  # raises LLMError when a key or URL is missing
            entry["model"] = spec.model or profile.model_for(role)
            raw_profile = settings.LLM_PROFILES[spec.profile]
            known = raw_profile.get("known_models") or []
            if known and entry["model"] not in known:
                raise UnknownModel(role, f"unknown model '{entry['model']}' for profile '{spec.profile}'; known: "
                                         f"{', '.join(known)} (setting: {raw_profile.get('known_models_env')})")
            entry["prompt_format"] = profile.prompt_format
            entry["prompt_version"] = prompt_version(variant=spec.prompt_variant)
        else:
            entry["model"] = ""
            entry["profile"] = ""
            if spec.strategy in BASELINES:
                entry["tactics"] = SEEDED_TACTICS
        resolved[role] = entry
    return resolved


__all__ = ["BASELINES", "CANARIES", "FIXED_BASELINES", "STRATEGIES", "AgentSpec", "AgentsConfig", "LLMError",
           "UnknownModel", "resolve_agents"]
