"""Failover as a customer sees it: a resumed answer is whole and said once, over every API.

On-prem drops mid-answer; the OpenAI tier (a simulator) is asked to continue and answers as
real models do: it continues, it starts again word for word, or it answers anew in other
words. And streams that end oddly but completely (no [DONE], silence after the finish, one
malformed event) are answered by on-prem alone.
"""

from __future__ import annotations

import openai
import pytest

from gateway.app import create_app
from gateway.providers.base import RESUME_INSTRUCTION, RESUME_INSTRUCTION_ES
from tests.conftest import API_KEY, STAFF
from tests.integration.test_health import target, wait_for
from tests.integration.test_ladder import chat, done, text
from tests.ws_client import connect, until

ENGLISH = ("The 2022 Toyota Tacoma on our lot is priced at $31,500 and has 28,000 miles. It "
           "comes with a tow package, a backup camera and heated seats, and it has had one "
           "owner. Would you like to book a test drive this week?")
SPANISH = ("La Toyota Tacoma 2022 que tenemos cuesta 31.500 dólares y tiene 28.000 millas. "
           "Trae paquete de remolque, cámara de reversa y asientos con calefacción, y ha "
           "tenido un solo dueño. ¿Quiere agendar una prueba de manejo esta semana?")
REWORDED = ("Sure! That Toyota Tacoma from 2022 costs $31,500 with 28,000 miles on it. It has "
            "had a single owner and comes with heated seats, a backup camera and towing gear.")
ASK_EN = "Tell me about the Tacoma you have, is it any good for towing?"
ASK_ES = "Cuénteme de la Tacoma que tienen, ¿sirve para remolcar?"


def applied(events):
    """The answer as a client applying the protocol shows it: deltas appended, a restart's
    `replace` taking the place of what was shown."""
    shown = ""
    for name, e in events:
        if name == "delta":
            shown += e["text"]
        elif name == "switch" and "replace" in e:
            shown = e["replace"]
    return shown


def drop_then(onprem_sim, openai_sim, answer, style="", reworded="", after=6):
    onprem_sim.knobs.update({"answer": answer, "fault": "drop", "fault_after": after})
    openai_sim.knobs.update({"answer": answer, "resume_style": style or "marker",
                             "resume_text": reworded})


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("style", ["continue", "restart"])
async def test_a_resumed_answer_is_the_whole_answer_exactly_once(
        gw_client, settings, onprem_sim, openai_sim, style, language):
    answer, ask = (ENGLISH, ASK_EN) if language == "en" else (SPANISH, ASK_ES)
    drop_then(onprem_sim, openai_sim, answer, style)
    client = await gw_client(create_app(settings))
    events = await chat(client, ask)
    d = done(events)
    assert d["served_by"] == ["onprem", "openai"]
    assert text(events) == answer, "every word once, in order"
    assert not any(n == "switch" and e["kind"] == "restart" for n, e in events)
    sent = openai_sim.stats.last_messages
    assert sent[-2] == {"role": "assistant", "content": " ".join(answer.split(" ")[:6])}
    assert sent[-1]["content"] == (RESUME_INSTRUCTION if language == "en"
                                   else RESUME_INSTRUCTION_ES), "asked in the customer's language"


async def test_an_answer_anew_replaces_the_cut_one_on_scout_sse(gw_client, settings, onprem_sim,
                                                                openai_sim):
    drop_then(onprem_sim, openai_sim, ENGLISH, reworded=REWORDED)
    client = await gw_client(create_app(settings))
    events = await chat(client, ASK_EN)
    restart = [e for n, e in events if n == "switch" and e["kind"] == "restart"]
    assert len(restart) == 1 and restart[0]["replace"].startswith("Sure! That Toyota")
    assert applied(events) == REWORDED, "the new answer, not two answers glued together"
    assert done(events)["served_by"] == ["onprem", "openai"]
    metrics = await (await client.get("/metrics", headers=STAFF)).text()
    assert 'scout_restarts_total{tier="openai"} 1.0' in metrics


async def test_an_answer_anew_replaces_the_cut_one_on_the_websocket(gw_client, settings,
                                                                    onprem_sim, openai_sim):
    drop_then(onprem_sim, openai_sim, ENGLISH, reworded=REWORDED)
    client = await gw_client(create_app(settings))
    ws = await connect(client)
    await ws.send_json({"type": "chat", "id": "c1", "message": ASK_EN})
    events = await until(ws, "c1")
    assert applied([(e["type"], e) for e in events]) == REWORDED
    assert events[-1]["type"] == "done"
    await ws.close()


async def test_the_openai_api_never_glues_two_answers(gw_client, aiohttp_server, settings,
                                                      onprem_sim, openai_sim):
    drop_then(onprem_sim, openai_sim, ENGLISH, reworded=REWORDED)
    server = await aiohttp_server(create_app(settings))
    sdk = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(server.make_url("/v1")),
                             max_retries=0)
    # Not streamed: nothing was sent yet, so the new answer alone is the answer.
    whole = await sdk.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": ASK_EN}])
    assert whole.choices[0].message.content == REWORDED
    # Streamed: the cut answer's words are out and can't be taken back: a clear error.
    got = ""
    with pytest.raises(openai.APIError, match="answered anew"):
        stream = await sdk.chat.completions.create(
            model="scout", messages=[{"role": "user", "content": ASK_EN}], stream=True)
        async for chunk in stream:
            if chunk.choices:
                got += chunk.choices[0].delta.content or ""
    assert got == " ".join(ENGLISH.split(" ")[:6]), "only the cut answer, never glued"
    # A resume that continues is one whole answer on the streaming API too.
    openai_sim.knobs.update({"resume_text": "", "resume_style": "restart"})
    stream = await sdk.chat.completions.create(
        model="scout", messages=[{"role": "user", "content": ASK_EN}], stream=True)
    got = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert got == ENGLISH
    await sdk.close()


