"""factory-boy factories for negotiation.models: every default is a valid row.

A seller's weights always sum to 1 and an inventory line always has a valid price ladder
(cost < least <= selling), so a test changes only the value it is about.
"""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from negotiation.models import BuyerDemand, InventoryItem, Seller, Session


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw")


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    name = factory.Sequence(lambda n: f"session-{n}")


class BuyerDemandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BuyerDemand

    session = factory.SubFactory(SessionFactory)
    item_name = factory.Sequence(lambda n: f"Item {n}")
    quantity = 1
    min_price = Decimal("5.00")
    max_price = Decimal("9.00")


class SellerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Seller

    session = factory.SubFactory(SessionFactory)
    handle = factory.Sequence(lambda n: f"@Seller{n}")
    customer_retention_weight = Decimal("0.60")
    profit_maximization_weight = factory.LazyAttribute(lambda s: Decimal("1") - s.customer_retention_weight)


class InventoryItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InventoryItem

    seller = factory.SubFactory(SellerFactory)
    item_name = factory.Sequence(lambda n: f"Item {n}")
    cost_price = Decimal("4.00")
    least_price = Decimal("6.00")
    selling_price = Decimal("9.00")
