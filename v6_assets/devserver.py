"""The dev stack as a managed child process: start it, wait until it serves, stop it and everything it started.

Used by ``make run`` (``main``), ``make demo`` (``v6_assets.demo``) and by the end-to-end tests, benchmarks and chaos
runs (``v6_assets_tests.e2e.harness``). The stack is ``python -m v6_assets.supervisor`` (code server, webserver and
daemon as separately supervised processes, issue 17) started in its own session (``start_new_session``), so every
descendant, run workers and processes re-parented to init included, carries its session id: that is what the
leftover check and the last-resort kill look for. It is stopped through ``--shutdown-pipe`` first (the supervisor
then stops its parts), then by signals to the whole session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 3000
STACK_SID_FILE = "v6_stack.sid"  # in DAGSTER_HOME: the session of the stack make run started
SHUTDOWN_MESSAGE = b"SHUTDOWN\n"  # what the supervisor waits for on --shutdown-pipe


class DevServerError(RuntimeError):
    """The stack did not start, exited, or left processes behind that even SIGKILL did not end."""


def session_processes(sid: int) -> list[psutil.Process]:
    """Every live, non-zombie process whose session id is ``sid``."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(proc.pid) == sid:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def describe_processes(procs: Sequence[psutil.Process]) -> str:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid}: {' '.join(proc.cmdline())[:160]}")
        except psutil.Error:
            out.append(f"{proc.pid}: <gone>")
    return "; ".join(out)


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server could listen on ``host:port`` now. Bound with ``SO_REUSEADDR`` like the webserver itself
    (uvicorn/asyncio set it): sockets in TIME_WAIT after a stopped server (Ctrl-C) do not make the port busy for the
    next minute, while a live listener still does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class StackProcess:
    """``python -m v6_assets.supervisor --port PORT -w WORKSPACE --shutdown-pipe FD`` in its own session.

    ``start()`` returns once ``GET /server_info`` answers (``ready_probe`` may demand more, e.g. a loaded code
    location). ``stop()`` writes the shutdown message to the pipe (the supervisor then stops its webserver, daemon and
    code servers), escalates to SIGTERM of the whole session after ``stop_timeout_s`` and to SIGKILL
    ``kill_after_s`` later, so a stop takes at most about ``stop_timeout_s + kill_after_s`` (the default: under 10 s,
    issue 17; a streamer killed this way loses nothing its spool committed). It raises ``DevServerError`` only if a
    process survives SIGKILL. Output goes to ``log_path`` (None: this process's stdout and stderr).
    """

    project_dir: Path
    env: Mapping[str, str]
    log_path: Path | None
    port: int = DEFAULT_PORT
    workspace: str = "workspace.yaml"
    log_level: str = "info"
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 6.0
    kill_after_s: float = 2.5
    ready_probe: Callable[[], bool] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _pipe_w: int | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def sid(self) -> int:
        if self.proc is None:
            raise DevServerError("the stack is not started")
        return self.proc.pid  # start_new_session: the leader's pid is the session id

    def processes(self) -> list[psutil.Process]:
        """Live processes of the stack: supervisor, webserver, daemon, code server + its gRPC child, run workers."""
        return session_processes(self.sid) if self.proc is not None else []

    def server_info(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as resp:
                return dict(json.loads(resp.read()))
        except (OSError, ValueError):
            return None

    def log_tail(self, chars: int = 6000) -> str:
        if self.log_path is None:
            return "<output on the terminal>"
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def start(self) -> StackProcess:
        if self.proc is not None:
            raise DevServerError("the stack is already started")
        if not port_is_free(self.port):
            raise DevServerError(
                f"port {self.port} on {LOOPBACK} is in use (another make run or demo?); stop it or pick --port"
            )
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        pipe_r, self._pipe_w = os.pipe()
        cmd = [sys.executable, "-m", "v6_assets.supervisor", "--port", str(self.port), "-w", self.workspace]
        cmd += ["--log-level", self.log_level, "--shutdown-pipe", str(pipe_r)]
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.project_dir,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT if self._log is not None else None,
                pass_fds=[pipe_r],
                start_new_session=True,  # Ctrl-C reaches us only; we stop it through the pipe
            )
        finally:
            os.close(pipe_r)
        try:
            self.wait_ready()
        except BaseException:
            with contextlib.suppress(DevServerError):
                self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise DevServerError(f"the stack exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if self.server_info() is not None and (self.ready_probe is None or self.ready_probe()):
                return
            if time.monotonic() > deadline:
                raise DevServerError(f"the stack is not ready after {self.start_timeout_s:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> list[str]:
        """Stop everything it started; return what had to be terminated after the supervisor itself exited.

        One deadline for the whole stop: the shutdown pipe, then (after ``stop_timeout_s``) SIGTERM to every process
        of the session, run workers still in flight included, then (``kill_after_s`` later) SIGKILL. Raises
        ``DevServerError`` only if a process of the session survives even that.
        """
        if self.proc is None:
            return []
        sid = self.sid
        terminated: list[str] = []
        # A supervisor that is already gone (killed) stops nothing: signal what is left of its session at once.
        graceful_s = self.stop_timeout_s if self.proc.poll() is None else 0.0
        try:
            if self._pipe_w is not None:
                with contextlib.suppress(OSError):
                    os.write(self._pipe_w, SHUTDOWN_MESSAGE)
                with contextlib.suppress(OSError):
                    os.close(self._pipe_w)
                self._pipe_w = None
            graceful_until = time.monotonic() + graceful_s
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=graceful_s)
            # The code server's gRPC child may take a moment after the supervisor itself has gone.
            while session_processes(sid) and time.monotonic() < graceful_until:
                time.sleep(0.1)
            left = session_processes(sid)
            if left:
                terminated.append(describe_processes(left))
                signal_session(sid, signal.SIGTERM)
                _gone, alive = psutil.wait_procs(left, timeout=self.kill_after_s)
                if alive:
                    signal_session(sid, signal.SIGKILL)
                    psutil.wait_procs(alive, timeout=5)
            survivors = session_processes(sid)
            if survivors:
                raise DevServerError(f"processes survived SIGKILL: {describe_processes(survivors)}")
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
            if self._log is not None:
                self._log.close()
                self._log = None
        return terminated

    def __enter__(self) -> StackProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the webserver's GraphQL (stdlib only): what make demo asks of the running stack --------------------------------

_LAUNCH_RUN = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message } ... on InvalidSubsetError { message } ... on PipelineNotFoundError { message }
  ... on RunConflict { message } ... on UnauthorizedError { message } ... on InvalidStepError { invalidStepKey }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""

