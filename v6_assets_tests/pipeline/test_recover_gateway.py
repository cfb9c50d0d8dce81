"""``recover_spool --gateway NAME``: with several gateways (``V6_IB_GATEWAYS``) the recovery says whose spool."""

from __future__ import annotations

from pathlib import Path

import pytest

from v6_assets.ib.settings import IBEnvironment
from v6_assets.ib.spool import Spool
from v6_assets.pipeline.recover_spool import EXIT_NEEDED, EXIT_OK, main
from v6_assets_tests.ib.conftest import position_update


def test_recover_spool_checks_the_named_gateways_spool_and_refuses_to_guess(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "V6_IB_GATEWAYS": "alpha=127.0.0.1:4002/71/DU1; beta=127.0.0.1:4012/72/DU2",
        "V6_HOME": str(tmp_path / "home"),
        "V6_LAKE_URI": str(tmp_path / "lake"),
    }
    alpha, beta = IBEnvironment.read(env).gateway_settings()
    with Spool(alpha.spool_path) as spool:
        spool.append([position_update(1, account="DU1")])
    beta.spool_path.write_bytes(b"not a spool" * 100)

    assert main(["--check", "--gateway", "beta"], env) == EXIT_NEEDED
    assert "ib-beta.sqlite is damaged" in capsys.readouterr().out
    assert main(["--check", "--gateway", "alpha"], env) == EXIT_OK
    assert "ib-alpha.sqlite" in capsys.readouterr().out
    for argv, said in (([], "--gateway (missing)"), (["--gateway", "gamma"], "--gateway gamma")):
        with pytest.raises(SystemExit) as usage:
            main(["--check", *argv], env)
        assert usage.value.code == 2
        assert f"{said}: not a gateway of V6_IB_GATEWAYS (alpha, beta)" in capsys.readouterr().err
