"""The project's real Dagster stack for end-to-end tests, benchmarks and chaos runs, and a small GraphQL client.

Reusable outside pytest (no fixtures here)::

    from v6_assets_tests.e2e.harness import DagsterDev, free_port

    with DagsterDev(workdir, env={"V6_IB_PORT": str(sim_port)}) as dev:   # starts, waits for /server_info
        gql = dev.graphql()
        gql.wait_for_sensor_ticks("ib_position_stream", count=3, timeout_s=120)
        ...
    # on exit: shutdown pipe -> SIGTERM -> SIGKILL of the whole session; leftovers are verified to be gone

The process itself is ``v6_assets.devserver.StackProcess`` (shared with ``make run`` and ``make demo``): the
supervisor ``v6_assets.supervisor`` running a code server, the webserver and the daemon as separately restarted
processes, in its own session (``start_new_session``), so every descendant, including run workers and processes
re-parented to init, carries its session id: that is what the leftover check and the last-resort kill look for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from v6_assets.devserver import DevServerError, StackProcess, describe_processes, free_port, session_processes

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCATION_NAME = "v6_assets"
REPOSITORY_NAME = "__repository__"
LOOPBACK = "127.0.0.1"

T = TypeVar("T")


class HarnessError(RuntimeError):
    """The stack did not start, did not answer, or left processes behind."""


class GraphQLError(RuntimeError):
    """The GraphQL endpoint answered with errors (or a *Error union member where data was expected)."""


def wait_until(
    probe: Callable[[], T | None], *, timeout_s: float, interval_s: float = 1.0, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something truthy; raise TimeoutError naming ``what`` (and the last value)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}; last value: {last!r}")
        time.sleep(interval_s)


@dataclass
class DagsterDev:
    """One stack (webserver, daemon, code server) on loopback with its own DAGSTER_HOME, V6_HOME and lake under
    ``workdir``.

    ``env`` is layered over the inherited environment (minus every ``V6_*`` / ``DAGSTER_*`` variable) and the
    isolated defaults (e.g. pass ``V6_IB_PORT`` of a simulator). ``port`` 0 picks a free port. Ready means
    ``/server_info`` answers AND the code location is loaded. Output: ``workdir/dagster_dev.log`` (``log_tail()``).
    """

    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    project_dir: Path = PROJECT_ROOT
    workspace: str = "workspace.yaml"
    dagster_yaml: Path = PROJECT_ROOT / "dagster.yaml"
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 60.0
    process: StackProcess | None = field(default=None, init=False)
    terminated: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        if self.port == 0:
            self.port = free_port()

    @property
    def dagster_home(self) -> Path:
        return self.workdir / "dagster_home"

    @property
    def v6_home(self) -> Path:
        return self.workdir / "v6"

    @property
    def lake_uri(self) -> str:
        return str(self.workdir / "lake")

    @property
    def log_path(self) -> Path:
        return self.workdir / "dagster_dev.log"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def full_env(self) -> dict[str, str]:
        # Nothing from the caller's shell may point the test at a real gateway or a shared lake.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("V6_", "DAGSTER_"))}
        env.update(
            DAGSTER_HOME=str(self.dagster_home),
            V6_HOME=str(self.v6_home),
            V6_LAKE_URI=self.lake_uri,
            V6_IB_HOST=LOOPBACK,
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.update(self.env)
        return env

    def start(self) -> DagsterDev:
        if self.process is not None:
            raise HarnessError("already started")
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        self.v6_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.dagster_yaml, self.dagster_home / "dagster.yaml")
        self.process = StackProcess(
            project_dir=self.project_dir,
            env=self.full_env(),
            log_path=self.log_path,
            port=self.port,
            workspace=self.workspace,
            start_timeout_s=self.start_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
            ready_probe=lambda: self.graphql().location_loaded(LOCATION_NAME),
        )
        try:
            self.process.start()
        except DevServerError as exc:
            raise HarnessError(str(exc)) from None
        return self

    def stop(self) -> list[str]:
        """Shutdown pipe, then SIGTERM/SIGKILL of what remains of the session (e.g. runs in flight, returned)."""
        if self.process is None:
            return []
        try:
            self.terminated = self.process.stop()
        except DevServerError as exc:
            raise HarnessError(str(exc)) from None
        return self.terminated

    def processes(self) -> list[psutil.Process]:
        """Live processes of the stack (supervisor, webserver, daemon, code server + its gRPC child, run workers)."""
        return self.process.processes() if self.process is not None else []

    @property
    def sid(self) -> int:
        if self.process is None:
            raise HarnessError("not started")
        return self.process.sid

    def server_info(self) -> dict[str, Any] | None:
        return self.process.server_info() if self.process is not None else None

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def graphql(self, timeout_s: float = 60) -> DagsterGraphQL:
        return DagsterGraphQL(self.url, timeout_s=timeout_s)


# -- GraphQL ---------------------------------------------------------------------------------------------------------

_REPO = {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME}

_LOCATION_STATUS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

_SENSOR = """
query($selector: SensorSelector!, $limit: Int) { sensorOrError(sensorSelector: $selector) {
  __typename ... on PythonError { message } ... on SensorNotFoundError { message }
  ... on Sensor { name minIntervalSeconds sensorState { status
    ticks(limit: $limit) { tickId status timestamp endTimestamp skipReason runIds cursor error { message } } } } } }
