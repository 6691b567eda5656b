"""The demo world generator: deterministic, backdated up to its present, kept and reloaded whole."""

import random
from collections import Counter
from datetime import timedelta

import httpx
import pytest

from connectors.fakes.world import (
    BOTTLENECK_PRODUCT,
    DEFAULT_NOW,
    IN_HOUSE,
    PARTNER,
    SIZES,
    tick,
    world_dump,
    world_generate,
    world_keys,
    world_load,
    world_save,
)


@pytest.fixture(scope="module")
def world():
    return world_generate(size="small")


def test_the_same_seed_gives_byte_identical_tool_states(world):
    again = world_generate(size="small")

    assert world_dump(again.fakes) == world_dump(world.fakes)


def test_another_seed_or_present_gives_another_world(world):
    assert world_dump(world_generate(seed=7, size="small").fakes) != world_dump(world.fakes)
    later = world_generate(size="small", now=DEFAULT_NOW + timedelta(days=1))
    assert world_dump(later.fakes) != world_dump(world.fakes)


def test_a_small_world_holds_a_year_of_every_kind_of_item(world):
    keys = world_keys(world.fakes)
    assert {name: bool(found) for name, found in keys.items()} == dict.fromkeys(keys, True)
    assert 100 < len(keys["jira"]) < 600
    jira = world.fakes["jira"]
    types = Counter(issue.issue_type.name for issue in jira.issues.values())
    assert set(types) == {"Epic", "Story", "Bug", "Risk"}
    assert any("debt" in issue.fields["labels"] for issue in jira.issues.values())
    statuses = {item["to"] for issue in jira.issues.values() for item in _status_items(issue)}
    assert {IN_HOUSE.blocked, IN_HOUSE.ready, IN_HOUSE.cancelled} <= statuses
    backwards = [
        issue.key
        for issue in jira.issues.values()
        for item in _status_items(issue)
        if (item["from"], item["to"])
        in ((IN_HOUSE.done, IN_HOUSE.active), (IN_HOUSE.review, IN_HOUSE.active))
    ]
    assert backwards, "reopenings and reviews sending work back"
    oldest = min(issue.created for issue in jira.issues.values())
    assert DEFAULT_NOW - oldest > timedelta(days=350)
    assert world.chains


def test_nothing_happens_after_the_present_and_work_happens_on_weekdays(world):
    instants = [
        history.created
        for fake in ("jira", "jira-acme")
        for issue in world.fakes[fake].issues.values()
        for history in issue.histories
    ]
    commits = [c.committed for repo in world.fakes["github"].repos.values() for c in repo.commits.values()]
    assert max(instants + commits) <= DEFAULT_NOW
    weekdays = Counter(instant.weekday() < 5 for instant in instants)
    assert weekdays[False] == 0, "status changes happen in office hours"
    assert Counter(instant.weekday() < 5 for instant in commits)[True] > 0.8 * len(commits)


def test_the_partner_works_in_its_own_jira_on_its_clients_epics(world):
    partner_jira, jira = world.fakes["jira-acme"], world.fakes["jira"]
    assert set(partner_jira.projects) == {PARTNER.team.project}
    epics = [
        label for issue in partner_jira.issues.values() for label in issue.fields["labels"] if "-" in label
    ]
    assert epics
    assert {jira.issues[key].issue_type.name for key in epics} == {"Epic"}


def test_the_small_size_leaves_out_the_third_product():
    assert SIZES["small"].products == 2
    world = world_generate(size="small")
    assert {repo.name for repo in world.fakes["github"].repos.values()} == {"checkout", BOTTLENECK_PRODUCT}


def test_saved_state_loads_back_byte_identical(world, tmp_path):
    path = tmp_path / "world.pickle"
    world_save(world.fakes, path)

    loaded = world_load(path)

    assert world_dump(loaded) == world_dump(world.fakes)
    # The reloaded fakes still work: their routes and counters are fresh.
    assert loaded["jira"].issues and loaded["github"].requests == Counter()


def test_a_reloaded_fake_speaks_its_own_flavour_of_the_api(world, tmp_path):
    """The partner's Jira is Data Center: reloaded, it still answers its /rest/api/2/search (Cloud's
    answers 410 Gone), so a restarted demo keeps syncing the partner's scope."""
    path = tmp_path / "world.pickle"
    world_save(world.fakes, path)
    partner_jira = world_load(path)["jira-acme"]
    token = partner_jira.credentials()["personal_access_token"]
    with httpx.Client(transport=httpx.WSGITransport(app=partner_jira), base_url="http://fake") as client:
        answer = client.get(
            "/rest/api/2/search", params={"jql": "order by key"}, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["total"] == len(world.fakes["jira-acme"].issues) > 0


def test_ticks_move_work_deterministically():
    def run() -> tuple[bytes, list[str]]:
        world = world_generate(size="small")
        rng, happened = random.Random(1), []
        for step in range(30):
            happened += tick(rng, world.fakes, DEFAULT_NOW + timedelta(minutes=10 * (step + 1)))
        return world_dump(world.fakes), happened

    first, happened = run()
    assert run() == (first, happened)
    assert first != world_dump(world_generate(size="small").fakes)
    assert any(" " in event and "-" in event.split()[0] for event in happened), happened


def _status_items(issue):
    return [
        {"from": item["fromString"], "to": item["toString"]}
        for history in issue.histories
        for item in history.items
        if item["field"] == "status"
    ]
