import pytest, re
from negotiation.models import *
from tests.factories import *

pytestmark = pytest.mark.django_db

def test_probe(admin_client):
    r = admin_client.get("/admin/negotiation/session/add/")
    html = r.content.decode()
    print(sorted(set(re.findall(r'name="([^"]+)"', html))))
    data = {"name": "x", "description": "",
            "demands-TOTAL_FORMS": "2", "demands-INITIAL_FORMS": "0", "demands-MIN_NUM_FORMS": "0", "demands-MAX_NUM_FORMS": "1000",
            "demands-0-item_name": "A", "demands-0-quantity": "1", "demands-0-min_price": "1", "demands-0-max_price": "2",
            "demands-1-item_name": "a", "demands-1-quantity": "1", "demands-1-min_price": "1", "demands-1-max_price": "2",
            "sellers-TOTAL_FORMS": "0", "sellers-INITIAL_FORMS": "0", "sellers-MIN_NUM_FORMS": "0", "sellers-MAX_NUM_FORMS": "10"}
    r = admin_client.post("/admin/negotiation/session/add/", data)
    print(r.status_code)
    print(r.content.decode().count("errorlist"), re.findall(r'<ul class="errorlist[^>]*>(.*?)</ul>', r.content.decode(), re.S))
    s = SellerFactory()
    r = admin_client.get(f"/admin/negotiation/seller/{s.pk}/change/")
    print(sorted(set(re.findall(r'name="([^"]+)"', r.content.decode()))))
    for m in [NegotiationRun, Batch, Message, Outcome, RunEvent]:
        print(m.__name__, admin_client.get(f"/admin/negotiation/{m._meta.model_name}/add/").status_code)
