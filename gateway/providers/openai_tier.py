"""The OpenAI tier: the paid backup, through the official SDK with its retries off."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import openai

from gateway.config import OpenAIConfig
from gateway.errors import TierMisconfigured, TierRejectedInput, TierUnavailable
from gateway.providers.base import HEADERS, Delta, StreamEvent, TierRequest, Usage
from gateway.security.pii import Redactor, Restorer, redact_messages

log = logging.getLogger("scout.openai")


def classify_openai_error(exc: Exception) -> Exception:
    """Map the SDK's exceptions to the tier errors the race acts on."""
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return TierMisconfigured(f"OpenAI refused the API key ({exc.status_code})")
    if isinstance(exc, openai.NotFoundError):
        return TierMisconfigured(f"OpenAI does not know the configured model ({exc.status_code})")
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return TierRejectedInput(f"OpenAI rejected the request ({exc.status_code})")
    if isinstance(exc, openai.APITimeoutError):
        return TierUnavailable("OpenAI timed out")
    if isinstance(exc, openai.APIConnectionError):
        return TierUnavailable("OpenAI unreachable")
    if isinstance(exc, openai.APIStatusError):
        return TierUnavailable(f"OpenAI answered {exc.status_code}")
    return TierUnavailable(f"OpenAI failed: {exc.__class__.__name__}")


class OpenAIProvider:
    tier = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        self.model = config.model
        # The gateway owns retries and deadlines: the SDK gets one attempt.
        self._client = openai.AsyncOpenAI(
            api_key=config.api_key.get() if config.api_key else "",
            base_url=config.base_url,
            max_retries=0,
            timeout=config.timeout_s,
        )

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        kwargs: dict[str, Any] = dict(request.params)
        if request.tools:
            kwargs["tools"] = request.tools
            if request.tool_choice is not None:
                kwargs["tool_choice"] = request.tool_choice
        # Personal data never leaves the building: typed placeholders go out, and the
        # values are put back into the answer where it quotes them.
        redactor = Redactor()
        messages = redact_messages(request.upstream_messages(), redactor)
        if redactor.values:
            log.info("event=pii_redacted count=%d kinds=%s", len(redactor.values),
                     ",".join(sorted({p[1:].split("_")[0] for p in redactor.values})))
        restorer = Restorer(redactor.values)
        try:
            stream = await self._client.chat.completions.create(  # type: ignore[call-overload]
                model=self.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **kwargs,
            )
        except openai.OpenAIError as exc:
            raise classify_openai_error(exc) from None
        try:
            yield HEADERS
            async for chunk in stream:
                model = chunk.model or self.model
                for choice in chunk.choices:
                    d = choice.delta
                    tool_calls = ([tc.model_dump(exclude_none=True) for tc in d.tool_calls]
                                  if d.tool_calls else None)
                    text = restorer.feed(d.content) if d.content else ""
                    if choice.finish_reason:
                        text += restorer.flush()
                    if text or tool_calls or choice.finish_reason:
                        yield Delta(text, model, tool_calls, choice.finish_reason)
                if chunk.usage is not None:
                    yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        except openai.OpenAIError as exc:
            raise classify_openai_error(exc) from None
        except Exception as exc:  # httpx read errors surface bare mid-stream
            raise TierUnavailable(f"OpenAI stream broke: {exc.__class__.__name__}") from None
        finally:
            await stream.close()  # closes the HTTP response even when cancelled early

    async def list_models(self) -> list[str]:
        page = await self._client.models.list()
        return [m.id for m in page.data]

    async def close(self) -> None:
        await self._client.close()
