import pytest

from tests.clients import api_client_for as client_for
from tests.factories import (
    ArtifactFactory,
    PartnerFactory,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    StaffFactory,
    ToolConnectionFactory,
)

SECRET = "tok-SECRET-123"

pytestmark = pytest.mark.django_db


def test_connections_list_their_health_and_never_their_credentials():
    connection = ToolConnectionFactory(credentials={"email": "bot@example.test", "api_token": SECRET})
    response = client_for(StaffFactory()).get("/api/connections/")
    assert response.status_code == 200
    assert response.json()["results"][0]["name"] == connection.name
    assert "healthy" in response.json()["results"][0]
    assert SECRET not in response.content.decode()
    assert "credentials" not in response.content.decode()
    detail = client_for(StaffFactory()).get(f"/api/connections/{connection.pk}/")
    assert SECRET not in detail.content.decode()


def test_a_partner_sees_its_own_connections_and_gets_404_for_others():
    partner = PartnerFactory()
    own = ToolConnectionFactory(partner=partner)
    foreign = ToolConnectionFactory(partner=PartnerFactory())
    grant = PartnerGrantFactory(partner=partner)
    ArtifactFactory(product=grant.product, connection=own)
    ArtifactFactory(product=grant.product, connection=foreign)
    client = client_for(PartnerMembershipFactory(partner=partner).user)
    names = [row["name"] for row in client.get("/api/connections/").json()["results"]]
    assert names == [own.name]
    assert client.get(f"/api/connections/{foreign.pk}/").status_code == 404


def test_filtering_by_an_unknown_connector_kind_is_400():
    response = client_for(StaffFactory()).get("/api/connections/", {"kind": "nonsense"})
    assert response.status_code == 400
    assert "kind" in response.json()
