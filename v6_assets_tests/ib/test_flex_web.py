"""The Flex Web Service client against a local HTTP server on loopback that answers like IB's service."""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from v6_assets.ib.flex_web import FlexWebClient, FlexWebError

TOKEN = "123456789012345678901234"
QUERY = "987654"
STATEMENT = b'<FlexQueryResponse queryName="daily" type="AF"><FlexStatements count="0" /></FlexQueryResponse>'


def _response(status: str, **children: str) -> bytes:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in children.items())
    return (f'<FlexStatementResponse timestamp="02 December, 2026 08:15 AM EST"><Status>{status}</Status>{inner}'
            "</FlexStatementResponse>").encode()  # fmt: skip


class FakeFlexService:
    """SendRequest -> a reference code; GetStatement -> the queued answers (then the statement)."""

    def __init__(self, get_answers: list[bytes], send_answers: list[bytes] | None = None) -> None:
        self.get_answers = list(get_answers)
        self.send_answers = list(send_answers or [])
        self.requests: list[tuple[str, dict[str, str]]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                service.requests.append((parsed.path, query))
                body = service.answer(parsed.path, query)
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/AccountManagement/FlexWebService"

    def answer(self, path: str, query: dict[str, str]) -> bytes:
        if query.get("t") != TOKEN:
            return _response("Fail", ErrorCode="1015", ErrorMessage="Token is invalid.")
        if path.endswith("/SendRequest"):
            if self.send_answers:
                return self.send_answers.pop(0)
            return _response("Success", ReferenceCode="5550001", Url=f"{self.base_url}/GetStatement")
        if path.endswith("/GetStatement"):
            return self.get_answers.pop(0) if self.get_answers else STATEMENT
        return b"not found"


@pytest.fixture
def service(request: pytest.FixtureRequest) -> Iterator[FakeFlexService]:
    svc = FakeFlexService(*getattr(request, "param", ([],)))
    svc.thread.start()
    try:
        yield svc
    finally:
        svc.server.shutdown()
        svc.server.server_close()


def _client(svc: FakeFlexService, token: str = TOKEN) -> FlexWebClient:
    return FlexWebClient(svc.base_url, token, QUERY, timeout_s=5, max_time_s=10, initial_wait_s=0.01, max_wait_s=0.05)


IN_PROGRESS = _response("Warn", ErrorCode="1019", ErrorMessage="Statement generation in progress. Please try again.")
TOO_MANY = _response("Warn", ErrorCode="1018", ErrorMessage="Too many requests have been made from this token.")


@pytest.mark.parametrize("service", [([IN_PROGRESS, IN_PROGRESS, TOO_MANY],)], indirect=True)
def test_in_progress_then_success(service: FakeFlexService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(service)
    assert client.fetch() == STATEMENT
    assert client.attempts == ["1019", "1019", "1018"]
    paths = [p.rsplit("/", 1)[-1] for p, _ in service.requests]
    assert paths == ["SendRequest", "GetStatement", "GetStatement", "GetStatement", "GetStatement"]
    assert service.requests[1][1]["q"] == "5550001" and service.requests[0][1]["q"] == QUERY
    assert TOKEN not in caplog.text and TOKEN not in repr(client)


@pytest.mark.parametrize("service", [([], [TOO_MANY])], indirect=True)
def test_too_many_requests_on_send_is_retried(service: FakeFlexService) -> None:
    assert _client(service).fetch() == STATEMENT


def test_an_invalid_token_fails_at_once_without_showing_it(
    service: FakeFlexService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "000000000000000000000000"
    with pytest.raises(FlexWebError, match="error 1015: Token is invalid") as info:
        _client(service, wrong).fetch()
    assert info.value.code == "1015"
    assert len(service.requests) == 1  # not retried
    assert wrong not in str(info.value) and wrong not in caplog.text


def test_a_dead_service_gives_up_with_a_clear_error() -> None:
    client = FlexWebClient("http://127.0.0.1:9/x", TOKEN, QUERY, timeout_s=0.5, max_time_s=0.3, initial_wait_s=0.05)
    with pytest.raises(FlexWebError, match="SendRequest: connection failed") as info:
        client.fetch()
    assert TOKEN not in str(info.value)
