"""Jenkins: builds and deployments of the jobs below a folder, read newest first down to the watermark.

Scope query: a job's full name (``folder/sub/job``) for that job's builds, a folder's or multibranch
project's full name (``folder``) for every job below it at any depth, or empty (or ``*``) for every job
of the instance. The URL-path form (``job/folder/job/app``) is accepted too.

Reading (Jenkins has no server-side "since"):
1. Jobs: ``GET /job/<path>/api/json?tree=jobs[_class,name,url,color,jobs[...]]`` nested a few levels
   deep; a folder at the deepest level that still has jobs is fetched on its own, so any depth works.
2. Builds per job, newest first: ``GET /job/<path>/api/json?tree=allBuilds[...]{M,N}`` in ranges of the
   scope's page size. A build is kept when it is still building or ended (timestamp + duration) at or
   after `since`, compared in epoch milliseconds. Builds are ordered by start, not end, and a long build
   can end after newer ones, so paging stops only at a finished build that *started* more than
   ``max_build_hours`` (default 24) before `since`: a build that started before the watermark but ended
   after it is never skipped unless it ran longer than that. A build seen twice (a new build shifted the
   ranges between two requests) is read once.
3. The builds of all jobs are then yielded oldest change first (end time, then key) in pages of the
   scope's page size, so the engine's cursor never passes a build it has not stored; Jenkins' own pages
   are newest first, which is why they are collected before the first page is yielded.

Auth: HTTP Basic ``username:api_token`` (no CSRF crumb needed with an API token). Reads only.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote

import httpx

from connectors.base import (
    Connector,
    CredentialField,
    Feature,
    ItemFailure,
    OptionField,
    Page,
    ScopeSpec,
    ToolItem,
    register_connector,
)
from connectors.client import HttpClient
from connectors.exceptions import AuthError, BadPayload, BadRequest, NotFound
from connectors.providers.jenkins.items import (
    BUILD,
    DEFAULT_DEPLOYMENT_PATTERN,
    DEFAULT_PRODUCTION_PATTERN,
    DEPLOYMENT,
    BuildRules,
    build_key,
    build_to_item,
    job_names,
    job_path,
    parse_build_key,
    to_epoch_ms,
)

DEFAULT_MAX_BUILD_HOURS = 24
JOB_FIELDS = "_class,name,url,color"
JOB_TREE_DEPTH = 3
CHANGE_ITEM_FIELDS = "commitId,msg,timestamp,author[fullName],authorEmail"
BUILD_FIELDS = (
    "number,timestamp,duration,estimatedDuration,result,building,displayName,fullDisplayName,url,"
    "actions[lastBuiltRevision[SHA1,branch[name]],"
    "buildsByBranchName[*[buildNumber,revision[SHA1,branch[name]]]],"
    "remoteUrls,causes[*],parameters[name,value]],"
    f"changeSet[kind,items[{CHANGE_ITEM_FIELDS}]],"
    f"changeSets[kind,items[{CHANGE_ITEM_FIELDS}]]"
)


def jobs_tree(depth: int = JOB_TREE_DEPTH) -> str:
    """``jobs[...,jobs[...,jobs[name]]]``: the innermost ``jobs[name]`` tells a folder from a job."""
    tree = "jobs[name]"
    for _ in range(depth):
        tree = f"jobs[{JOB_FIELDS},{tree}]"
    return tree


def scope_job(query: str) -> str:
    """A scope query as a full name: ``a/b``; ``job/a/job/b/``, an empty query and ``*`` are accepted."""
    text = query.strip()
    if text in ("", "*", "/"):
        return ""
    parts = [part for part in text.split("/") if part]
    if len(parts) % 2 == 0 and parts[0::2] == ["job"] * (len(parts) // 2):
        parts = [unquote(part) for part in parts[1::2]]
    return "/".join(parts)


@register_connector
class JenkinsConnector(Connector):
    slug = "jenkins"
    name = "Jenkins"
    credential_fields: ClassVar = (
        CredentialField("username", "User name", secret=False),
        CredentialField("api_token", "API token", help_text="From the user's Configure page in Jenkins."),
    )
    option_fields: ClassVar = (
        OptionField(
            "deployment_job_pattern",
            "Deployment job pattern",
            default=DEFAULT_DEPLOYMENT_PATTERN,
            help_text="A regular expression: builds of jobs whose full name matches are deployments.",
        ),
        OptionField(
            "production_pattern",
            "Production pattern",
            default=DEFAULT_PRODUCTION_PATTERN,
            help_text=(
                "A regular expression: a deployment is to production when it matches the job's full "
                "name or a build parameter's value; otherwise its ENV/ENVIRONMENT/STAGE parameter, "
                "else staging."
            ),
        ),
        OptionField(
            "max_build_hours",
            "Longest build (hours)",
            default=str(DEFAULT_MAX_BUILD_HOURS),
            help_text="How far before the last sync builds are re-read, so a long build is never missed.",
        ),
    )
    artifact_types = (BUILD, DEPLOYMENT)
    features = frozenset({Feature.READ, Feature.LINKS})
    query_help = (
        "A job's full name (folder/job), a folder or multibranch project for every job below it, "
        "or empty for every job."
    )

    def __init__(self, installation):
        super().__init__(installation)
        options = installation.options or {}
        try:
            self.rules = BuildRules.from_options(options)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        hours = options.get("max_build_hours") or str(DEFAULT_MAX_BUILD_HOURS)
        try:
            self.max_build_duration = timedelta(hours=float(hours))
        except ValueError:
            raise BadRequest(f"option max_build_hours {hours!r} is not a number of hours") from None
        credentials = installation.credentials
        if not credentials.get("username") or not credentials.get("api_token"):
            raise AuthError("Jenkins needs a user name and an API token")
        self.base_url = installation.base_url.rstrip("/")
        self.http = HttpClient(
            self.base_url + "/",
            auth=httpx.BasicAuth(credentials["username"], credentials["api_token"]),
            **installation.http_options(),
        )

    def close(self) -> None:
        self.http.close()

    # Reading

    def check_connection(self) -> str:
        me = self.http.get_json("me/api/json", params={"tree": "id,fullName"}) or {}
        return me.get("fullName") or me.get("id") or "an unnamed user"

    def jobs(self, query: str) -> list[str]:
        """The full names of the buildable jobs of a scope query, folders walked to any depth."""
        root = scope_job(query)
        node = self._get(f"{job_path(root)}api/json", {"tree": f"_class,name,{jobs_tree()}"})
        if not isinstance(node, dict):
            raise BadPayload(f"Jenkins answered {job_path(root) or '/'}api/json without an object")
        if "jobs" not in node:
            if not root:
                raise BadPayload("Jenkins' root lists no jobs")
            return [root]
        found: list[str] = []
        self._walk(root, node["jobs"], 1, found)
        return found

    def _walk(self, prefix: str, children: Any, level: int, found: list[str]) -> None:
        if not isinstance(children, list):
            raise BadPayload(f"Jenkins listed the jobs of {prefix or '/'} without a list")
        for child in children:
            name = child.get("name") if isinstance(child, dict) else None
            if not name:
                continue
            full_name = f"{prefix}/{name}" if prefix else name
            if "jobs" not in child:
                found.append(full_name)
            elif level < JOB_TREE_DEPTH:
                self._walk(full_name, child["jobs"], level + 1, found)
            elif child["jobs"]:  # deeper than the tree reached: ask this folder for its own jobs
                node = self._get(f"{job_path(full_name)}api/json", {"tree": jobs_tree()}) or {}
                self._walk(full_name, node.get("jobs") or [], 1, found)

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        items: list[ToolItem] = []
        failures: list[ItemFailure] = []
        for job in self.jobs(scope.query):
            job_items, job_failures = self._read_job(job, since, scope.page_size)
            items += job_items
            failures += job_failures
        items.sort(key=lambda item: (item.updated, item.key))
        size = max(1, scope.page_size)
        for start in range(0, max(len(items), 1 if failures else 0), size):
            yield Page(items=items[start : start + size], failures=failures if start == 0 else [])

    def _read_job(
        self, job: str, since: datetime | None, page_size: int
    ) -> tuple[list[ToolItem], list[ItemFailure]]:
        since_ms = None if since is None else to_epoch_ms(since)
        stop_before_ms = None if since is None else to_epoch_ms(since - self.max_build_duration)
        items: list[ToolItem] = []
        failures: list[ItemFailure] = []
        seen: set[Any] = set()
        try:
            for builds in self._build_pages(job, BUILD_FIELDS, page_size):
                past_watermark = False
                for build in builds:
                    number = build.get("number") if isinstance(build, dict) else None
                    if number in seen:
                        continue
                    seen.add(number)
                    try:
                        item = build_to_item(build, job, self.base_url, self.rules)
                    except (KeyError, TypeError, ValueError, AttributeError) as error:
                        key = build_key(job, number) if isinstance(number, int) else ""
                        failures.append(
                            ItemFailure(key, key, f"cannot read build {key or job}: {error!r:.200}", build)
                        )
                        continue
                    if since_ms is None or item.fields["building"] or to_epoch_ms(item.updated) >= since_ms:
                        items.append(item)
                    elif item.fields["timestamp"] < stop_before_ms:
                        past_watermark = True
                if past_watermark:
                    break
        except NotFound:  # the job went away between listing and reading
            return [], []
        return items, failures

    def _build_pages(self, job: str, fields: str, page_size: int) -> Iterator[list[Any]]:
        """``allBuilds`` newest first, in ``{M,N}`` ranges; ends on a short page."""
        size = max(1, page_size)
        start = 0
        while True:
            tree = f"allBuilds[{fields}]{{{start},{start + size}}}"
            body = self._get(f"{job_path(job)}api/json", {"tree": tree})
            builds = body.get("allBuilds") if isinstance(body, dict) else None
            if not isinstance(builds, list):
                raise BadPayload(f"Jenkins answered the builds of {job} without an allBuilds list")
            yield builds
            if len(builds) < size:
                return
            start += len(builds)

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        try:
            job, number = parse_build_key(key)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        build = self._get(f"{job_path(job)}{number}/api/json", {"tree": BUILD_FIELDS})
        try:
            return build_to_item(build, job, self.base_url, self.rules)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise BadPayload(f"cannot read build {key}: {error!r:.200}") from None

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        for job in self.jobs(scope.query):
            try:
                for builds in self._build_pages(job, "number", 1000):
                    for build in builds:
                        if isinstance(build, dict) and isinstance(build.get("number"), int):
                            yield build_key("/".join(job_names(job)), build["number"])
            except NotFound:
                continue

    def _get(self, path: str, params: dict[str, str]) -> Any:
        return self.http.get_json(path, params=params)
