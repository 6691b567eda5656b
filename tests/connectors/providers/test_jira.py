"""The Jira provider against the fake Jira (Cloud and Data Center), over httpx's WSGI transport."""

from datetime import timedelta

import pytest

from connectors.base import ItemRef, ScopeSpec, ToolLink
from connectors.exceptions import AuthError, BadRequest, NotFound, RateLimited
from connectors.fakes.jira import TransitionRule
from connectors.selectors import connector_instance
from tests.connectors.conftest import STEPWISE_TRANSITIONS, WORKFLOW, make_jira_world

pytestmark = pytest.mark.django_db


def connector(world, **credentials):
    if credentials:
        world.connection.credentials = credentials
    return connector_instance(world.connection, transport=world.transport, sleep=world.sleep)


def read_all(jira, query="ABC", since=None, page_size=7):
    return list(jira.read_changes(ScopeSpec(query=query, page_size=page_size), since))


def test_check_connection_names_the_user(any_jira_world):
    assert connector(any_jira_world).check_connection() == "VSM Demo"


def test_bad_credentials_are_an_auth_error(any_jira_world):
    wrong = {"email": "demo@vsm.example", "api_token": "wrong", "personal_access_token": "wrong"}
    with pytest.raises(AuthError):
        connector(any_jira_world, **wrong).check_connection()


def test_missing_credentials_say_what_is_needed(db):
    world = make_jira_world("datacenter")
    with pytest.raises(AuthError, match="personal access token"):
        connector(world, email="a@b.c")


def test_incremental_read_pages_through_items_sharing_one_updated_instant(any_jira_world):
    world = any_jira_world
    same_instant = world.clock.now
    keys = [world.story(f"Story {n}", updated=same_instant) for n in range(25)]
    pages = read_all(connector(world))
    assert [len(page.items) for page in pages] == [7, 7, 7, 4]
    read_keys = [item.key for page in pages for item in page.items]
    assert sorted(read_keys) == sorted(keys)
    assert len(set(read_keys)) == 25


def test_since_is_written_in_the_users_time_zone_with_minute_precision(jira_world):
    world = jira_world  # the fake's user lives in Asia/Shanghai (+08:00)
    old = world.story("Old", hours_ago=48, updated=world.clock.now - timedelta(hours=48))
    new = world.story("New")
    jira = connector(world)
    since = world.clock.now - timedelta(minutes=1, seconds=30)
    assert f'updated >= "{(since + timedelta(hours=8)):%Y/%m/%d %H:%M}"' in jira.search_jql(
        ScopeSpec("ABC"), since
    )
    assert [item.key for page in read_all(jira, since=since) for item in page.items] == [new]
    assert [item.key for page in read_all(jira) for item in page.items] == [old, new]  # oldest change first


def test_history_becomes_status_changes_even_when_the_embedded_changelog_is_truncated(db):
    world = make_jira_world("cloud", embedded_changelog_limit=3)
    start = world.clock.now - timedelta(days=10)
    histories = []
    status = "To Do"
    for day in range(8):
        target = "In Progress" if status != "In Progress" else "In Review"
        histories.append((start + timedelta(days=day, hours=1), status, target))
        status = target
    key = world.fake.add_issue("ABC", "Story", "Busy", created=start, histories=histories)
    (item,) = [item for page in read_all(connector(world)) for item in page.items]
    assert item.key == key
    assert [(c.from_status, c.to_status) for c in item.changelog] == [(h[1], h[2]) for h in histories]
    assert [c.at for c in item.changelog] == [h[0] for h in histories]
    assert world.fake.requests["GET issue/changelog"] == 1


def test_parent_and_outward_issue_links_become_tool_links(jira_world):
    world = jira_world
    epic = world.fake.add_issue("ABC", "Epic", "Checkout")
    story = world.fake.add_issue("ABC", "Story", "Pay", parent=epic)
    other = world.story("Refund")
    world.fake.link(story, "Blocks", other)
    items = {item.key: item for page in read_all(connector(world)) for item in page.items}
    assert [(link.kind, link.target_key) for link in items[story].links] == [
        ("child_of", epic),
        ("relates_to", other),
    ]
    assert items[other].links == []  # the inward side does not repeat the link


def test_a_malformed_issue_is_a_failure_and_the_rest_of_the_page_reads(jira_world):
    world = jira_world
    keys = [world.story(f"Story {n}") for n in range(3)]
    world.fake.malformed(keys[1])
    (page,) = read_all(connector(world))
    assert [item.key for item in page.items] == [keys[0], keys[2]]
    assert [failure.key for failure in page.failures] == [keys[1]]
    assert "cannot read issue" in page.failures[0].message


def test_429_is_waited_out(jira_world):
    world = jira_world
    world.story("One")
    world.fake.rate_limit(2, retry_after=3)
    assert len(read_all(connector(world))[0].items) == 1
    assert world.sleeps[:2] == [3, 3]


def test_a_long_rate_limit_is_raised_not_slept(jira_world):
    world = jira_world
    world.fake.rate_limit(1, retry_after=3600)
    with pytest.raises(RateLimited):
        read_all(connector(world))
    assert world.sleeps == []


def test_list_ids_covers_every_issue_of_the_scope(any_jira_world):
    world = any_jira_world
    keys = [world.story(f"Story {n}") for n in range(12)]
    ids = set(connector(world).list_ids(ScopeSpec("ABC")))
    assert ids == {world.fake.issues[key].id for key in keys}


