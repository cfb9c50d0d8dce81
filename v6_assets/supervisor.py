"""``python -m v6_assets.supervisor``: the dev stack as separately supervised processes (issue 17, point 1).

``dagster dev`` stops everything when its webserver or daemon exits and never restarts a dead gRPC child of its code
server, so one killed process cost a whole-stack restart. This supervisor runs the production layout on one machine
instead, each part its own child process under the same ``DAGSTER_HOME``:

- one ``dagster code-server start`` per ``python_module`` entry of the workspace file, on a fixed loopback port (its
  ``dagster api grpc`` child holds the IB connection and answers the sensor);
- ``dagster-webserver`` and ``dagster-daemon run``, both pointed at those code servers by a generated workspace of
  ``grpc_server`` entries (their watch threads reload a location when its server comes back with a new id).

Every ``poll_s`` it restarts whatever exited (alone: the others keep running), kills a code server whose gRPC child
has been gone for ``orphan_grace_s`` (then restarts it; dagster never restarts that child) and kills a gRPC server cut
off from its code server (it would hold the IB lease until its heartbeat times out). A part that dies again within
``stable_s`` of its start is restarted after a growing backoff (at most ``max_backoff_s``), never given up.

It is started in its own session by ``v6_assets.devserver.StackProcess`` (``make run``, ``make demo``, the e2e
harness), so every process of the stack, run workers included, carries its session id. It stops on the
``--shutdown-pipe`` message, SIGTERM, SIGINT or SIGHUP: SIGTERM to every part, SIGKILL of the session after
``STOP_GRACE_S``; a closed pipe without the message (its launcher was killed) leaves the stack running, supervised.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from v6_assets.devserver import (
    CODE_SERVER,
    DAEMON,
    DEFAULT_PORT,
    GRPC_SERVER,
    LOOPBACK,
    SHUTDOWN_MESSAGE,
    WEBSERVER,
    free_port,
    session_processes,
    stack_roles,
)

STOP_GRACE_S = 3.0  # SIGTERM -> SIGKILL; the launcher escalates itself after 6 s (make run stops within 10 s)
GRPC_WORKSPACE = "v6_stack_workspace.yaml"  # written into DAGSTER_HOME


class SupervisorError(RuntimeError):
    """The workspace file cannot be served this way, or DAGSTER_HOME is not set."""


@dataclass(frozen=True)
class CodeLocation:
    """A ``python_module`` entry of the workspace file, served by its own code server on ``port``."""

    name: str
    module: str
    working_directory: str
    port: int


def code_locations(workspace: Path, ports: Sequence[int] = ()) -> list[CodeLocation]:
    """The workspace's ``python_module`` entries; ``ports`` (else free ones) are their code servers' ports."""
    try:
        entries = (yaml.safe_load(workspace.read_text()) or {}).get("load_from") or []
    except (OSError, yaml.YAMLError) as exc:
        raise SupervisorError(f"cannot read the workspace {workspace}: {exc}") from None
    found = []
    for i, entry in enumerate(entries):
        target = entry.get("python_module") if isinstance(entry, dict) else None
        if not isinstance(target, dict) or "module_name" not in target:
            raise SupervisorError(f"{workspace}: entry {i + 1} is not a python_module entry: {entry!r}")
        module = str(target["module_name"])
        workdir = (workspace.parent / str(target.get("working_directory", "."))).resolve()
        port = ports[i] if i < len(ports) else free_port()
        found.append(CodeLocation(str(target.get("location_name", module)), module, str(workdir), port))
    if not found:
        raise SupervisorError(f"{workspace}: no code location to serve")
    return found


def grpc_workspace(locations: Sequence[CodeLocation]) -> str:
    """The workspace the webserver and the daemon load: the code servers by loopback host and port."""
    entries = [{"grpc_server": {"host": LOOPBACK, "port": loc.port, "location_name": loc.name}} for loc in locations]
    return yaml.safe_dump({"load_from": entries}, sort_keys=False)


@dataclass
class Part:
    """One supervised process: what it is, how to start it, its current process."""

    role: str
    argv: list[str]
    cwd: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0  # exits within stable_s of the start, in a row: they grow the backoff
    next_start: float = 0.0  # monotonic time of the pending restart (0: none pending)
    port: int | None = None  # a code server's: the webserver and daemon start once it listens
    had_child: bool = False  # a code server that has served through a gRPC child (a starting one has none yet)
    orphaned_since: float | None = None
    reload_since: float | None = None  # a Reload was asked of this code server (its gRPC child had died)


@dataclass
class Supervisor:
    """Starts the parts, restarts what dies, stops them all (see the module docstring)."""

    parts: list[Part]
    env: Mapping[str, str]
    say: Callable[[str], None] = print
    poll_s: float = 0.5
    orphan_grace_s: float = 2.0
    reload_timeout_s: float = 90.0
    stable_s: float = 30.0
    max_backoff_s: float = 30.0

    def start_all(self, stop: threading.Event, code_server_timeout_s: float = 300.0) -> None:
        """Code servers first; the webserver and the daemon once every code server listens (its definitions are
        loaded before it listens), so their first workspace load finds the location, not a load error."""
        servers = [p for p in self.parts if p.port is not None]
        for part in servers:
            self._start(part)
        deadline = time.monotonic() + code_server_timeout_s
        waiting = list(servers)
        while waiting and not stop.is_set() and time.monotonic() < deadline:
            waiting = [p for p in waiting if p.proc is not None and p.proc.poll() is None and not _listens(p.port)]
            stop.wait(0.2)
        if stop.is_set():
            return  # asked to stop while the code servers were starting
        for part in self.parts:
            if part.port is None:
                self._start(part)

    def _start(self, part: Part) -> None:
        part.proc = subprocess.Popen(part.argv, cwd=part.cwd, env=dict(self.env), stdin=subprocess.DEVNULL)
        part.started_at = time.monotonic()
        part.next_start = 0.0
        part.had_child = False
        part.orphaned_since = part.reload_since = None

    def check(self) -> None:
        """One supervision pass: restart what exited (after its backoff), heal code servers without a gRPC child."""
        now = time.monotonic()
        for part in self.parts:
            if part.proc is None:
                continue
            code = part.proc.poll()
            if code is None:
                continue
            if not part.next_start:
                part.quick_deaths = part.quick_deaths + 1 if now - part.started_at < self.stable_s else 0
                delay = min(self.max_backoff_s, 2.0 ** (part.quick_deaths - 1)) if part.quick_deaths else 0.0
                part.next_start = now + delay
                when = f" in {delay:g} s" if delay else ""
                self.say(f"supervisor: {part.role} pid {part.proc.pid} exited with code {code}; restarting it{when}")
            if now >= part.next_start:
                self._start(part)
                part.restarts += 1
                self.say(f"supervisor: {part.role} restarted (pid {part.proc.pid})")
        self._heal_grpc_children(now)

    def _heal_grpc_children(self, now: float) -> None:
        roles = stack_roles(self.own_processes())
        parents: dict[int, int] = {}
        for pid, role in roles.items():
            if role == GRPC_SERVER:
                with contextlib.suppress(psutil.Error):
                    parents[pid] = psutil.Process(pid).ppid()
        servers = {p.proc.pid: p for p in self.parts if p.role == CODE_SERVER and p.proc and p.proc.poll() is None}
        for pid, parent in parents.items():
            if parent not in servers:
                # Its code server died: it serves nobody now but holds the IB lease until its heartbeat times out.
                self.say(f"supervisor: gRPC server pid {pid} lost its code server; killing it")
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
        with_child = set(parents.values())
        for server_pid, part in servers.items():
            if server_pid in with_child:
                part.had_child, part.orphaned_since, part.reload_since = True, None, None
                continue
            if not part.had_child:
                continue  # still starting its first gRPC child
            if part.orphaned_since is None:
                part.orphaned_since = now
            elif part.reload_since is None and now - part.orphaned_since >= self.orphan_grace_s:
                # What the UI's Reload does: the code server starts a new child (faster than a new code server).
                self.say(f"supervisor: code server pid {server_pid} lost its gRPC server; reloading it")
                part.reload_since = now
                threading.Thread(target=_reload_code_server, args=(part.port, self.say), daemon=True).start()
            elif part.reload_since is not None and now - part.reload_since >= self.reload_timeout_s:
                self.say(f"supervisor: code server pid {server_pid} has no gRPC server {self.reload_timeout_s:g} s "
                         "after the reload; killing it to restart both")  # fmt: skip
                with contextlib.suppress(psutil.Error):
                    psutil.Process(server_pid).kill()
                part.orphaned_since = part.reload_since = None

    def own_processes(self) -> list[psutil.Process]:
        """Every live process of the stack but this one: the session's when this process leads it (as started by
        StackProcess; run workers re-parented to init included), else the parts and their descendants (a test)."""
        me = os.getpid()
        if os.getsid(0) == me:
            return [p for p in session_processes(me) if p.pid != me]
        found = []
        for part in self.parts:
            if part.proc is None or part.proc.poll() is not None:
                continue
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(part.proc.pid)
                found += [root, *root.children(recursive=True)]
        return found

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_s):
            try:
                self.check()
            except (psutil.Error, OSError) as exc:  # a process vanished between listing and reading it
                self.say(f"supervisor: check skipped ({exc})")

    def stop_all(self) -> None:
        """SIGTERM to every part, SIGKILL of everything left in the session after ``STOP_GRACE_S``."""
        live = [p.proc for p in self.parts if p.proc is not None and p.proc.poll() is None]
        for proc in live:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self.own_processes():
            time.sleep(0.1)
            for proc in live:
                proc.poll()  # reap
        for leftover in self.own_processes():
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)


def _reload_code_server(port: int | None, say: Callable[[str], None]) -> None:
    """``ReloadCode`` on the code server at ``port``: it starts a new ``dagster api grpc`` child. The call itself
    usually fails after that (the code server then tries to stop the dead child); the supervisor checks for the new
    child, not the answer."""
    from dagster._grpc.client import DagsterGrpcClient

    try:
        DagsterGrpcClient(port=port, host=LOOPBACK).reload_code(timeout=300)
    except Exception as exc:  # expected when the old child is dead: see above
        say(f"supervisor: the reload of the code server on port {port} answered {type(exc).__name__}")


def _listens(port: int | None) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port or 0), timeout=1):
            return True
    except OSError:
        return False


def stack_parts(locations: Sequence[CodeLocation], port: int, workspace_file: Path, log_level: str) -> list[Part]:
    """The code servers (one per location), the webserver on ``port`` and the daemon, as ``dagster dev`` names them."""
    python = sys.executable
    parts = []
    for loc in locations:
        argv = [python, "-m", "dagster", "code-server", "start", "-h", LOOPBACK, "-p", str(loc.port)]
        argv += ["-m", loc.module, "-d", loc.working_directory, "--location-name", loc.name]
        parts.append(Part(CODE_SERVER, [*argv, "--log-level", log_level], loc.working_directory, port=loc.port))
    here, workspace = str(workspace_file.parent), str(workspace_file)
    webserver = [python, "-m", "dagster_webserver", "-h", LOOPBACK, "-p", str(port), "-w", workspace]
    parts.append(Part(WEBSERVER, [*webserver, "--dagster-log-level", log_level], here))
    parts.append(
        Part(DAEMON, [python, "-m", "dagster._daemon", "run", "-w", workspace, "--log-level", log_level], here)
    )
    return parts


def _watch_shutdown_pipe(fd: int, stop: threading.Event) -> None:
    """Set ``stop`` on the shutdown message; a pipe closed without it (the launcher died) changes nothing."""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.readline():
            if chunk.strip() == SHUTDOWN_MESSAGE.strip():
                stop.set()
                return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m v6_assets.supervisor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the webserver's port on 127.0.0.1")
    parser.add_argument("-w", "--workspace", default="workspace.yaml", help="python_module entries to serve")
    parser.add_argument("--code-server-port", type=int, action="append", default=[],
                        help="a code server's port (one per location, in order; default: a free one)")  # fmt: skip
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--shutdown-pipe", type=int, help="stop when the shutdown message arrives on this fd")
    args = parser.parse_args(argv)
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        print("DAGSTER_HOME is not set (make run sets it)", file=sys.stderr)
        return 2
    try:
        locations = code_locations(Path(args.workspace).resolve(), args.code_server_port)
    except SupervisorError as exc:
        print(exc, file=sys.stderr)
        return 2
    workspace_file = Path(home).resolve() / GRPC_WORKSPACE
    workspace_file.parent.mkdir(parents=True, exist_ok=True)
    workspace_file.write_text(grpc_workspace(locations))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda _s, _f: stop.set())
    if args.shutdown_pipe is not None:
        threading.Thread(target=_watch_shutdown_pipe, args=(args.shutdown_pipe, stop), daemon=True).start()
    supervisor = Supervisor(stack_parts(locations, args.port, workspace_file, args.log_level), os.environ,
                            say=lambda line: print(line, flush=True))  # fmt: skip
    served = ", ".join(f"{loc.name} on {LOOPBACK}:{loc.port}" for loc in locations)
    print(f"supervisor: code server(s) {served}; webserver on {LOOPBACK}:{args.port}; daemon", flush=True)
    try:
        supervisor.start_all(stop)
        # Ready for the first reload (dagster's gRPC client takes seconds to import on a loaded machine).
        threading.Thread(target=importlib.import_module, args=("dagster._grpc.client",), daemon=True).start()
        supervisor.run(stop)
    finally:
        supervisor.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
