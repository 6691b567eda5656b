"""Person reconciliation: who a tool's person value names, their account in another tool, and joining
people by email."""

import pytest
from django.urls import reverse

from connectors.models import Person, PersonAccount
from connectors.people import PersonDirectory
from connectors.services import people_match_by_email
from tests.factories import PersonAccountFactory, PersonFactory, StaffFactory, ToolConnectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tools():
    """Jira and Salesforce, with Ada in both, Bob only in Jira, and a default person in Salesforce."""
    jira = ToolConnectionFactory(kind="jira")
    salesforce = ToolConnectionFactory(kind="salesforce", name="Salesforce")
    ada = PersonFactory(name="Ada Lovelace", email="ada@example.test")
    PersonAccountFactory(
        person=ada,
        connection=jira,
        account_id="5b10ac8d82e05b22cc7d4ef5",
        username="ada",
        email="Ada.L@example.test",
        display_name="Ada Lovelace",
    )
    PersonAccountFactory(
        person=ada, connection=salesforce, account_id="005A0000001", display_name="A. Lovelace"
    )
    bob = PersonFactory(name="Bob")
    PersonAccountFactory(person=bob, connection=jira, account_id="bob-id", display_name="Bob")
    triage = PersonFactory(name="Triage", is_default=True)
    PersonAccountFactory(
        person=triage, connection=salesforce, account_id="005A0000999", display_name="Triage"
    )
    return jira, salesforce, ada, bob


@pytest.mark.parametrize(
    "value",
    [
        "5b10ac8d82e05b22cc7d4ef5",
        "ada",
        "ADA.l@example.test",
        "ada lovelace",
        "  Ada Lovelace ",
        "ada@example.test",
    ],
)
def test_a_value_names_a_person_by_any_account_field_or_their_email_ignoring_case(tools, value):
    jira, _, ada, _ = tools
    directory = PersonDirectory.load([jira.pk])
    assert directory.person_for(jira.pk, value) == ada


def test_an_account_matches_only_on_its_own_connection(tools):
    jira, salesforce, ada, _ = tools
    directory = PersonDirectory.load([jira.pk, salesforce.pk])
    assert directory.person_for(salesforce.pk, "A. Lovelace") == ada
    assert directory.person_for(jira.pk, "A. Lovelace") is None
    assert directory.person_for(salesforce.pk, "Bob") is None
    assert directory.person_for(jira.pk, "") is None
    assert directory.person_for(jira.pk, None) is None


def test_a_display_name_two_people_share_names_nobody_but_a_stronger_field_decides(tools):
    jira, _, ada, bob = tools
    PersonAccountFactory(
        person=PersonFactory(name="Other Bob"), connection=jira, account_id="b2", display_name="bob"
    )
    PersonAccountFactory(
        person=PersonFactory(name="Ada's namesake"), connection=jira, account_id="x", display_name="ada"
    )
    directory = PersonDirectory.load([jira.pk])
    assert directory.person_for(jira.pk, "Bob") is None
    assert directory.person_for(jira.pk, "bob-id") == bob
    assert directory.person_for(jira.pk, "ada") == ada  # Ada's username beats the other's display name


def test_account_for_gives_the_same_persons_account_in_the_other_tool(tools):
    jira, salesforce, _, _ = tools
    directory = PersonDirectory.load([jira.pk, salesforce.pk])
    assert directory.account_for(jira.pk, "Ada Lovelace", salesforce.pk) == "005A0000001"
    assert directory.account_for(salesforce.pk, "A. Lovelace", jira.pk) == "5b10ac8d82e05b22cc7d4ef5"


def test_account_for_falls_back_to_the_default_person_then_to_nothing(tools):
    jira, salesforce, _, _ = tools
    directory = PersonDirectory.load([jira.pk, salesforce.pk])
    assert directory.account_for(jira.pk, "Bob", salesforce.pk) == "005A0000999"  # Bob has no account there
    assert directory.account_for(jira.pk, "Somebody new", salesforce.pk) == "005A0000999"
    assert directory.account_for(salesforce.pk, "Somebody new", jira.pk) is None  # no default account in Jira
    assert directory.account_for(jira.pk, "", salesforce.pk) is None  # unassigned stays unassigned


def test_the_directory_loads_in_two_queries_and_answers_without_more(tools, django_assert_num_queries):
    jira, salesforce, _, _ = tools
    with django_assert_num_queries(2):
        directory = PersonDirectory.load([jira.pk, salesforce.pk])
    with django_assert_num_queries(0):
        for value in ("ada", "Bob", "nobody", "ada@example.test"):
            directory.account_for(jira.pk, value, salesforce.pk)