def test_create_update_transition_and_links_write_to_the_tool(any_jira_world):
    world = any_jira_world
    jira = connector(world)
    item = jira.create_item(ScopeSpec("ABC"), "Story", {"summary": "From the portal"})
    assert item.title == "From the portal" and item.status == "To Do"
    ref = ItemRef(item.native_id, item.key)

    jira.update_item(ref, {"summary": "Renamed"})
    jira.transition_item(ref, "in progress")  # status names match without regard to case
    assert (world.fake.issues[item.key].status, world.fake.issues[item.key].fields["summary"]) == (
        "In Progress",
        "Renamed",
    )
    other = world.story("Other")
    jira.add_link(ref, ToolLink(kind="relates_to", target_key=other))
    assert [(link.kind, link.target_key) for link in jira.read_item(item.key, ScopeSpec("ABC")).links] == [
        ("relates_to", other)
    ]
    for _ in range(2):  # idempotent by globalId
        jira.add_link(ref, url="https://vsm.example.test/artifacts/1/", title="In the portal")
    remote = [link for link in world.fake.issues[item.key].remote_links]
    assert len(remote) == 1


def test_a_transition_the_workflow_does_not_offer_says_what_is_reachable(jira_world):
    world = jira_world
    key = world.story("Story")
    with pytest.raises(BadRequest, match="cannot move to “Shipped”"):
        connector(world).transition_item(ItemRef("", key), "Shipped")


def history_of(world, key) -> list[str]:
    return [
        item["toString"]
        for history in world.fake.issues[key].histories
        for item in history.items
        if item.get("field") == "status"
    ]


@pytest.mark.parametrize(
    ("start", "to", "walk"),
    [
        ("To Do", "Done", ["In Progress", "In Review", "Done"]),
        ("Done", "To Do", ["In Progress", "To Do"]),
        ("In Progress", "In Review", ["In Review"]),
    ],
)
def test_a_status_reached_only_through_others_is_walked_to_step_by_step(any_jira_world, start, to, walk):
    world = any_jira_world
    world.fake.add_project("WF", statuses=WORKFLOW, transitions=STEPWISE_TRANSITIONS)
    key = world.fake.add_issue("WF", "Story", "Walk me", status=start)
    before = history_of(world, key)
    connector(world).transition_item(ItemRef("", key), to)
    assert world.fake.issues[key].status == to
    assert history_of(world, key)[len(before) :] == walk


def test_a_walk_that_cannot_go_on_says_where_it_stopped_and_what_was_offered(jira_world):
    world = jira_world
    dead_end = [
        TransitionRule("Start", "In Progress", ("To Do",)),
        TransitionRule("Review", "In Review", ("In Progress",)),
        TransitionRule("Rework", "In Progress", ("In Review",)),
    ]
    world.fake.add_project("WF", statuses=WORKFLOW, transitions=dead_end)
    key = world.fake.add_issue("WF", "Story", "Stuck")
    with pytest.raises(BadRequest) as raised:
        connector(world).transition_item(ItemRef("", key), "Done")
    assert str(raised.value) == (
        f"{key} cannot move to “Done”: walked To Do -> In Progress -> In Review, where the workflow offers "
        "Rework (to In Progress); add the missing transition or map another status"
    )


def test_a_created_issue_is_found_by_its_marker_though_search_does_not_show_it_yet(any_jira_world):
    world = any_jira_world
    world.fake.set_search_lag(600)
    for number in range(3):
        world.story(f"Older {number}", hours_ago=2)
    world.clock.advance(minutes=15)  # the older ones are in the search index by now
    started = world.clock.now
    jira = connector(world)
    made = jira.create_item(ScopeSpec("ABC"), "Story", {"summary": "Same title"}, marker="m-1")
    jira.create_item(ScopeSpec("ABC"), "Story", {"summary": "Same title"}, marker="m-2")
    assert not [item for page in read_all(jira, since=started - timedelta(minutes=1)) for item in page.items]
    found = jira.find_created(ScopeSpec("ABC"), "Story", marker="m-1", title="Same title", started=started)
    assert [item.key for item in found] == [made.key]
    unmarked = jira.find_created(ScopeSpec("ABC"), "Story", marker="", title="Same title", started=started)
    assert [item.key for item in unmarked] == [made.key]  # without a marker: the first with the title
    assert jira.find_created(ScopeSpec("ABC"), "Story", marker="m-9", title="Other", started=started) == []


def test_the_key_probe_reads_over_gaps_and_stops_after_the_call_could_have_ended(jira_world):
    world = jira_world
    started = world.clock.now
    jira = connector(world)
    for number in range(5):
        world.fake.delete(world.story(f"Deleted {number}"))  # a run of gaps shorter than MAX_KEY_GAP
    made = jira.create_item(ScopeSpec("ABC"), "Story", {"summary": "After the gaps"}, marker="m-1")
    found = jira.find_created(ScopeSpec("ABC"), "Story", marker="m-1", title="", started=started)
    assert [item.key for item in found] == [made.key]
    world.clock.advance(hours=1)
    world.story("Much later")
    reads = world.fake.requests["GET issue"]
    assert jira.find_created(ScopeSpec("ABC"), "Story", marker="m-2", title="", started=started) == []
    assert world.fake.requests["GET issue"] - reads <= 8  # stopped at the first issue made after the call


def test_an_issue_made_in_a_jql_scope_cannot_be_looked_for_without_a_project_key(jira_world):
    with pytest.raises(BadRequest, match="name a project key as the container"):
        connector(jira_world).find_created(
            ScopeSpec("project = ABC"), "Story", marker="m", title="", started=jira_world.clock.now
        )


def test_the_legacy_search_is_gone_on_cloud(jira_world):
    with pytest.raises(NotFound, match="410 Gone"):
        connector(jira_world).http.request("GET", "rest/api/2/search", params={"jql": "project = ABC"})
