"""GitHub REST JSON -> ToolItem (pure): issues, pull requests, commits and releases.

An issue or pull request reads from the issue shape (`GET /repos/{o}/{r}/issues`, where a pull request
carries a `pull_request` key) and, for pull requests, the pull shape (`GET /repos/{o}/{r}/pulls/{n}`,
which has the branch names and merge commit) and its commits. Either shape alone is enough to build the
item: both carry the same `node_id`, GitHub's global id, which is the item's native id.

Statuses: issues are "open" or "closed"; pull requests "open", "closed" or "merged" (merged_at set).
History comes from the item's events (`closed`, `reopened`, `merged`) when they were read, else it is
synthesised from closed_at / merged_at (one change, open -> closed or merged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import StatusChange, ToolItem, ToolLink

# GitHub writes UTC to the second, "2017-10-10T16:00:00Z"; offsets are accepted for GHES and webhooks.
GITHUB_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
FULL_SHA = re.compile(r"[0-9a-f]{40}")
NAME = r"[A-Za-z0-9_.-]+"
REPOSITORY = re.compile(rf"(?P<owner>{NAME})/(?P<repo>{NAME})")
ISSUE_KEY = re.compile(rf"(?P<repository>{NAME}/{NAME})#(?P<number>\d+)")
# Closing keywords in a PR description or commit message: "fixes #12", "Closes owner/repo#3".
CLOSING_REFERENCE = re.compile(
    rf"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+(?P<repository>{NAME}/{NAME})?#(?P<number>\d+)\b",
    re.IGNORECASE,
)

KINDS = ("issues", "pulls", "commits", "releases")
OPEN, CLOSED, MERGED = "open", "closed", "merged"
COMMITTED = "committed"


def parse_github_time(text: Any) -> datetime:
    if not isinstance(text, str) or not GITHUB_TIMESTAMP.fullmatch(text):
        raise ValueError(f"{text!r:.40} is not a GitHub timestamp")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_github_time(instant: datetime) -> str:
    """`since` as GitHub reads it: UTC to the second, floored, so nothing at `instant` is skipped."""
    return f"{instant.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


@dataclass(frozen=True)
class RepoScope:
    owner: str
    repo: str
    kinds: frozenset[str]

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def path(self) -> str:
        return f"repos/{self.owner}/{self.repo}"


def parse_scope(query: str) -> RepoScope:
    """ "owner/repo" reads everything; "owner/repo:issues,pulls,commits,releases" reads what it names."""
    repository, _, kinds_text = query.strip().partition(":")
    found = REPOSITORY.fullmatch(repository.strip())
    if found is None:
        raise ValueError(f"a GitHub scope is owner/repo[:{','.join(KINDS)}], not {query!r:.80}")
    kinds = {kind.strip().lower() for kind in kinds_text.split(",") if kind.strip()}
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {', '.join(sorted(unknown))} in the scope: use {', '.join(KINDS)}")
    return RepoScope(found["owner"], found["repo"], frozenset(kinds or KINDS))


def issue_key(repository: str, number: int | str) -> str:
    return f"{repository}#{number}"


def closing_references(text: str | None, repository: str) -> list[str]:
    """Keys of the issues `text` closes with GitHub's keywords, in order, without repeats."""
    keys: dict[str, None] = {}
    for found in CLOSING_REFERENCE.finditer(text or ""):
        keys[issue_key(found["repository"] or repository, found["number"])] = None
    return list(keys)


def _login(user: Any) -> str:
    return str(user.get("login") or "") if isinstance(user, dict) else ""


def is_pull_request(payload: dict[str, Any]) -> bool:
    """The issue shape marks a pull request with `pull_request`; the pull shape has `head`."""
    return "pull_request" in payload or "head" in payload


def merged_at_of(issue: dict[str, Any], pull: dict[str, Any] | None) -> str | None:
    if pull is not None and "merged_at" in pull:
        return pull.get("merged_at")
    if "merged_at" in issue:
        return issue.get("merged_at")
    return (issue.get("pull_request") or {}).get("merged_at")


def status_of(issue: dict[str, Any], pull: dict[str, Any] | None = None) -> str:
    state = (pull or issue)["state"]
    if state not in (OPEN, CLOSED):
        raise ValueError(f"unknown state {state!r:.40}")
    if (is_pull_request(issue) or pull is not None) and merged_at_of(issue, pull):
        return MERGED
    return state


