"""Top of the Dagster wiring: everything the code location exposes.

Importing this module never opens an IB connection (run workers, the CLI and tests import it too): the streamer is
started lazily by the ``ib_position_stream`` sensor only.
"""

from dagster import Definitions, in_process_executor

from v6_assets.defs.account_assets import ACCOUNT_ASSETS, account_checks
from v6_assets.defs.assets import DAILY_ASSETS, STREAM_SPECS
from v6_assets.defs.book_assets import BOOK_ASSETS, BOOK_STREAM_SPECS, book_checks
from v6_assets.defs.checks import all_checks
from v6_assets.defs.jobs import daily_assets_job, table_maintenance
from v6_assets.defs.lifecycle_assets import LIFECYCLE_ASSETS, LIFECYCLE_CHECKS
from v6_assets.defs.resources import IBStreamResource, LakeResource
from v6_assets.defs.risk_assets import RISK_ASSETS, RISK_CHECKS
from v6_assets.defs.schedules import ALL_SCHEDULES
from v6_assets.defs.sensors import ib_position_stream
from v6_assets.defs.statement_assets import RECONCILIATION_CHECKS, STATEMENT_SPECS, reconciliation, reconciliation_job
from v6_assets.defs.statement_sensors import FlexStatementsResource, flex_statements

defs = Definitions(
    assets=[
        *STREAM_SPECS,
        *BOOK_STREAM_SPECS,
        *DAILY_ASSETS,
        *BOOK_ASSETS,
        *LIFECYCLE_ASSETS,
        *RISK_ASSETS,
        *ACCOUNT_ASSETS,
        *STATEMENT_SPECS,
        reconciliation,
    ],
    asset_checks=[
        *all_checks(),
        *book_checks(),
        *LIFECYCLE_CHECKS,
        *RISK_CHECKS,
        *RECONCILIATION_CHECKS,
        *account_checks(),
    ],
    jobs=[daily_assets_job, table_maintenance, reconciliation_job],
    sensors=[ib_position_stream, flex_statements],
    schedules=ALL_SCHEDULES,
    resources={
        "ib_stream": IBStreamResource.from_env(),
        "lake": LakeResource.from_env(),
        "flex": FlexStatementsResource.from_env(),
    },
    # The daily steps are a chain (eod -> pnl, exposure) over one Delta lake: a process per step (Dagster's default
    # multiprocess executor) buys no parallelism on a small machine and costs an interpreter start per step.
    executor=in_process_executor,
)
