"""The ``flex_statements`` sensor: statement files dropped into the statements folder (``V6_STATEMENTS_DIR``, default
``$V6_HOME/statements``) become statement table rows and a reconciliation run of their session.

Each tick:

1. Optionally fetches the last finished session's statement from the Flex Web Service (only when ``V6_FLEX_TOKEN``
   and ``V6_FLEX_QUERY_ID`` are both set; the token travels as a Dagster ``EnvVar`` and is never logged, shown in run
   config or metadata): once the session is more than ``FETCH_AFTER`` past its cut (IB's end-of-day processing) and
   its ledger has no rows, at most once per ``FETCH_EVERY``; the answer is written into the folder (atomically).
2. Takes each ``*.xml`` file whose size and modification time did not change since the previous tick (a file still
   being written is left for later; hidden and ``.part`` files are ignored), reads its bytes ONCE and ingests them
   (``pipeline.statements.ingest_statement``: a bad file writes nothing and is reported with its reason; the same
   bytes are not tried again).
3. Reports a materialization of each statement table for every new or corrected session x account and requests
   the ``statement_reconciliation`` run of that session (run key = session + statement id: once per statement).
"""

import json
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetMaterialization,
    ConfigurableResource,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from pydantic import Field

from v6_assets import sessions
from v6_assets.contracts.clock import utc_now
from v6_assets.contracts.statement_tables import STATEMENT_FILES
from v6_assets.defs.resources import IBStreamResource, LakeResource, _env_or
from v6_assets.defs.sensors import daemon_minimum_interval
from v6_assets.defs.settings import DefsEnvironment
from v6_assets.defs.statement_assets import STATEMENT_SPECS, reconciliation_job
from v6_assets.ib.flex import statement_id
from v6_assets.ib.flex_web import FlexWebClient, FlexWebError
from v6_assets.pipeline.settings import StatementsEnvironment
from v6_assets.pipeline.statements import StatementError, ingest_statement, today_in_new_york

FETCH_AFTER = timedelta(hours=10)  # IB's daily statements are final after its end-of-day processing (next morning)
FETCH_EVERY = timedelta(hours=1)
_DEFAULT_URL = StatementsEnvironment.read({}).flex_url


