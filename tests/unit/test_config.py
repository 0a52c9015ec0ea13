"""Configuration validation: every problem listed at once, secrets never printed."""

from __future__ import annotations

import pytest

from gateway.config import load_settings, settings_from_dict
from gateway.errors import ConfigError
from tests.conftest import ROOT, example_config

ENV = {"ONPREM_API_KEY": "k1-secret-value", "OPENAI_API_KEY": "k2-secret-value",
       "SCOUT_API_KEYS": "web:k3-secret-value-long"}


def test_the_shipped_example_is_valid_and_complete():
    s = load_settings(ROOT / "config" / "scout.yaml", ENV)
    assert set(s.intents) == {"vehicle.recommendation", "inventory.search", "scheduling",
                              "financing", "general.greeting", "default"}
    assert s.intents["financing"].private and "openai" not in s.intents["financing"].ladder
    assert all(i.static_reply for i in s.intents.values())


def test_secrets_never_print():
    s = load_settings(ROOT / "config" / "scout.yaml", ENV)
    for text in (repr(s), str(s.onprem), str(s.openai.api_key), str(s.auth)):
        assert "k1-secret-value" not in text and "k2-secret-value" not in text
        assert "k3-secret-value" not in text
    assert s.onprem.api_key is not None and s.onprem.api_key.get() == "k1-secret-value"


def test_api_key_from_a_file(tmp_path):
    key = tmp_path / "onprem.key"
    key.write_text("from-file\n")
    data = example_config()
    del data["onprem"]["api_key_env"]
    data["onprem"]["api_key_file"] = str(key)
    s = settings_from_dict(data, {**ENV, "ONPREM_API_KEY": ""})
    assert s.onprem.api_key.get() == "from-file"


def test_every_problem_is_listed_at_once():
    data = example_config()
    data["intents"]["vehicle.recommendation"]["ladder"] = ["onprem", "gpt-fallback", "static"]
    data["intents"]["financing"]["ladder"] = ["onprem", "openai", "static"]
    data["intents"]["scheduling"]["static_reply"] = ""
    data["intents"]["inventory.search"]["deadlines"] = {"headers_s": 9, "first_token_s": 2,
                                                        "gap_s": 0}
    data["openai"]["model"] = "gpt-unpriced"
    data["onprem"]["api_key"] = "inline-secret"
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data, {})
    problems = "\n".join(exc.value.problems)
    expected = [
        "unknown tier 'gpt-fallback'",
        "intents.financing: is private, so its ladder must not contain openai",
        "intents.scheduling.static_reply",
        "headers_s (9) cannot be longer than first_token_s (2)",
        "inventory.search.deadlines.gap_s: must be greater than 0",
        "'gpt-unpriced' has no entry under prices",
        "secrets never go in the file",
        "set environment variable ONPREM_API_KEY",
        "set environment variable OPENAI_API_KEY",
        "auth: no API keys",
    ]
    for words in expected:
        assert words in problems, f"missing: {words}\n{problems}"
    assert len(exc.value.problems) >= len(expected)
    assert "inline-secret" not in str(exc.value)


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda d: d.update(default_intent="nope"), "default_intent: 'nope'"),
    (lambda d: d["intents"]["default"].update(ladder=[]), "must be a non-empty list"),
    (lambda d: d["intents"]["default"].update(match={"patterns": ["(unclosed"]}), "valid regex"),
    (lambda d: d["onprem"].update(url="gpu-box:8000"), "is not an http(s) URL"),
    (lambda d: d["intents"]["financing"].update(cacheable=True), "cannot be cacheable"),
    (lambda d: d["deadlines"].update(first_token_s=1000), "longer than any client waits"),
    (lambda d: d["server"].update(max_body_bytes="big"), "must be a number"),
])
def test_each_rule(mutate, words):
    data = example_config()
    mutate(data)
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data, ENV)
    assert any(words in p for p in exc.value.problems), exc.value.problems


def test_a_disabled_provider_needs_no_key_and_is_skipped_with_a_warning():
    data = example_config()
    data["openai"]["enabled"] = False
    s = settings_from_dict(data, {**ENV, "OPENAI_API_KEY": ""})
    assert "openai" not in s.enabled_tiers()
    assert any("openai is disabled" in w for w in s.warnings)


def test_cli_serve_exits_non_zero_listing_problems(tmp_path, capsys):
    from gateway.cli import main
    bad = tmp_path / "bad.yaml"
    bad.write_text("intents: {}\nprices: {}\n")
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--config", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "default_intent" in err and "has no entry under prices" in err


