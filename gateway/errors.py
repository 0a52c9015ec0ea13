"""The gateway's exception tree, split by what the caller does next.

    GatewayError
    ├── ConfigError            refuse to start; lists every problem at once
    ├── RequestRejected        answer the client with a 4xx naming the problem
    │   ├── PayloadTooLarge    413
    │   ├── ShuttingDown       503: draining, ask another gateway
    │   └── PrivacyViolation   a private intent was about to leave the building
    └── TierError              one tier could not answer: try the next one
        ├── TierUnavailable    refused, timed out, 5xx, dropped: transient
        │   ├── TierUnreachable  never connected: safe to try another target
        │   ├── TierOverloaded   529/503 overloaded: probes can't see it, so it is held out
        │   └── TierBusy         429: skipped until its Retry-After
        ├── TierMisconfigured  401/403, unknown model: red until fixed by a human
        │   └── TierOutOfCredit  429 insufficient_quota: probes can't see it
        ├── TierRejectedInput  the upstream refused this input (400/413/422)
        │   └── TierContentPolicy  its content policy did: the caller is told, as it was
        └── TierRefused        the gateway won't send it there (privacy): not a failure

HTTP and WebSocket handlers turn these into responses in one place
(`gateway.api.errors`).
"""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    """What kind of failure a tier's answer was, as health and the race act on it. A
    `StrEnum`: still its plain word in logs, traces and metrics."""

    UNAVAILABLE = "unavailable"        # refused, timed out, 5xx, dropped: transient
    OVERLOADED = "overloaded"          # says so (529): held out, probes can't see it
    BUSY = "busy"                      # rate-limited (429): skipped until Retry-After
    MISCONFIGURED = "misconfigured"    # a key or a model: red until a human fixes it
    NO_CREDIT = "no_credit"            # a paid backup out of credit: red for minutes
    REJECTED = "rejected"              # this input was refused (400/413/422)
    CONTENT_POLICY = "content_policy"  # refused under the upstream's content policy
    REFUSED = "refused"                # the gateway would not send it there: no failure
    STALLED = "stalled"                # missed a deadline (headers, first token, a gap)


_ERRNO_WORDS = {111: "connection refused", 113: "no route to host", 110: "timed out",
                101: "network unreachable", 104: "connection reset", 99: "address not available"}


def connect_failure(err: OSError, host: str | None = None, port: int | None = None) -> str:
    """A failed connection in words ("connection refused at 10.0.0.5:8000"), not Python's
    "Connect call failed ('10.0.0.5', 8000)"."""
    words = _ERRNO_WORDS.get(err.errno or -1) or (
        err.strerror if err.strerror and "Connect call" not in err.strerror
        else type(err).__name__)
    return f"{words} at {host}:{port}" if host else words


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration cannot run; `problems` lists every reason at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class RequestRejected(GatewayError):
    """The client sent something we will not serve; answered with a 4xx."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    @property
    def headers(self) -> dict[str, str]:
        """Response headers that belong with this refusal (Retry-After, ...)."""
        return {}


class PayloadTooLarge(RequestRejected):
    status = 413
    code = "payload_too_large"


class ShuttingDown(RequestRejected):
    """This process is draining (SIGTERM): new chats go to another gateway."""

    status = 503
    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("this gateway is shutting down; retry (another gateway will answer)")

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class PrivacyViolation(RequestRejected):
    status = 403
    code = "private_intent"


class TierError(GatewayError):
    """A tier failed to answer; the race hands over to the next tier."""

    kind: FailureKind = FailureKind.UNAVAILABLE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TierUnavailable(TierError):
    kind = FailureKind.UNAVAILABLE


class TierUnreachable(TierUnavailable):
    """The connection was never made: nothing was sent, so another target may be tried."""


class TierMalformed(TierUnavailable):
    """One event of a stream that isn't what the protocol says. Skipped and counted,
    unless the stream goes on sending them: then the stream is broken."""


class TierOverloaded(TierUnavailable):
    """The upstream says it is overloaded (Anthropic's 529). Its model list still answers,
    so a probe can't clear it: ejected for `health.eject_ttl_s`, then tried again."""

    kind = FailureKind.OVERLOADED


class TierBusy(TierUnavailable):
    """Rate-limited (429): skipped until Retry-After, then tried again."""

    kind = FailureKind.BUSY

    def __init__(self, reason: str, retry_after_s: float, told: bool = True) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s
        self.told = told   # the upstream said when (Retry-After), rather than a guess


class TierMisconfigured(TierError):
    kind = FailureKind.MISCONFIGURED


class TierOutOfCredit(TierMisconfigured):
    """A paid backup refused for money (429 insufficient_quota). Its model list still
    answers, so probes can't clear it: it stays red for minutes, not seconds."""

    kind = FailureKind.NO_CREDIT


class TierRejectedInput(TierError):
    kind = FailureKind.REJECTED


class TierContentPolicy(TierRejectedInput):
    """The upstream's content policy refused this input. The caller gets the upstream's
    own answer (`status`, `error`): asking another provider would route around a policy,
    and the upstream itself is well, so its health is untouched."""

    kind = FailureKind.CONTENT_POLICY

    def __init__(self, reason: str, status: int, error: dict[str, object]) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error


class TierRefused(TierError):
    """The gateway itself would not send this turn there (a private conversation to an
    off-site tier): not the tier's fault, so it never counts against its health."""

    kind = FailureKind.REFUSED
