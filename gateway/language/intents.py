"""Intent classification: pure rules over the customer's messages."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.config import IntentConfig, Settings
from gateway.cost import prompt_text
from gateway.language.literals import Prechecked

if TYPE_CHECKING:
    from gateway.language.semantic import PrivacyModel

T = TypeVar("T")
KEEP_CHARS = 2048   # texts longer than this are read each time they come


def remembered(read: Callable[[str], T], maxsize: int = 4096) -> Callable[[str], T]:
    """`read`, a pure function of a text, keeping its result for the last `maxsize` texts
    it was asked about. Only texts up to KEEP_CHARS are kept, so a caller sending long
    unique messages makes it hold 8 M characters at most, not maxsize × the body cap."""
    kept = functools.lru_cache(maxsize=maxsize)(read)

    def lookup(text: str) -> T:
        return kept(text) if len(text) <= KEEP_CHARS else read(text)
    return lookup


@dataclass(frozen=True, slots=True)
class _Rule:
    intent: IntentConfig
    # The keywords as one regex, and each pattern, behind its pre-check for ASCII text
    # (language.literals): most intents' rules skip their regexes for most questions.
    keywords: Prechecked | None
    checks: tuple[Prechecked, ...]
    ignore: re.Pattern[str] | None   # look-alikes, blanked before the others read


class IntentClassifier:
    """Scores each intent by keyword and pattern hits.

    A private intent that matches at all wins, so a message that mentions both a
    car and a loan is handled as financing and never leaves the building. Ties
    go to the intent listed first; no hit at all goes to the default intent.

    When no private intent's rules match, `model` (the privacy similarity model, if
    given) reads the text too: a text it takes as private goes to the first private
    intent, so paraphrases the keywords miss stay on-site as well.
    """

    def __init__(self, intents: Iterable[IntentConfig], default: str,
                 model: PrivacyModel | None = None) -> None:
        self.model = model
        # A turn is classified several times (its intent, each later turn's privacy check,
        # the off-site guard): the rules are pure, so a text's verdict is kept.
        self.classify = remembered(self._classify)  # type: ignore[method-assign,assignment]
        self._rules: list[_Rule] = []
        self._by_name: dict[str, IntentConfig] = {}
        for intent in intents:
            self._by_name[intent.name] = intent
            kw = None
            if intent.keywords:
                alts = "|".join(re.escape(k) for k in sorted(intent.keywords, key=len, reverse=True))
                kw = Prechecked(re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE))
            ignore = re.compile("|".join(f"(?:{p})" for p in intent.match.ignore), re.I) \
                if intent.match.ignore else None
            self._rules.append(_Rule(intent, kw, tuple(map(Prechecked, intent.patterns)), ignore))
        self.default = self._by_name[default]
        self._private = next((r.intent for r in self._rules if r.intent.private), None)

    @classmethod
    def for_settings(cls, settings: Settings) -> IntentClassifier:
        """The configured intents, with the privacy model when `privacy.model` enables it."""
        cfg = settings.privacy.model
        model = None
        if cfg.enabled and any(i.private for i in settings.intents.values()):
            from gateway.language.semantic import shipped_model
            model = shipped_model(cfg.examples_file, cfg.threshold, cfg.margin)
        return cls(settings.intents.values(), settings.default_intent, model)

    def get(self, name: str) -> IntentConfig:
        return self._by_name[name]

    def private_turn(self, messages: Iterable[dict[str, Any]],
                     ours: frozenset[str] = frozenset()) -> IntentConfig | None:
        """The private intent that any user turn of the conversation matches, or None.

        A conversation is private if any turn in it is: "which trims come in blue?" after
        "my credit score is 640, can I finance the Tacoma?" carries the financing turn in
        its history, so it must not leave the building either."""
        for m in messages:
            # `ours`: user-role texts the gateway wrote itself (the resume instruction).
            if m.get("role") == "user" and (text := prompt_text([m])) not in ours:
                intent = self.classify(text)
                if intent.private:
                    return intent
        return None

    def classify(self, text: str) -> IntentConfig:
        """The intent `text` matches (cached per text; see __init__)."""
        return self._classify(text)

    def _classify(self, text: str) -> IntentConfig:
        best: IntentConfig | None = None
        best_score = 0
        low = text.lower() if text.isascii() else None
        for rule in self._rules:
            read, read_low = text, low
            if rule.ignore is not None and rule.ignore.search(text):
                read = rule.ignore.sub(lambda m: " " * len(m.group()), text)
                read_low = read.lower() if read.isascii() else None
            kw = rule.keywords
            score = len(kw.pattern.findall(read)) if kw is not None and kw.may_match(read_low) \
                else 0
            for check in rule.checks:   # a loop, not sum() over a generator: every turn
                if check.search(read, read_low):
                    score += 1
            if score and rule.intent.private:
                return rule.intent
            if score > best_score:
                best, best_score = rule.intent, score
        if self.model is not None and self._private is not None and self.model.is_private(text):
            return self._private
        return best or self.default
