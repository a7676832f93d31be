"""The checks every launch shares (negotiation/services/launch.py): a live room, a batch and a reflect
sequence refuse the same bad seed and temperature with the same words, since they call one check."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from negotiation.models import Batch, NegotiationRun, ReflectSequence, Session
from negotiation.services.batches import batch_create
from negotiation.services.live import live_start
from negotiation.services.reflect import sequence_create

pytestmark = pytest.mark.django_db
LINEAR = {"strategy": "linear"}
AGENTS = {"buyer": LINEAR, "seller": LINEAR, "analyst": LINEAR}


def refusal(call: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as err:
        call()
    return err.value.message_dict


def test_a_boolean_seed_or_round_count_is_refused_by_a_live_room_as_by_a_batch(sample: Session) -> None:
    # (the live room's own copy of the checks took True for 1)
    live = refusal(lambda: live_start(owner=sample.owner, session=sample, item_name="iPhone Case",
                                      seller_agent=LINEAR, analyst_agent=LINEAR, max_rounds=True, seed=True))
    batch = refusal(lambda: batch_create(session=sample, item_name="iPhone Case", runs=1, agents=AGENTS,
                                         max_rounds=True, base_seed=True))
    assert live == {"max_rounds": [f"Must be a whole number from 1 to {settings.MAMS_MAX_ROUNDS_LIMIT}; got True."],
                    "seed": ["Must be a whole number from 0 to 2147483647."]}
    assert batch == {"max_rounds": live["max_rounds"], "base_seed": live["seed"]}
    assert not NegotiationRun.objects.exists() and not Batch.objects.exists()


def test_every_launch_says_the_same_of_a_bad_temperature_and_item(sample: Session) -> None:
    batch = refusal(lambda: batch_create(session=sample, item_name="Nothing", runs=1, agents=AGENTS,
                                         temperature="hot"))
    sequence = refusal(lambda: sequence_create(owner=sample.owner, session=sample, item_name="Nothing",
                                               mode="none", length=2, agents=AGENTS, temperature="hot"))
    live = refusal(lambda: live_start(owner=sample.owner, session=sample, item_name="Nothing",
                                      seller_agent=LINEAR, analyst_agent=LINEAR))
    assert batch["temperature"] == sequence["temperature"] == ["Must be a number from 0 to 2."]
    assert batch["item_name"] == sequence["item_name"] == live["item_name"]
    assert "no demand for 'Nothing'" in live["item_name"][0]
    assert not ReflectSequence.objects.exists()