def changes_from_events(events: list[dict[str, Any]], is_pull: bool) -> list[StatusChange]:
    """Replay closed / reopened / merged events; other events (labeled, referenced...) are not statuses."""
    status, changes = OPEN, []
    timed = sorted(
        ((parse_github_time(event["created_at"]), position, event) for position, event in enumerate(events)),
        key=lambda entry: entry[:2],
    )
    for at, _, event in timed:
        kind, actor = event.get("event"), _login(event.get("actor"))
        if kind == "merged" and is_pull and status != MERGED:
            # GitHub records "closed" with "merged"; if it came first at the same instant, it was the merge.
            if changes and changes[-1].at == at and changes[-1].to_status == CLOSED:
                previous = changes.pop()
                changes.append(StatusChange(at, previous.from_status, MERGED, previous.author or actor))
            else:
                changes.append(StatusChange(at, status, MERGED, actor))
            status = MERGED
        elif kind == "closed" and status == OPEN:
            changes.append(StatusChange(at, OPEN, CLOSED, actor))
            status = CLOSED
        elif kind == "reopened" and status == CLOSED:
            changes.append(StatusChange(at, CLOSED, OPEN, actor))
            status = OPEN
    return changes


def synthesised_changes(
    issue: dict[str, Any], pull: dict[str, Any] | None, status: str
) -> list[StatusChange]:
    """Without events: one change into the current closed or merged status, at its own timestamp."""
    source = pull or issue
    author = _login(source.get("merged_by") if status == MERGED else source.get("closed_by"))
    if status == MERGED:
        return [StatusChange(parse_github_time(merged_at_of(issue, pull)), OPEN, MERGED, author)]
    if status == CLOSED and source.get("closed_at"):
        return [StatusChange(parse_github_time(source["closed_at"]), OPEN, CLOSED, author)]
    return []


def history(
    issue: dict[str, Any], pull: dict[str, Any] | None, status: str, events: list[dict[str, Any]] | None
) -> list[StatusChange]:
    if events is None:
        return synthesised_changes(issue, pull, status)
    changes = changes_from_events(events, is_pull_request(issue) or pull is not None)
    replayed = changes[-1].to_status if changes else OPEN
    if replayed != status:  # events that end elsewhere than the item: trust the item's own dates
        synthesised = synthesised_changes(issue, pull, status)
        at = synthesised[0].at if synthesised else parse_github_time((pull or issue)["updated_at"])
        changes.append(StatusChange(at, replayed, status, synthesised[0].author if synthesised else ""))
    return changes


