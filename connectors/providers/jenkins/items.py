"""Jenkins build JSON -> ToolItem (pure): freestyle builds and Pipeline runs, builds and deployments.

A build's identity is its job's full name (folders joined by "/", as Jenkins' ``fullName``) and its
number: key ``"<job full name> #<number>"``, which is also the native id (Jenkins has no global build id).

Deployments and environments (connection options):
- a build is a "Deployment" when its job's full name matches ``deployment_job_pattern`` (a Python regex,
  searched, default ``(?i)deploy``); otherwise it is a "Build";
- a deployment's ``fields["environment"]`` is "production" when ``production_pattern`` (default
  ``(?i)prod``) matches the job's full name, a build parameter's value, or the name of a boolean
  parameter that is true (``DEPLOY_TO_PROD=true``); else the value of the first environment parameter
  (ENV, ENVIRONMENT, DEPLOY_ENV, DEPLOY_ENVIRONMENT, TARGET_ENV, TARGET_ENVIRONMENT, STAGE; any case),
  lower-cased; else "staging".
- a deployment started by an upstream build (``Cause$UpstreamCause``) names it with
  ``ToolLink("deployed_in", "<upstream job> #<n>", incoming=True)``: the upstream build is deployed in
  this deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from connectors.base import StatusChange, ToolItem, ToolLink

BUILD = "Build"
DEPLOYMENT = "Deployment"
BUILDING = "BUILDING"
DEFAULT_DEPLOYMENT_PATTERN = r"(?i)deploy"
DEFAULT_PRODUCTION_PATTERN = r"(?i)prod"
PRODUCTION = "production"
STAGING = "staging"
ENVIRONMENT_PARAMETERS = (
    "ENV",
    "ENVIRONMENT",
    "DEPLOY_ENV",
    "DEPLOY_ENVIRONMENT",
    "TARGET_ENV",
    "TARGET_ENVIRONMENT",
    "STAGE",
)
UPSTREAM_CAUSE = "hudson.model.Cause$UpstreamCause"
USER_CAUSE = "hudson.model.Cause$UserIdCause"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BUILD_KEY = re.compile(r"(?P<job>.+) #(?P<number>\d+)")
# refs/remotes/origin/main, remotes/origin/main, origin/main, refs/heads/main -> main
BRANCH_PREFIX = re.compile(r"^(?:refs/)?(?:remotes/[^/]+/|heads/|origin/)")


@dataclass(frozen=True)
class BuildRules:
    """How a build's job name and parameters make it a deployment, and to which environment."""

    deployment_job: re.Pattern[str]
    production: re.Pattern[str]

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> BuildRules:
        """Raises ValueError naming the option whose regex does not compile."""
        patterns = {}
        for name, default in (
            ("deployment_job_pattern", DEFAULT_DEPLOYMENT_PATTERN),
            ("production_pattern", DEFAULT_PRODUCTION_PATTERN),
        ):
            text = options.get(name) or default
            try:
                patterns[name] = re.compile(text)
            except re.error as error:
                raise ValueError(f"option {name} is not a valid regular expression: {error}") from None
        return cls(patterns["deployment_job_pattern"], patterns["production_pattern"])


DEFAULT_RULES = BuildRules.from_options({})


def epoch_ms(value: Any, name: str = "timestamp") -> datetime:
    """Jenkins' epoch milliseconds as an aware UTC datetime, exact to the millisecond."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} {value!r:.40} is not epoch milliseconds")
    return EPOCH + timedelta(milliseconds=value)


def to_epoch_ms(instant: datetime) -> int:
    """An aware datetime as epoch milliseconds, floored (so a `since` never skips its own millisecond)."""
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def job_names(full_name: str) -> list[str]:
    return [name for name in full_name.split("/") if name]


def job_path(full_name: str) -> str:
    """``a/b`` -> ``job/a/job/b/``; names are escaped (a branch ``feature%2Fx`` -> ``feature%252Fx``)."""
    return "".join(f"job/{quote(name, safe='')}/" for name in job_names(full_name))


def build_key(job: str, number: int) -> str:
    return f"{job} #{number}"


def parse_build_key(key: str) -> tuple[str, int]:
    found = BUILD_KEY.fullmatch(key.strip())
    if found is None:
        raise ValueError(f"{key!r} is not a Jenkins build key like 'folder/job #12'")
    return found["job"].strip("/"), int(found["number"])


def _actions(build: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [action for action in build.get("actions") or [] if isinstance(action, dict)]


def change_set_items(build: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The items of ``changeSet`` (freestyle) and every ``changeSets`` entry (Pipeline), in order."""
    change_sets = []
    if isinstance(build.get("changeSet"), dict):
        change_sets.append(build["changeSet"])
    change_sets += [entry for entry in build.get("changeSets") or [] if isinstance(entry, dict)]
    return [item for entry in change_sets for item in entry.get("items") or [] if isinstance(item, dict)]