"""

_SCHEDULES = """
query($selector: RepositorySelector!) { schedulesOrError(repositorySelector: $selector) {
  __typename ... on PythonError { message }
  ... on Schedules { results { name cronSchedule scheduleState { status } } } } }
"""

_MATERIALIZATIONS = """
query($key: AssetKeyInput!, $partitions: [String!], $limit: Int) { assetOrError(assetKey: $key) {
  __typename ... on AssetNotFoundError { message }
  ... on Asset { assetMaterializations(partitions: $partitions, limit: $limit) {
    runId partition timestamp
    metadataEntries { __typename label description
      ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } ... on IntMetadataEntry { intValue }
      ... on FloatMetadataEntry { floatValue } ... on JsonMetadataEntry { jsonString }
      ... on PathMetadataEntry { path } ... on UrlMetadataEntry { url } ... on BoolMetadataEntry { boolValue } } } } } }
"""

_ASSET_NODES = """
query { assetNodes { assetKey { path } dependencyKeys { path } isPartitioned groupName } }
"""

_RUNS = """
query($filter: RunsFilter, $limit: Int) { runsOrError(filter: $filter, limit: $limit) {
  __typename ... on PythonError { message } ... on InvalidPipelineRunsFilterError { message }
  ... on Runs { results { runId status jobName creationTime startTime endTime tags { key value }
    assetSelection { path } } } } }
"""

_LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId launchedRunIds }
  ... on PythonError { message stack } ... on PartitionKeysNotFoundError { message }
  ... on PartitionSetNotFoundError { message } ... on UnauthorizedError { message }
  ... on InvalidStepError { invalidStepKey } ... on InvalidOutputError { stepKey invalidOutputName }
  ... on RunConflict { message } ... on ConflictingExecutionParamsError { message }
  ... on PresetNotFoundError { message } ... on InvalidSubsetError { message }
  ... on NoModeProvidedError { message } ... on RunConfigValidationInvalid { errors { message } } } }
"""

_BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PythonError { message } ... on BackfillNotFoundError { message }
  ... on PartitionBackfill { id status numPartitions partitionNames error { message }
    runs { runId status tags { key value } } } } }
"""

_RELOAD = """
mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
  __typename ... on WorkspaceLocationEntry { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } }
  ... on ReloadNotSupported { message } ... on RepositoryLocationNotFound { message }
  ... on UnauthorizedError { message } ... on PythonError { message } } }
"""

_RUN_LOGS = """
query($runId: ID!) { logsForRun(runId: $runId) { __typename ... on PythonError { message }
  ... on EventConnection { events { __typename ... on MessageEvent { message }
    ... on ExecutionStepFailureEvent { error { message stack } } } } } }