class FlexStatementsResource(ConfigurableResource):
    """Where statements are found: the drop folder, and the Flex Web Service when token and query id are set."""

    folder: str = Field(default="", description="Statements folder (V6_STATEMENTS_DIR; empty = $V6_HOME/statements).")
    token: str = Field(default="", description="Flex Web Service token (V6_FLEX_TOKEN, EnvVar; never shown).")
    query_id: str = Field(default="", description="Flex query id (V6_FLEX_QUERY_ID).")
    url: str = Field(default=_DEFAULT_URL, description="Flex Web Service base URL (V6_FLEX_URL).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "FlexStatementsResource":
        env = os.environ if environ is None else environ
        return cls(
            folder=_env_or("V6_STATEMENTS_DIR", "", env),
            token=_env_or("V6_FLEX_TOKEN", "", env),
            query_id=_env_or("V6_FLEX_QUERY_ID", "", env),
            url=_env_or("V6_FLEX_URL", _DEFAULT_URL, env),
        )

    def statements_folder(self, home: str) -> Path:
        return Path(self.folder) if self.folder else Path(home) / "statements"

    def web_client(self) -> FlexWebClient | None:
        if not (self.token and self.query_id):
            return None
        return FlexWebClient(self.url, self.token, self.query_id, max_time_s=20.0)


def _candidates(folder: Path) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.xml")):
        if path.name.startswith(".") or not path.is_file():
            continue
        st = path.stat()
        out[path.name] = (st.st_size, st.st_mtime_ns)
    return out


def maybe_fetch(
    log: Any,
    flex: FlexStatementsResource,
    folder: Path,
    state: dict[str, Any],
    lake: LakeResource,
    now: datetime | None = None,
) -> str | None:
    """Fetch the last finished session's statement into ``folder`` when due (see the module docstring); a note."""
    client = flex.web_client()
    if client is None:
        return None
    now = now or utc_now()
    session = sessions.previous_session(sessions.current_session(now))
    if now < sessions.eod_cut(session) + FETCH_AFTER or session.isoformat() in state.get("fetched", []):
        return None
    last = state.get("last_fetch_at")
    if last is not None and now.timestamp() - float(last) < FETCH_EVERY.total_seconds():
        return None
    if lake.lake().read_sessions(STATEMENT_FILES, [session]).height:
        state.setdefault("fetched", []).append(session.isoformat())
        return None
    state["last_fetch_at"] = now.timestamp()
    try:
        data = client.fetch()
    except FlexWebError as exc:  # its message never holds the token
        log.warning(str(exc))
        return f"Flex Web Service: {exc}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"flex-web-{session.isoformat()}.xml"
    tmp = folder / f".{target.name}.part"
    tmp.write_bytes(data)
    tmp.replace(target)
    state.setdefault("fetched", []).append(session.isoformat())
    return f"fetched {target.name} from the Flex Web Service"


@sensor(
    name="flex_statements",
    job=reconciliation_job,
    minimum_interval_seconds=daemon_minimum_interval(DefsEnvironment.read().statements_interval_s),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Ingests IB Flex statement files from the statements folder (V6_STATEMENTS_DIR, default $V6_HOME/statements) "
        "exactly once into the statement tables, and requests the reconciliation of their session. Fetches from the "
        "Flex Web Service when V6_FLEX_TOKEN and V6_FLEX_QUERY_ID are set."
    ),
)
def flex_statements(
    context: SensorEvaluationContext, lake: LakeResource, ib_stream: IBStreamResource, flex: FlexStatementsResource
) -> SensorResult | SkipReason:
    state: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    seen: dict[str, list[Any]] = state.setdefault("seen", {})  # name -> [size, mtime_ns] at the previous tick
    done: dict[str, str] = state.setdefault("done", {})  # name -> sha256 of the bytes handled
    folder = flex.statements_folder(ib_stream.home)
    notes = [n for n in [maybe_fetch(context.log, flex, folder, state, lake)] if n]
    allowed = ib_stream.allowed_accounts()
    events: list[AssetMaterialization] = []
    runs: list[RunRequest] = []
    current = _candidates(folder)
    for name, stamp in current.items():
        if seen.get(name) != list(stamp):
            notes.append(f"{name}: waiting one tick for it to settle")
            continue
        data = (folder / name).read_bytes()
        sid = statement_id(data)
        if done.get(name) == sid:
            continue
        done[name] = sid
        try:
            outcomes = ingest_statement(lake.lake(), data, file_name=name, allowed_accounts=allowed,
                                        today=today_in_new_york())  # fmt: skip
        except StatementError as exc:
            context.log.error(f"statement file {name} refused (nothing written): {exc}")
            notes.append(f"{name}: REFUSED: {exc}")
            continue
        for o in outcomes:
            notes.append(o.describe())
            if o.status not in ("new", "replaced"):
                continue
            for spec in STATEMENT_SPECS:
                events.append(AssetMaterialization(
                    asset_key=spec.key, partition=o.session.isoformat(), description=o.describe(),
                    metadata={"account": o.account, "statement_id": o.statement_id, "status": o.status,
                              "file": name, "rows": o.rows.get(spec.key.to_user_string(), 0)},
                ))  # fmt: skip
        for session in sorted({o.session for o in outcomes if o.status in ("new", "replaced")}):
            runs.append(RunRequest(run_key=f"{session.isoformat()}:{sid}", partition_key=session.isoformat(),
                                   tags={"v6/why": f"statement {name}"}))  # fmt: skip
    state["seen"] = {name: list(stamp) for name, stamp in current.items()}
    state["done"] = {name: sid for name, sid in done.items() if name in current}
    cursor = json.dumps(state, sort_keys=True)
    if not events and not runs:
        context.update_cursor(cursor)
        return SkipReason("; ".join(notes) or f"no new statement files in {folder.name}/")
    return SensorResult(run_requests=runs, asset_events=events, cursor=cursor)


STATEMENT_SENSORS = [flex_statements]