_RUN_STATUS = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } ... on RunNotFoundError { message }
  ... on PythonError { message } } }
"""

# The code location (workspace.yaml) and the tags that make one run of a partitioned asset job cover a range.
LOCATION = "v6_assets"
REPOSITORY = "__repository__"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
RUN_DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


def webserver_graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """POST one GraphQL request to the webserver at ``url``; its ``data`` (raises DevServerError on errors)."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            payload = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise DevServerError(f"GraphQL request to {url} failed: {exc}") from None
    if payload.get("errors"):
        raise DevServerError(f"GraphQL errors: {json.dumps(payload['errors'])[:2000]}")
    return dict(payload["data"])


def mark_nux_seen(url: str) -> None:
    """Dismiss the webserver's first-visit sign-up modal (``setNuxSeen``): it would cover the demo's first screen."""
    webserver_graphql(url, "mutation { setNuxSeen }")


def launch_range_run(url: str, job: str, first: str, last: str, why: str, timeout_s: float = 120.0) -> str:
    """One run of the partitioned ``job`` over the partitions ``first``..``last`` (its range tags), retried until the
    code location has loaded; returns the run id. One run, exactly that range: an asset backfill of the daily assets
    splits into two runs and Dagster (1.13) adds the session after the range to daily_pnl's run (its D-1 mapping)."""
    tags = [
        {"key": RANGE_TAGS[0], "value": first},
        {"key": RANGE_TAGS[1], "value": last},
        {"key": "v6/why", "value": why},
    ]
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job},
        "executionMetadata": {"tags": tags},
        "runConfigData": {},
        "mode": "default",
    }
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = webserver_graphql(url, _LAUNCH_RUN, {"params": params})["launchRun"]
        except DevServerError as exc:
            result = {"__typename": "DevServerError", "message": str(exc)}
        if result["__typename"] == "LaunchRunSuccess":
            return str(result["run"]["runId"])
        if time.monotonic() > deadline:
            raise DevServerError(f"run of {job} not launched: {result}")
        time.sleep(2.0)  # the code location is still loading