def issue_to_item(
    issue: dict[str, Any],
    repository: str,
    *,
    pull: dict[str, Any] | None = None,
    commits: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> ToolItem:
    """An issue or pull request from the issue shape, the pull shape, or both (pull wins where both say).

    Raises KeyError, TypeError or ValueError when the payload lacks what every issue has.
    """
    is_pull = is_pull_request(issue) or pull is not None
    merged = {**issue, **(pull or {})}
    number = merged["number"]
    key = issue_key(repository, number)
    status = status_of(issue, pull)
    fields: dict[str, Any] = {
        **merged,
        "repository": repository,
        "author": _login(merged.get("user")),
        "label_names": [label["name"] for label in merged.get("labels") or [] if isinstance(label, dict)],
    }
    links: list[ToolLink] = []
    if is_pull:
        head, base = merged.get("head") or {}, merged.get("base") or {}
        shas = [commit["sha"] for commit in commits or []]
        fields.update(
            {
                "merged_at": merged_at_of(issue, pull),
                "source_branch": head.get("ref"),
                "target_branch": base.get("ref"),
                "head_sha": head.get("sha"),
                "merge_commit_sha": merged.get("merge_commit_sha"),
                "commit_shas": shas,
                "commit_messages": [
                    (commit.get("commit") or {}).get("message", "") for commit in commits or []
                ],
            }
        )
        expected = merged.get("commits")  # the single pull's count; GitHub lists at most 250 commits
        if commits is not None and isinstance(expected, int) and expected > len(shas):
            fields["commit_shas_truncated"] = True
        links += [ToolLink("committed_in", sha, "commit of the pull request") for sha in dict.fromkeys(shas)]
        # A merged pull request also lives in its merge commit (or squash / rebase result). An open one's
        # merge_commit_sha is only GitHub's test merge, so it is not linked.
        merge_sha = merged.get("merge_commit_sha")
        if status == MERGED and isinstance(merge_sha, str) and merge_sha and merge_sha not in shas:
            links.append(ToolLink("committed_in", merge_sha, "merge commit of the pull request"))
    closes = closing_references(f"{merged.get('title') or ''}\n{merged.get('body') or ''}", repository)
    closes = [closed for closed in closes if closed != key]
    fields["closes"] = closes
    links += [ToolLink("fixes", closed, "closing keyword") for closed in closes] if is_pull else []
    return ToolItem(
        native_id=str(merged["node_id"]),
        key=key,
        item_type="PullRequest" if is_pull else "Issue",
        url=merged["html_url"],
        title=merged.get("title") or "",
        status=status,
        created=parse_github_time(merged["created_at"]),
        updated=parse_github_time(merged["updated_at"]),
        fields=fields,
        changelog=history(issue, pull, status, events),
        links=links,
        raw=_raw(issue, pull, commits) if is_pull else issue,
    )


def _raw(issue: dict[str, Any], pull: dict[str, Any] | None, commits: list[dict[str, Any]] | None) -> dict:
    """A pull request as received: its issue shape, its pull shape and its commits, each when read."""
    if pull is None and commits is None:
        return issue
    raw: dict[str, Any] = {} if issue is pull else {"issue": issue}
    if pull is not None:
        raw["pull"] = pull
    raw["commits"] = commits or []
    return raw


def pull_to_item(
    pull: dict[str, Any],
    repository: str,
    *,
    commits: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> ToolItem:
    """A pull request from the pull shape alone (`GET /repos/{o}/{r}/pulls[/{n}]`)."""
    return issue_to_item(pull, repository, pull=pull, commits=commits, events=events)


def commit_to_item(commit: dict[str, Any], repository: str) -> ToolItem:
    """A commit from `GET /repos/{o}/{r}/commits` (or `/pulls/{n}/commits`, `/commits/{sha}`)."""
    sha = commit["sha"]
    if not isinstance(sha, str) or not FULL_SHA.fullmatch(sha):
        raise ValueError(f"{sha!r:.50} is not a full commit SHA")
    detail = commit["commit"]
    author, committer = detail.get("author") or {}, detail["committer"]
    message = detail.get("message") or ""
    committed = parse_github_time(committer["date"])
    authored = parse_github_time(author["date"]) if author.get("date") else committed
    fields = {
        **commit,
        "sha": sha,
        "repository": repository,
        "message": message,
        "author": _login(commit.get("author")) or author.get("name") or "",
        "author_name": author.get("name") or "",
        "author_email": author.get("email") or "",
        "authored_date": author.get("date"),
        "committer_name": committer.get("name") or "",
        "committed_date": committer["date"],
        "parents": [parent["sha"] for parent in commit.get("parents") or []],
        "closes": closing_references(message, repository),
    }
    return ToolItem(
        native_id=str(commit.get("node_id") or f"{repository}@{sha}"),
        key=sha,
        item_type="Commit",
        url=commit["html_url"],
        title=message.split("\n", 1)[0].strip(),
        status=COMMITTED,
        created=authored,
        updated=committed,
        fields=fields,
        raw=commit,
    )


def release_status(release: dict[str, Any]) -> str:
    if release.get("draft"):
        return "draft"
    return "prerelease" if release.get("prerelease") else "published"


def release_time(release: dict[str, Any]) -> datetime:
    """When a release last changed as far as GitHub says: its publication, else its creation."""
    return parse_github_time(release.get("published_at") or release["created_at"])


def release_to_item(
    release: dict[str, Any],
    repository: str,
    *,
    released: list[str] | None = None,
    previous_tag: str | None = None,
) -> ToolItem:
    """A release from `GET /repos/{o}/{r}/releases`; key = its tag name.

    `released`: the SHAs of the commits it ships (since `previous_tag`, or its whole history when it is
    the first), each `released_in` it; None when they were not read. A full-SHA target is linked too.
    """
    tag = release["tag_name"]
    if not isinstance(tag, str) or not tag:
        raise ValueError("a release without a tag name")
    target = release.get("target_commitish") or ""
    links = []
    if FULL_SHA.fullmatch(target):  # the release names its commit: that commit is released in it
        links.append(ToolLink("released_in", target, "release target", incoming=True))
    since = f"released since {previous_tag}" if previous_tag else "released in the first release"
    links += [
        ToolLink("released_in", sha, since, incoming=True)
        for sha in dict.fromkeys(released or ())
        if sha != target
    ]
    fields: dict[str, Any] = {**release, "repository": repository, "author": _login(release.get("author"))}
    if released is not None:
        fields.update({"previous_tag": previous_tag, "released_commit_shas": list(dict.fromkeys(released))})
    return ToolItem(
        native_id=str(release["node_id"]),
        key=tag,
        item_type="Release",
        url=release["html_url"],
        title=release.get("name") or tag,
        status=release_status(release),
        created=parse_github_time(release["created_at"]),
        updated=release_time(release),
        fields=fields,
        links=links,
        raw=release,
    )