"""

TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
TERMINAL_BACKFILL_STATUSES = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"})


@dataclass
class DagsterGraphQL:
    """Raw GraphQL over HTTP (stdlib only), with helpers for what the tests and benchmarks need."""

    url: str
    timeout_s: float = 60

    def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise GraphQLError(f"HTTP {exc.code}: {exc.read()[:2000]!r}") from None
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:4000])
        return dict(payload["data"])

    # -- workspace -------------------------------------------------------------------------------------------------
    def location_entries(self) -> list[dict[str, Any]]:
        data = self.execute(_LOCATION_STATUS)["workspaceOrError"]
        if data["__typename"] != "Workspace":
            raise GraphQLError(str(data))
        return list(data["locationEntries"])

    def location_loaded(self, name: str = LOCATION_NAME) -> bool:
        """True when the location finished loading; raises with the Python error if it failed to load."""
        try:
            entries = self.location_entries()
        except (OSError, GraphQLError):
            return False
        for entry in entries:
            if entry["name"] != name or entry["loadStatus"] != "LOADED":
                continue
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                raise HarnessError(f"code location {name} failed to load: {loaded.get('message')}")
            return loaded.get("__typename") == "RepositoryLocation"
        return False

    def reload_location(self, name: str = LOCATION_NAME) -> dict[str, Any]:
        """``reloadRepositoryLocation``: returns once the new code server answers (raises if it failed to load)."""
        result = dict(self.execute(_RELOAD, {"name": name})["reloadRepositoryLocation"])
        if result["__typename"] != "WorkspaceLocationEntry":
            raise GraphQLError(f"reload failed: {result}")
        loaded = result["locationOrLoadError"] or {}
        if loaded.get("__typename") != "RepositoryLocation":
            raise GraphQLError(f"reload failed: {result}")
        return result

    # -- definitions -----------------------------------------------------------------------------------------------
    def asset_graph(self) -> dict[str, list[str]]:
        """Asset key (slash-joined) -> upstream keys."""
        nodes = self.execute(_ASSET_NODES)["assetNodes"]
        return {"/".join(n["assetKey"]["path"]): ["/".join(d["path"]) for d in n["dependencyKeys"]] for n in nodes}

    def schedules(self) -> dict[str, str]:
        """Schedule name -> status (RUNNING / STOPPED)."""
        data = self.execute(_SCHEDULES, {"selector": _REPO})["schedulesOrError"]
        if data["__typename"] != "Schedules":
            raise GraphQLError(str(data))
        return {s["name"]: s["scheduleState"]["status"] for s in data["results"]}

    # -- sensors ---------------------------------------------------------------------------------------------------
    def sensor(self, name: str, tick_limit: int = 50) -> dict[str, Any]:
        selector = {**_REPO, "sensorName": name}
        data = dict(self.execute(_SENSOR, {"selector": selector, "limit": tick_limit})["sensorOrError"])
        if data["__typename"] != "Sensor":
            raise GraphQLError(str(data))
        return data

    def sensor_ticks(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: ``{tickId, status (STARTED|SKIPPED|SUCCESS|FAILURE), timestamp, skipReason, runIds...}``."""
        return list(self.sensor(name, limit)["sensorState"]["ticks"])

    def wait_for_sensor_ticks(
        self, name: str, *, count: int, timeout_s: float, after: float = 0.0, allow_failures: bool = False
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` completed ticks newer than ``after`` (epoch s); fail fast on a FAILURE tick."""

        def probe() -> list[dict[str, Any]] | None:
            ticks = [t for t in self.sensor_ticks(name, limit=max(50, count * 2)) if t["timestamp"] > after]
            failed = [t for t in ticks if t["status"] == "FAILURE"]
            if failed and not allow_failures:
                raise AssertionError(f"sensor {name} tick failed: {failed[0]['error']}")
            done = [t for t in ticks if t["status"] in ("SUCCESS", "SKIPPED", "FAILURE")]
            return done if len(done) >= count else None

        return wait_until(probe, timeout_s=timeout_s, interval_s=1.0, what=f"{count} ticks of sensor {name}")

    # -- assets ----------------------------------------------------------------------------------------------------
    def materializations(
        self, asset: str, partitions: Sequence[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first; ``metadata`` is a dict label -> value (text, markdown, number, JSON string...)."""
        key = {"path": asset.split("/")}
        variables = {"key": key, "partitions": list(partitions) if partitions else None, "limit": limit}
        data = self.execute(_MATERIALIZATIONS, variables)["assetOrError"]
        if data["__typename"] != "Asset":
            return []
        out = []
        for event in data["assetMaterializations"]:
            metadata = {}
            for entry in event["metadataEntries"]:
                values = [v for k, v in entry.items() if k not in ("__typename", "label", "description")]
                metadata[entry["label"]] = values[0] if values else entry["__typename"]
            out.append({**event, "metadata": metadata})
        return out

    # -- runs and backfills ----------------------------------------------------------------------------------------
    def runs(
        self, *, tags: Mapping[str, str] | None = None, statuses: Sequence[str] | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        flt: dict[str, Any] = {}
        if tags:
            flt["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if statuses:
            flt["statuses"] = list(statuses)
        data = self.execute(_RUNS, {"filter": flt, "limit": limit})["runsOrError"]
        if data["__typename"] != "Runs":
            raise GraphQLError(str(data))
        out = []
        for run in data["results"]:
            out.append({**run, "tags": {t["key"]: t["value"] for t in run["tags"]}})
        return out

    def run_log_text(self, run_id: str) -> str:
        """Every message of the run's event log (and step failure errors), one per line: what the run page shows."""
        data = self.execute(_RUN_LOGS, {"runId": run_id})["logsForRun"]
        if data["__typename"] != "EventConnection":
            raise GraphQLError(str(data))
        lines = []
        for event in data["events"]:
            lines.append(str(event.get("message") or ""))
            if event.get("error"):
                lines.append(str(event["error"].get("message") or ""))
                lines.extend(str(frame) for frame in event["error"].get("stack") or [])
        return "\n".join(lines)

    def wait_for_runs(self, run_ids: Sequence[str], timeout_s: float) -> list[dict[str, Any]]:
        wanted = set(run_ids)

        def probe() -> list[dict[str, Any]] | None:
            runs = [r for r in self.runs(limit=500) if r["runId"] in wanted]
            return (
                runs if len(runs) == len(wanted) and all(r["status"] in TERMINAL_RUN_STATUSES for r in runs) else None
            )

        return wait_until(probe, timeout_s=timeout_s, interval_s=1.0, what=f"runs {sorted(wanted)} to finish")

    def launch_partition_backfill(
        self, assets: Sequence[str], partitions: Sequence[str], *, title: str | None = None
    ) -> str:
        """``launchPartitionBackfill`` of an asset selection over partition keys; returns the backfill id."""
        params: dict[str, Any] = {
            "assetSelection": [{"path": a.split("/")} for a in assets],
            "partitionNames": list(partitions),
            "fromFailure": False,
        }
        if title:
            params["title"] = title
        result = self.execute(_LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"backfill not launched: {result}")
        return str(result["backfillId"])

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        data = dict(self.execute(_BACKFILL, {"id": backfill_id})["partitionBackfillOrError"])
        if data["__typename"] != "PartitionBackfill":
            raise GraphQLError(str(data))
        return data

    def wait_for_backfill(self, backfill_id: str, timeout_s: float) -> dict[str, Any]:
        """Wait until the backfill is in a terminal state AND its runs have finished."""

        def probe() -> dict[str, Any] | None:
            data = self.backfill(backfill_id)
            if data["status"] not in TERMINAL_BACKFILL_STATUSES:
                return None
            return data if all(r["status"] in TERMINAL_RUN_STATUSES for r in data["runs"]) else None

        return wait_until(probe, timeout_s=timeout_s, interval_s=1.0, what=f"backfill {backfill_id}")


@contextlib.contextmanager
def dagster_dev(workdir: Path, **kwargs: Any) -> Iterator[DagsterDev]:
    """Functional form of ``DagsterDev`` for ``with`` blocks."""
    dev = DagsterDev(workdir, **kwargs)
    with dev:
        yield dev


__all__ = [
    "LOCATION_NAME",
    "PROJECT_ROOT",
    "DagsterDev",
    "DagsterGraphQL",
    "GraphQLError",
    "HarnessError",
    "dagster_dev",
    "describe_processes",
    "free_port",
    "session_processes",
    "wait_until",
]