@pytest.mark.parametrize("fault", ["no_done", "finish_hang", "bad_chunk"])
async def test_a_complete_stream_is_answered_by_onprem_alone(gw_client, settings, onprem_sim,
                                                             openai_sim, fault):
    onprem_sim.knobs.update({"answer": ENGLISH, "fault": fault, "fault_after": 8})
    client = await gw_client(create_app(settings))
    events = await chat(client, ASK_EN)
    assert done(events)["served_by"] == ["onprem"]
    assert text(events) == ENGLISH
    assert openai_sim.stats.requests == 0, "nothing to resume: the answer was whole"
    metrics = await (await client.get("/metrics", headers=STAFF)).text()
    skipped = 'scout_malformed_events_total{tier="onprem"} 1.0' in metrics
    assert skipped == (fault == "bad_chunk"), "a skipped event is counted"
    await onprem_sim.set_fault("none")


async def test_a_stream_that_stays_malformed_is_broken_and_resumed(gw_client, settings,
                                                                   onprem_sim, openai_sim):
    onprem_sim.knobs.update({"answer": ENGLISH, "fault": "bad_chunk", "fault_after": 8,
                             "bad_chunks": 3})
    openai_sim.knobs.update({"answer": ENGLISH, "resume_style": "restart"})
    client = await gw_client(create_app(settings))
    events = await chat(client, ASK_EN)
    assert done(events)["served_by"] == ["onprem", "openai"]
    assert text(events) == ENGLISH, "the restart trimmed: every word once"
    switch = next(e for n, e in events if n == "switch")
    assert "3 malformed events in a row" in switch["reason"]


@pytest.mark.parametrize("fault", ["http_500", "drop"])
async def test_a_failure_before_the_first_token_is_tried_once_more_on_prem(
        gw_client, settings, onprem_sim, openai_sim, fault):
    """One 500, or a connection dropped before any text, then a healthy replica: the
    answer comes from on-prem (the only replica, once more), not from OpenAI."""
    onprem_sim.knobs.update({"answer": ENGLISH, "fault": fault, "fault_after": 0,
                             "fault_times": 1})
    client = await gw_client(create_app(settings))
    events = await chat(client, ASK_EN)
    assert done(events)["served_by"] == ["onprem"]
    assert text(events) == ENGLISH
    assert onprem_sim.stats.requests == 2 and openai_sim.stats.requests == 0


async def test_a_429_is_waited_out_when_its_retry_after_fits_the_deadline(
        gw_client, onprem_sim, openai_sim):
    from tests.conftest import make_settings
    roomy = make_settings([onprem_sim.url], f"{openai_sim.url}/v1",
                          deadlines={"headers_s": 3.0, "first_token_s": 3.0, "gap_s": 2.0})
    client = await gw_client(create_app(roomy))
    onprem_sim.knobs.update({"answer": ENGLISH, "fault": "http_429", "retry_after": "1",
                             "fault_times": 1})
    events = await chat(client, ASK_EN)
    assert done(events)["served_by"] == ["onprem"], "1 s fits a 3 s first-token deadline"
    assert onprem_sim.stats.requests == 2 and openai_sim.stats.requests == 0
    # A Retry-After longer than the deadline: OpenAI at once, no wait.
    onprem_sim.knobs.update({"fault": "http_429", "retry_after": "30", "fault_times": 1})
    events = await chat(client, ASK_EN + " (again)")
    assert done(events)["served_by"] == ["openai"]
    assert openai_sim.stats.requests == 1


async def test_a_content_policy_refusal_is_passed_on_not_routed_around(
        gw_client, settings, onprem_sim, openai_sim):
    """The upstream's content policy refuses the input: the caller hears that refusal, as
    the upstream gave it, on every API; no other provider is asked, and the replica that
    refused is still well (the next question is answered by it)."""
    onprem_sim.knobs.update({"answer": ENGLISH, "fault": "content_policy"})

    async def gateway():
        # Its first probes decide where the question goes: waited for, not raced (on a busy
        # box one round can time out, and a GPU box seen down is rightly skipped).
        c = await gw_client(create_app(settings))
        await wait_for(c, lambda h: all(target(h, t)["state"] == "up"
                                        for t in ("onprem.path", "onprem.r1")))
        return c

    client = await gateway()
    events = await chat(client, ASK_EN)
    assert done(events)["code"] == "content_policy_violation"
    assert "safety system" in done(events)["message"]
    other = await gateway()
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=str(other.server.make_url("/v1")),
                                 max_retries=0) as sdk:   # closed even when an assertion fails
        with pytest.raises(openai.BadRequestError) as exc:
            await sdk.chat.completions.create(
                model="scout", messages=[{"role": "user", "content": ASK_EN}])
        assert exc.value.status_code == 400 and exc.value.code == "content_policy_violation"
        with pytest.raises(openai.APIError, match="safety system"):
            stream = await sdk.chat.completions.create(
                model="scout", messages=[{"role": "user", "content": ASK_EN}], stream=True)
            async for _ in stream:
                pass
        with pytest.raises(openai.BadRequestError) as exc:
            await sdk.responses.create(model="scout", input=ASK_EN)
        assert exc.value.code == "content_policy_violation"
        assert openai_sim.stats.requests == 0, "never routed around to the other provider"
        onprem_sim.knobs.update({"fault": "none"})
        events = await chat(client, ASK_EN + " (again)")
        assert done(events)["served_by"] == ["onprem"], "a refusal is not a replica failure"