def test_matching_by_email_joins_accounts_across_tools():
    jira, salesforce, zendesk = (ToolConnectionFactory(kind=kind, name=kind) for kind in ("jira", "sf", "zd"))
    in_jira = PersonAccountFactory(connection=jira, email="Grace@Example.test", person__name="Grace H").person
    in_salesforce = PersonAccountFactory(connection=salesforce, email="grace@example.test").person
    # Joined through another email of the same person: Zendesk has her second address, as does Jira.
    in_zendesk = PersonAccountFactory(connection=zendesk, email="g.hopper@example.test").person
    PersonAccountFactory(person=in_jira, connection=zendesk, account_id="z-2", email="g.hopper@example.test")
    alone = PersonAccountFactory(connection=salesforce, email="linus@example.test").person

    assert people_match_by_email() == 2

    grace = Person.objects.get(pk=in_jira.pk)  # the oldest stays
    assert grace.email == "Grace@Example.test"
    assert grace.accounts.count() == 4
    assert not Person.objects.filter(pk__in=[in_salesforce.pk, in_zendesk.pk]).exists()
    assert Person.objects.get(pk=alone.pk).accounts.count() == 1
    assert people_match_by_email() == 0  # idempotent


def test_matching_by_email_keeps_the_default_person_and_the_persons_own_email():
    jira, salesforce = ToolConnectionFactory(), ToolConnectionFactory()
    account = PersonAccountFactory(connection=jira, email="")
    account.person.email = "support@example.test"
    account.person.save()
    default = PersonFactory(name="Support desk", is_default=True)
    PersonAccountFactory(person=default, connection=salesforce, email="SUPPORT@example.test")

    assert people_match_by_email() == 1
    assert set(PersonAccount.objects.values_list("person_id", flat=True)) == {default.pk}
    assert Person.objects.get().is_default


def test_matching_by_email_can_be_limited_to_some_people():
    first = PersonAccountFactory(email="same@example.test").person
    second = PersonAccountFactory(email="same@example.test").person
    third = PersonAccountFactory(email="same@example.test").person
    assert people_match_by_email(Person.objects.filter(pk__in=[first.pk, second.pk])) == 1
    assert set(Person.objects.values_list("pk", flat=True)) == {first.pk, third.pk}


# Admin


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def person_form(connection, **overrides):
    data = {
        "name": "Ada Lovelace",
        "email": "ada@example.test",
        "accounts-TOTAL_FORMS": "1",
        "accounts-INITIAL_FORMS": "0",
        "accounts-MIN_NUM_FORMS": "0",
        "accounts-MAX_NUM_FORMS": "1000",
        "accounts-0-connection": connection.pk,
        "accounts-0-account_id": "5b10ac8d",
        "accounts-0-username": "ada",
        "accounts-0-email": "ada@example.test",
        "accounts-0-display_name": "Ada Lovelace",
    }
    return {**data, **overrides}


def test_admin_adds_a_person_with_an_account(staff_client):
    connection = ToolConnectionFactory()
    add_url = reverse("admin:connectors_person_add")
    assert staff_client.get(add_url).status_code == 200
    response = staff_client.post(add_url, person_form(connection))
    assert response.status_code == 302, response.content.decode()[-2000:]
    person = Person.objects.get()
    assert list(person.accounts.values_list("connection_id", "account_id")) == [(connection.pk, "5b10ac8d")]


def test_admin_refuses_a_second_default_person_with_a_message(staff_client):
    PersonFactory(is_default=True)
    response = staff_client.post(
        reverse("admin:connectors_person_add"), person_form(ToolConnectionFactory(), is_default="on")
    )
    assert response.status_code == 200
    assert "is the default person: untick it there first." in response.content.decode()
    assert Person.objects.count() == 1


def test_admin_lists_and_searches_people_and_accounts(staff_client, tools):
    response = staff_client.get(reverse("admin:connectors_person_changelist"), {"q": "ada.l@example"})
    assert response.status_code == 200
    content = response.content.decode()
    assert "Ada Lovelace" in content and "Bob" not in content
    response = staff_client.get(reverse("admin:connectors_personaccount_changelist"), {"q": "lovelace"})
    assert response.status_code == 200
    assert "005A0000001" in response.content.decode()


def test_admin_connection_autocomplete_serves_the_account_form(staff_client, tools):
    jira, _, _, _ = tools
    response = staff_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "connectors",
            "model_name": "personaccount",
            "field_name": "connection",
            "term": jira.name,
        },
    )
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(jira.pk)]


def test_admin_action_joins_the_selected_people_by_email(staff_client):
    first = PersonAccountFactory(email="same@example.test").person
    second = PersonAccountFactory(email="same@example.test").person
    response = staff_client.post(
        reverse("admin:connectors_person_changelist"),
        {"action": "match_by_email", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert "Joined 1 person to others sharing an email." in response.content.decode()
    assert list(Person.objects.values_list("pk", flat=True)) == [first.pk]