def test_secrets_come_from_the_environment_or_from_the_file_NAME_FILE_names(tmp_path):
    """Compose `secrets:` mount files; the container's environment holds only their paths."""
    for name, value in (("onprem", "onprem-key-from-a-file"), ("openai", "sk-from-a-file"),
                        ("redis", "redis://:pw-from-a-file@redis:6379/0"),
                        ("keys", "vercel:frontend-key-from-a-file"),
                        ("signing", "signing-secret-from-a-file-0123456789")):
        (tmp_path / name).write_text(value + "\n")
    env = {"ONPREM_API_KEY_FILE": str(tmp_path / "onprem"),
           "OPENAI_API_KEY_FILE": str(tmp_path / "openai"),
           "REDIS_URL_FILE": str(tmp_path / "redis"),
           "SCOUT_API_KEYS_FILE": str(tmp_path / "keys"),
           "SCOUT_SIGNING_SECRET_FILE": str(tmp_path / "signing")}
    s = settings_from_dict(example_config(), env)
    assert s.onprem.api_key is not None and s.onprem.api_key.get() == "onprem-key-from-a-file"
    assert s.openai.api_key is not None and s.openai.api_key.get() == "sk-from-a-file"
    assert s.redis.url is not None and s.redis.url.get().startswith("redis://:pw-from-a-file@")
    assert s.auth.api_keys is not None and s.auth.signing_secret is not None
    with pytest.raises(ConfigError) as err:
        settings_from_dict(example_config(), {**env, "OPENAI_API_KEY_FILE": "/nonexistent/k"})
    assert "OPENAI_API_KEY_FILE: cannot read /nonexistent/k" in str(err.value)


def test_trusted_proxies_and_end_user_keys_are_checked():
    data = example_config()
    data["server"]["trusted_proxies"] = ["10.0.0.0/8", "not-an-address"]
    data["auth"]["end_user_keys"] = "vercel"
    data["rate_limits"]["per_user"] = "lots"
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data, ENV)
    text = str(err.value)
    assert "server.trusted_proxies: 'not-an-address' is not an IP address or CIDR" in text
    assert "auth.end_user_keys: must be a list of API key labels" in text
    assert "rate_limits.per_user: 'lots' is not a limit like '60/minute'" in text


def test_offsite_policies_and_redaction_switches_are_checked():
    data = example_config()
    data["intents"]["financing"]["offsite"] = "redacted"           # private, yet off-site
    data["intents"]["scheduling"]["offsite"] = "sometimes"
    data["intents"]["default"]["ladder"] = ["onprem", "openai", "static"]  # never, with openai
    data["privacy"]["redact"]["phones"] = True
    data["privacy"]["redact"]["email"] = "no"
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data, ENV)
    text = str(err.value)
    assert "intents.financing: is private, so offsite must be never (got redacted)" in text
    assert "intents.scheduling.offsite: must be one of allowed, redacted, never, got " \
        "'sometimes'" in text
    assert "intents.default: has offsite: never, so its ladder must not contain openai" in text
    assert "privacy.redact.phones: unknown kind" in text
    assert "privacy.redact.email: must be true or false, got 'no'" in text


def test_a_redaction_kind_can_be_switched_off():
    data = example_config()
    data["privacy"]["redact"]["name"] = False
    s = settings_from_dict(data, ENV)
    assert "name" not in s.privacy.redact and "phone" in s.privacy.redact


def at(data, dotted):
    """The mapping at `intents.default.match`, created if the example leaves it out."""
    for part in dotted.split("."):
        data = data.setdefault(part, {})
    return data


# A typo in any section, as an operator makes them: refused, with the key that was meant.
@pytest.mark.parametrize(("section", "typo", "meant"), [
    ("server", "max_body_byte", "max_body_bytes"),
    ("onprem", "modle", "model"),
    ("openai", "timout_s", "timeout_s"),
    ("cache", "max_entires", "max_entries"),
    ("redis", "timout_ms", "timeout_ms"),
    ("sessions", "max_turn", "max_turns"),
    ("auth", "allowed_origin", "allowed_origins"),
    ("health", "intervall_s", "interval_s"),
    ("rate_limits", "per_usr", "per_user"),
    ("websocket", "heartbeat", "heartbeat_s"),
    ("inventory", "max_result", "max_results"),
    ("hedging", "flor_s", "floor_s"),
    ("privacy", "redacts", "redact"),
    ("deadlines", "gap", "gap_s"),
    ("intents.default", "cachable", "cacheable"),
    ("intents.default.match", "keyword", "keywords"),
    ("prices.gpt-4o-mini", "inptu", "input"),
])
def test_a_typo_in_any_section_is_refused_with_what_was_meant(section, typo, meant):
    data = example_config()
    at(data, section)[typo] = 5
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data, ENV)
    assert f"{section}.{typo}: unknown setting (did you mean '{meant}'?)" in exc.value.problems


def test_a_misspelt_section_is_refused_and_every_problem_still_listed():
    data = example_config()
    data["ratelimits"] = data.pop("rate_limits")
    data["health"]["zzz"] = 1
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data, ENV)
    assert "ratelimits: unknown section (did you mean 'rate_limits'?)" in exc.value.problems
    zzz = next(p for p in exc.value.problems if p.startswith("health.zzz"))
    assert "known: " in zzz and "interval_s" in zzz   # nothing close: the choices instead


