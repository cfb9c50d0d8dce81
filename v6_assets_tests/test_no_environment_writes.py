"""Product code never writes the process environment: glibc's setenv is not thread-safe, and the code server, the
demo and the tests hold native thread pools (deltalake's tokio, polars) that read it; a write raced a read and
crashed the suite with a segmentation fault. Configuration is passed as mappings instead."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "v6_assets"
WRITES = re.compile(
    r"os\.environ\[[^\]]+\]\s*=(?!=)|os\.environ\.(update|pop|setdefault|clear|popitem)\(|os\.(putenv|unsetenv)\("
    r"|del\s+os\.environ\["
)


def test_the_pattern_catches_each_kind_of_write() -> None:
    for line in ('os.environ["A"] = "1"', "os.environ.update(x)", 'os.environ.pop("A")', 'os.putenv("A", "1")',
                 'del os.environ["A"]', 'os.environ.setdefault("A", "1")'):  # fmt: skip
        assert WRITES.search(line), line
    assert not WRITES.search('if os.environ["A"] == "1":')
    assert not WRITES.search('value = os.environ.get("A")')


def test_no_module_of_the_package_writes_the_environment() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if WRITES.search(line)
    ]
    assert len(list(PACKAGE.rglob("*.py"))) > 40  # the scan saw the package
    assert found == []
