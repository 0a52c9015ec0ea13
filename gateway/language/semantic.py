"""Private topics by meaning: the second pass after the keyword rules.

The rules catch the words staff listed ("loan", "APR", "credit score"); customers also
write "what would my note be", "3 grand down", "the bank turned me down". This model reads
each user turn as word embeddings and compares it with labelled examples, private and
not (gateway/data/privacy_examples.yaml, extended by `privacy.examples_file`).

Why wordllama: its PyPI wheel carries its weights (a 32k × 256 token-embedding table
distilled from Llama 2's, 16 MB) and its tokenizer, so nothing is downloaded at run time;
an embedding is a lookup and a mean, 0.1 ms on one core, with no torch. model2vec and
fastembed fetch their models from a hub at first use, which this gateway must never do.

How a turn is scored: the words of the turn and of each of its clauses are embedded
(digits and punctuation left out: numbers are the rules' part); a clause's score is the
mean cosine similarity of its `k` nearest private examples minus that of its `k` nearest
public ones. The turn's score is its highest clause's. A score at or above `threshold -
margin` is private: a doubtful turn counts as private (fails closed), and the margin is
the price of that in false positives (docs/privacy.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "privacy_examples.yaml"
# What the model reads of a clause: its words. Numbers are the rules' business (amounts,
# scores, terms), and digits and punctuation as tokens only add noise: "recommend a car
# 22" and "… for a family of five? (q4)" read as money with them.
_NOT_WORDS = re.compile(r"[^\w\s']|[\d_]")
# A clause: the text between sentence marks, or around a joining word.
_CLAUSES = re.compile(r"[.!?;\n]+|,\s+|\s+(?:but|and|also|tho|though|pero|y)\s+", re.I)


@cache
def embedder() -> Any:
    """wordllama's shipped 256-dimension model, read from the package's own files.

    `WordLlama.load()` looks for the tokenizer in a folder the wheel does not ship and then
    tries Hugging Face; the files are in the wheel, so they are opened directly."""
    import wordllama
    from safetensors import safe_open
    from wordllama import WordLlama
    from wordllama.inference import WordLlamaInference

    root = Path(wordllama.__file__).parent
    tokenizer = WordLlama.load_tokenizer(root / "tokenizers" / "l2_supercat_tokenizer_config.json")
    with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np") as f:
        table = f.get_tensor("embedding.weight")
    return WordLlamaInference(table, tokenizer)


def read_examples(path: Path) -> tuple[list[str], list[str]]:
    """The `private` and `public` lists of an examples file."""
    data = yaml.safe_load(path.read_text()) or {}
    return [str(s) for s in data.get("private", [])], [str(s) for s in data.get("public", [])]


def words(text: str) -> str:
    """What the model reads of a text: its words, without digits or punctuation."""
    return " ".join(_NOT_WORDS.sub(" ", text).split())


def clauses(text: str) -> list[str]:
    """The words of the text itself and of each of its clauses of two words or more."""
    whole = words(text) or text
    parts = [w for p in _CLAUSES.split(text) if p and len((w := words(p)).split()) >= 2]
    return [whole, *[p for p in parts if p != whole]][:12]


class PrivacyModel:
    """Nearest labelled examples by meaning: is a turn about the customer's own money,
    credit or identity?"""

    def __init__(self, private: Iterable[str], public: Iterable[str], *,
                 threshold: float = 0.0, margin: float = 0.0, k: int = 3) -> None:
        self.private_examples, self.public_examples = list(private), list(public)
        if not self.private_examples or not self.public_examples:
            raise ValueError("the privacy model needs private and public examples")
        self.threshold, self.margin, self.k = threshold, margin, k
        model = embedder()
        self._model = model
        self._private = self._embed(self.private_examples)
        self._public = self._embed(self.public_examples)

    @classmethod
    def shipped(cls, extra: Path | None = None, **knobs: Any) -> PrivacyModel:
        """The shipped examples, plus those of `extra` (staff's own file)."""
        private, public = read_examples(EXAMPLES)
        if extra is not None:
            more_private, more_public = read_examples(extra)
            private, public = private + more_private, public + more_public
        return cls(private, public, **knobs)

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors: np.ndarray = self._model.embed(texts, norm=True).astype(np.float32)
        return vectors

    def score(self, text: str) -> float:
        """Above 0: reads more like the private examples than the public ones."""
        vectors = self._embed(clauses(text))
        k = self.k
        near_private = np.sort(vectors @ self._private.T, axis=1)[:, -k:].mean(axis=1)
        near_public = np.sort(vectors @ self._public.T, axis=1)[:, -k:].mean(axis=1)
        return float((near_private - near_public).max())

    def is_private(self, text: str) -> bool:
        """Private when the score reaches the threshold less the fail-closed margin."""
        return self.score(text) >= self.threshold - self.margin


@cache
def shipped_model(examples_file: str = "", threshold: float = 0.0,
                  margin: float = 0.0) -> PrivacyModel:
    """One model per configuration in a process: every classifier built from the same
    settings shares its embedded examples."""
    extra = Path(examples_file) if examples_file else None
    return PrivacyModel.shipped(extra, threshold=threshold, margin=margin)