@pytest.mark.parametrize(("section", "key"), [
    ("openai", "enabled"), ("onprem", "enabled"), ("openai", "supports_tools"),
    ("auth", "allow_anonymous"), ("inventory", "enabled"), ("intents.default", "cacheable"),
])
def test_a_quoted_false_is_refused_not_read_as_true(section, key):
    data = example_config()
    at(data, section)[key] = "false"
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data, ENV)
    assert f"{section}.{key}: must be true or false (unquoted), got 'false'" in \
        exc.value.problems


@pytest.mark.parametrize(("old", "new"), [
    ("server.passive_health_ttl_s", "health.eject_ttl_s"),
    ("websocket.max_buffered_bytes", "server.max_buffered_bytes"),
])
def test_a_moved_setting_is_still_read_under_its_old_name_with_a_warning(old, new):
    (old_sec, old_key), (new_sec, new_key) = old.split("."), new.split(".")
    data = example_config()
    del data[new_sec][new_key]
    data[old_sec][old_key] = 7
    s = settings_from_dict(data, ENV)
    assert getattr({"health": s.health, "server": s.server}[new_sec], new_key) == 7
    assert f"{old} is now {new}; the old name is read until the next release" in s.warnings
    data[new_sec][new_key] = 9   # both: ambiguous, so refused
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data, ENV)
    assert f"{old}: moved to {new}, which is also set; keep only that" in exc.value.problems


def _sections() -> list[tuple[str, str]]:
    """(section, one of its settings) for every section the file may hold, as the models
    declare them: a section added later (a new tier's) is covered without editing here."""
    from pydantic import BaseModel

    from gateway.config import settings_model
    out = []
    for name, f in settings_model().model_fields.items():
        model = f.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            keys = [g.alias or n for n, g in model.model_fields.items()
                    if len(g.alias or n) > 5]
            out.append((f.alias or name, keys[0]))
    return out


@pytest.mark.parametrize(("section", "key"), _sections())
def test_a_typo_in_every_declared_section_is_refused_with_its_suggestion(section, key):
    data = example_config()
    typo = key[:-2] + key[-1] + key[-2]   # the last two letters swapped: "interval_s" → "intervals_"
    at(data, section)[typo] = 1
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data, ENV)
    assert f"{section}.{typo}: unknown setting (did you mean '{key}'?)" in exc.value.problems


def test_every_section_is_checked_for_typos():
    sections = {s for s, _ in _sections()}
    assert {"server", "onprem", "openai", "cache", "redis", "sessions", "auth", "websocket",
            "health", "rate_limits", "deadlines", "privacy", "hedging", "inventory"} <= sections


def _schema_validator():
    import jsonschema

    from gateway.config import json_schema
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_json_schema_accepts_the_shipped_config_and_flags_a_typo_for_editors():
    validator = _schema_validator()
    data = example_config()
    assert list(validator.iter_errors(data)) == []
    data["health"]["intervall_s"] = 5
    data["openai"]["enabled"] = "false"
    errors = {(tuple(e.absolute_path), e.validator) for e in validator.iter_errors(data)}
    assert (("health",), "additionalProperties") in errors
    assert (("openai", "enabled"), "type") in errors


def test_config_schema_and_config_check_on_the_command_line(tmp_path, capsys, monkeypatch):
    import json

    from gateway.cli import main
    main(["config", "schema"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["additionalProperties"] is False and "onprem" in printed["properties"]
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    main(["config", "check", str(ROOT / "config" / "scout.yaml")])   # returns: exit 0
    assert "valid (6 intents" in capsys.readouterr().out
    bad = tmp_path / "scout.yaml"
    data = example_config()
    data["helth"] = data.pop("health")
    data["openai"]["enabled"] = "false"
    import yaml
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as err:
        main(["config", "check", str(bad)])
    assert err.value.code == 2
    out = capsys.readouterr().err
    assert "helth: unknown section (did you mean 'health'?)" in out
    assert "openai.enabled: must be true or false (unquoted), got 'false'" in out


def test_redis_sentinels_are_read_and_checked():
    s = settings_from_dict(example_config(), {
        **ENV, "REDIS_SENTINELS": "10.0.1.5:26379, 10.0.2.5:26379,[::1]:26380",
        "REDIS_PASSWORD": "node-pass-123"})
    assert s.redis.sentinels == (("10.0.1.5", 26379), ("10.0.2.5", 26379), ("::1", 26380))
    assert s.redis.url is None and s.redis.configured and s.redis.sentinel_master == "scout"
    assert s.redis.password.get() == "node-pass-123"
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(example_config(), {**ENV, "REDIS_SENTINELS": "10.0.1.5",
                                              "REDIS_URL": "redis://r:6379/0"})
    text = "\n".join(exc.value.problems)
    assert "REDIS_SENTINELS must list sentinels as host:port,host:port; got '10.0.1.5'" in text
    assert "node-pass-123" not in text
    with pytest.raises(ConfigError) as both:
        settings_from_dict(example_config(), {**ENV, "REDIS_SENTINELS": "10.0.1.5:26379",
                                              "REDIS_URL": "redis://r:6379/0"})
    assert "redis: set REDIS_URL or REDIS_SENTINELS, not both" in both.value.problems
