"""IB's Flex Web Service client: SendRequest(token, query id) -> reference code, GetStatement(code) -> the XML.

Version 3 of the service, as IB documents it: both calls are GETs with ``t`` (token), ``q`` (query id or reference
code) and ``v=3``; answers are ``FlexStatementResponse`` documents (Status Success/Warn/Fail, ReferenceCode, Url,
ErrorCode, ErrorMessage) until the statement itself (``FlexQueryResponse``) comes back. Codes 1019 ("statement
generation in progress"), 1018 ("too many requests") and 1009 (server busy) are retried with exponential backoff
(``backoff``); every other code is an error at once (e.g. 1012 token expired, 1015 token invalid).

The token is a secret: it is sent only in the request and never appears in an exception, a log line or a return
value (errors name the step and IB's code and message; the URL with its query string is never shown).
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import backoff

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_CODES = frozenset({"1009", "1018", "1019"})
USER_AGENT = "v6_assets flex client"


class FlexWebError(RuntimeError):
    """The service refused or failed; ``code`` is IB's error code when it gave one."""

    def __init__(self, step: str, code: str | None, message: str) -> None:
        self.step, self.code = step, code
        super().__init__(f"Flex Web Service {step}: {f'error {code}: ' if code else ''}{message}")


class _Retry(FlexWebError):
    """A retryable answer (in progress, too many requests, busy)."""


@dataclass(frozen=True)
class FlexWebClient:
    """``fetch()`` -> the statement's bytes. ``base_url`` ends before ``/SendRequest``."""

    base_url: str
    token: str = field(repr=False)
    query_id: str
    timeout_s: float = 30.0
    max_time_s: float = 600.0  # give up retrying after this long (IB: generation takes seconds to minutes)
    initial_wait_s: float = 2.0
    max_wait_s: float = 60.0
    attempts: list[str] = field(default_factory=list, compare=False, repr=False)  # codes seen (tests, status)

    def _get(self, step: str, url: str, query: str) -> bytes:
        params = urllib.parse.urlencode({"t": self.token, "q": query, "v": "3"})
        request = urllib.request.Request(f"{url}?{params}", headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise FlexWebError(step, None, f"HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retry(step, None, f"connection failed ({type(reason).__name__})") from None

    def _answer(self, step: str, data: bytes) -> ET.Element:
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            raise FlexWebError(step, None, "the answer is not XML") from None
        if root.tag == "FlexStatementResponse":
            status = (root.findtext("Status") or "").strip()
            code = (root.findtext("ErrorCode") or "").strip() or None
            if status != "Success":
                message = (root.findtext("ErrorMessage") or status or "failed").strip()
                self.attempts.append(code or status)
                if code in RETRY_CODES:
                    raise _Retry(step, code, message)
                raise FlexWebError(step, code, message)
        return root

    def _retrying(self, step: str, call: Callable[[], T]) -> Callable[[], T]:
        def note(details: Any) -> None:
            log.info("Flex Web Service %s: retry %s in %.1fs", step, details.get("tries"), details.get("wait", 0.0))

        wrapped = backoff.on_exception(
            backoff.expo,
            _Retry,
            max_time=self.max_time_s,
            factor=self.initial_wait_s,
            max_value=self.max_wait_s,
            jitter=None,
            logger=None,  # its default message would show the exception; ours names the step only
            on_backoff=note,
        )
        return wrapped(call)

    def fetch(self) -> bytes:
        """SendRequest, then GetStatement until the statement is ready; the statement's bytes."""
        base = self.base_url.rstrip("/")

        def send() -> tuple[str, str]:
            root = self._answer("SendRequest", self._get("SendRequest", f"{base}/SendRequest", self.query_id))
            code = (root.findtext("ReferenceCode") or "").strip()
            if root.tag != "FlexStatementResponse" or not code:
                raise FlexWebError("SendRequest", None, "no reference code in the answer")
            return code, (root.findtext("Url") or "").strip() or f"{base}/GetStatement"

        code, url = self._retrying("SendRequest", send)()

        def get() -> bytes:
            data = self._get("GetStatement", url, code)
            self._answer("GetStatement", data)
            return data

        return self._retrying("GetStatement", get)()