def run_status(url: str, run_id: str) -> str:
    """The run's status (QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELED...)."""
    data = webserver_graphql(url, _RUN_STATUS, {"id": run_id})["runOrError"]
    if data["__typename"] != "Run":
        raise DevServerError(f"run {run_id}: {data.get('message', data)}")
    return str(data["status"])


def signal_session(sid: int, sig: signal.Signals) -> None:
    for proc in session_processes(sid):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def stop_recorded_session(sid_file: Path, say: Callable[[str], None] = print) -> None:
    """Stop a stack a previous ``make run`` / ``make demo`` left running (its launcher was killed with SIGKILL): the
    session id recorded in ``sid_file`` names every process it started."""
    try:
        sid = int(sid_file.read_text().strip())
    except (OSError, ValueError):
        return
    left = session_processes(sid)
    if left:
        say(f"Stopping {len(left)} processes a previous run left running: {describe_processes(left)}")
        signal_session(sid, signal.SIGTERM)
        _gone, alive = psutil.wait_procs(left, timeout=15)
        if alive:
            signal_session(sid, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=5)
    sid_file.unlink(missing_ok=True)


# -- what supervises what (issue 17, point 1; docs/reliability.md, "Faults and who heals them") ------------------------
# The supervisor (v6_assets.supervisor, the session leader) restarts its code server, webserver and daemon one by one
# and a code server whose gRPC child died; a killed run worker is marked failed by the gRPC server that started it
# (dagster's server.py `_check_for_orphaned_runs`). The watchdog below, in the launcher (make run, make demo),
# covers the supervisor itself: if it is gone, what is left of its session is stopped and a new stack is started.

WEBSERVER, DAEMON, CODE_SERVER, GRPC_SERVER, RUN_WORKER, SUPERVISOR = (
    "webserver", "daemon", "code server", "gRPC server", "run worker", "supervisor"
)  # fmt: skip


def stack_role(cmdline: Sequence[str], parent_role: str | None = None) -> str | None:
    """Which process of the stack ``cmdline`` is (None: not one the supervisor knows)."""
    args = list(cmdline)
    joined = " ".join(args[:8])
    if "dagster_webserver" in args:
        return WEBSERVER
    if "dagster._daemon" in args:
        return DAEMON
    if "code-server" in args and "start" in args:
        return CODE_SERVER
    if "api" in args and "grpc" in args:
        return GRPC_SERVER
    if "multiprocessing.spawn" in joined and parent_role == GRPC_SERVER:
        return RUN_WORKER
    if args[1:3] == ["-m", "v6_assets.supervisor"]:
        return SUPERVISOR
    return None


def stack_roles(procs: Sequence[psutil.Process]) -> dict[int, str]:
    """pid -> role for the processes of a stack that have one."""
    cmdlines: dict[int, list[str]] = {}
    parents: dict[int, int] = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            cmdlines[proc.pid] = proc.cmdline()
            parents[proc.pid] = proc.ppid()
    first = {pid: stack_role(cmd) for pid, cmd in cmdlines.items()}
    roles: dict[int, str] = {}
    for pid, cmd in cmdlines.items():
        role = first[pid] or stack_role(cmd, first.get(parents[pid]))
        if role is not None:
            roles[pid] = role
    return roles