def commits(build: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    for item in change_set_items(build):
        commit_id = item.get("commitId") or item.get("id") or item.get("revision") or item.get("node")
        if not commit_id:
            continue
        author = item.get("author") if isinstance(item.get("author"), dict) else {}
        found.append(
            {
                "id": str(commit_id),
                "message": item.get("msg") or item.get("comment") or "",
                "author": author.get("fullName") or "",
                "email": item.get("authorEmail") or "",
                "timestamp": item.get("timestamp"),
            }
        )
    return found


def short_branch(name: str) -> str:
    return BRANCH_PREFIX.sub("", name or "")


def built_revisions(build: Mapping[str, Any], number: int) -> list[dict[str, Any]]:
    """Each git BuildData's built revision: ``lastBuiltRevision``, else this build's
    ``buildsByBranchName`` entry; with the branch and remote URLs."""
    revisions = []
    for action in _actions(build):
        revision = action.get("lastBuiltRevision")
        if not isinstance(revision, dict) or not revision.get("SHA1"):
            revision = None
            for built in (action.get("buildsByBranchName") or {}).values():
                if isinstance(built, dict) and built.get("buildNumber") == number:
                    revision = built.get("revision") or built.get("marked")
                    break
        if not isinstance(revision, dict) or not revision.get("SHA1"):
            continue
        branches = [b.get("name") or "" for b in revision.get("branch") or [] if isinstance(b, dict)]
        revisions.append(
            {
                "sha": revision["SHA1"],
                "branch_ref": branches[0] if branches else "",
                "branch": short_branch(branches[0]) if branches else "",
                "remote_urls": list(action.get("remoteUrls") or []),
            }
        )
    return revisions


def parameters(build: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for action in _actions(build):
        for parameter in action.get("parameters") or []:
            if isinstance(parameter, dict) and parameter.get("name"):
                found[parameter["name"]] = parameter.get("value")
    return found


def causes(build: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        cause for action in _actions(build) for cause in action.get("causes") or [] if isinstance(cause, dict)
    ]


def upstream_builds(all_causes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    upstream = []
    for cause in all_causes:
        project, number = cause.get("upstreamProject"), cause.get("upstreamBuild")
        if project and isinstance(number, int) and not isinstance(number, bool):
            upstream.append({"project": project, "build": number, "url": cause.get("upstreamUrl") or ""})
    return upstream


def environment(job: str, build_parameters: Mapping[str, Any], rules: BuildRules) -> str:
    """See the module docstring for the rule."""
    if rules.production.search(job):
        return PRODUCTION
    for name, value in build_parameters.items():
        if value is True and rules.production.search(name):
            return PRODUCTION
        if isinstance(value, str) and rules.production.search(value):
            return PRODUCTION
    wanted = {name.upper(): value for name, value in build_parameters.items()}
    for name in ENVIRONMENT_PARAMETERS:
        value = wanted.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return STAGING


def build_to_item(
    build: Mapping[str, Any], job: str, base_url: str, rules: BuildRules = DEFAULT_RULES
) -> ToolItem:
    """`build` is one build's JSON (an ``allBuilds`` entry or ``/job/../<n>/api/json``) of job `job`
    (its full name). Raises KeyError, TypeError or ValueError when it lacks what every build has."""
    job = "/".join(job_names(job))
    number = build["number"]
    if not isinstance(number, int) or isinstance(number, bool):
        raise ValueError(f"build number {number!r:.40} is not a number")
    key = build_key(job, number)
    started = epoch_ms(build["timestamp"])
    duration = build.get("duration") or 0
    if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
        raise ValueError(f"duration {duration!r:.40} is not milliseconds")
    result = build.get("result")
    if result is not None and not isinstance(result, str):
        raise ValueError(f"result {result!r:.40} is not a name")
    # Jenkins sets `result` only when a build ends (a Pipeline may set it earlier, while still running).
    building = build.get("building") is True or result is None
    finished = started + timedelta(milliseconds=duration)
    status = BUILDING if building else result

    all_causes = causes(build)
    starter = next((c for c in all_causes if c.get("_class") == USER_CAUSE), {})
    author = starter.get("userName") or starter.get("userId") or ""
    changelog = [StatusChange(at=started, from_status="", to_status=BUILDING, author=author)]
    if not building:
        changelog.append(StatusChange(at=finished, from_status=BUILDING, to_status=result))

    found_commits = commits(build)
    revisions = built_revisions(build, number)
    build_parameters = parameters(build)
    upstream = upstream_builds(all_causes)
    is_deployment = bool(rules.deployment_job.search(job))
    url = f"{base_url.rstrip('/')}/{job_path(job)}{number}/"
    fields: dict[str, Any] = {
        "job": job,
        "job_name": job_names(job)[-1],
        "number": number,
        "class": build.get("_class") or "",
        "display_name": build.get("displayName") or f"#{number}",
        "result": result,
        "building": building,
        "timestamp": build["timestamp"],
        "duration": duration,
        "estimated_duration": build.get("estimatedDuration"),
        "started_at": started.isoformat(),
        "finished_at": None if building else finished.isoformat(),
        "commit_ids": list(dict.fromkeys(commit["id"] for commit in found_commits)),
        "commits": found_commits,
        "revision": revisions[0]["sha"] if revisions else "",
        "revisions": [revision["sha"] for revision in revisions],
        "branch": revisions[0]["branch"] if revisions else "",
        "branch_ref": revisions[0]["branch_ref"] if revisions else "",
        "remote_urls": list(dict.fromkeys(u for revision in revisions for u in revision["remote_urls"])),
        "parameters": build_parameters,
        "causes": [cause.get("shortDescription") or cause.get("_class") or "" for cause in all_causes],
        "triggered_by": author,
        "upstream": upstream,
        "url": url,
        "deployment": is_deployment,
    }
    links = []
    if is_deployment:
        fields["environment"] = environment(job, build_parameters, rules)
        links = [
            ToolLink(
                kind="deployed_in",
                target_key=build_key("/".join(job_names(up["project"])), up["build"]),
                description="upstream build",
                incoming=True,
            )
            for up in upstream
        ]
    return ToolItem(
        native_id=key,
        key=key,
        item_type=DEPLOYMENT if is_deployment else BUILD,
        url=url,
        title=build.get("fullDisplayName") or key,
        status=status,
        created=started,
        updated=finished,
        fields=fields,
        changelog=changelog,
        links=links,
        raw=dict(build),
    )