@dataclass
class StackWatchdog:
    """Restarts the whole stack when its supervisor is gone (checked every ``poll_s``); the supervisor heals the rest.

    ``run()`` loops until ``stop_event`` is set; ``say`` receives one line per action (what died, how long the restart
    took). A failed restart is retried after ``restart_backoff_s``.
    """

    dev: StackProcess
    say: Callable[[str], None] = print
    poll_s: float = 1.0
    restart_backoff_s: float = 5.0
    on_restart: Callable[[], None] | None = None  # e.g. record the new session id
    restarts: int = field(default=0, init=False)

    def check(self) -> str | None:
        proc = self.dev.proc
        if proc is not None and proc.poll() is not None:
            return f"the supervisor exited with code {proc.returncode}"
        return None

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Supervise until ``stop_event`` is set (forever without one); a failed restart is retried."""
        stop = stop_event or threading.Event()
        while not stop.wait(self.poll_s):
            reason = self.check()
            if reason is None:
                continue
            self.say(f"watchdog: {reason}; restarting the stack")
            started = time.monotonic()
            try:
                self.dev.stop()
                stopped = time.monotonic() - started
                self.dev.proc = None
                self.dev.start()
            except (DevServerError, RuntimeError) as exc:  # a failed start: try again
                self.say(f"watchdog: restart failed ({exc}); retrying in {self.restart_backoff_s:g} s")
                stop.wait(self.restart_backoff_s)
                continue
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart()
            took = time.monotonic() - started
            self.say(f"watchdog: stack restarted in {took:.1f} s (the old one stopped in {stopped:.1f} s)")


def probe_code_server(port: int, host: str = LOOPBACK) -> str | None:
    """None when the code server on ``host:port`` reaches its user-code process, else why not.

    ``Ping`` is forwarded by ``dagster code-server start`` to its ``dagster api grpc`` child, so it fails when that
    child is dead or hung, while the proxy itself stays up (and ``dagster api grpc-health-check``, answered by the
    proxy, still passes): this is the production code server's liveness probe (docs/scale-out.md)."""
    from dagster._grpc.client import DagsterGrpcClient

    client = DagsterGrpcClient(port=port, host=host)
    try:
        client.ping("v6-probe")  # a hung child: the probe's own timeout (Kubernetes timeoutSeconds) fails it
    except Exception as exc:  # any failure means: not serving user code
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """``make run``: the supervised stack on loopback, stopped within ~10 s by Ctrl-C, SIGTERM or SIGHUP."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m v6_assets.devserver", description=main.__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("-w", "--workspace", default="workspace.yaml")
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--probe", type=int, metavar="PORT", help="only check that the code server on PORT (host: --probe-host) "
        "reaches its user code (exit 0) or not (exit 1): the liveness probe of a production code server",
    )  # fmt: skip
    parser.add_argument("--probe-host", default=LOOPBACK)
    args = parser.parse_args(argv)
    if args.probe is not None:
        problem = probe_code_server(args.probe, args.probe_host)
        print(problem or "code server reaches its user code", file=sys.stderr if problem else sys.stdout)
        return 1 if problem else 0
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        print("DAGSTER_HOME is not set (make run sets it)", file=sys.stderr)
        return 2
    sid_file = Path(home) / STACK_SID_FILE
    stop_recorded_session(sid_file)  # a stack whose launcher was killed -9 (its port would be busy)
    dev = StackProcess(
        project_dir=Path.cwd(), env=dict(os.environ), log_path=None, port=args.port, workspace=args.workspace,
        log_level=args.log_level,
    )  # fmt: skip
    # The stack runs in its own session: Ctrl-C reaches this process only, which stops it in order.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    started = None

    def record_session() -> None:
        sid_file.write_text(f"{dev.sid}\n")

    try:
        dev.start()
        record_session()
        print(f"the stack serves {dev.url}; Ctrl-C stops it; its supervisor restarts what dies", flush=True)
        StackWatchdog(dev, on_restart=record_session).run()  # until a signal raises KeyboardInterrupt
        return 1
    except KeyboardInterrupt:
        started = time.monotonic()
        return 0
    finally:
        # A second signal during the stop must not skip it.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        killed = dev.stop()
        sid_file.unlink(missing_ok=True)
        if started is not None:
            extra = f" (ended by signal: {'; '.join(killed)})" if killed else ""
            print(f"the stack stopped in {time.monotonic() - started:.1f} s{extra}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
