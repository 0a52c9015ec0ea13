"""Build tests/data/pii_messages.jsonl: realistic dealership messages, labelled by construction.

    python tests/data/make_pii_set.py

Deterministic (fixed seed). Each line: {"text": ..., "entities": [{"kind", "value"}]}.
Values are synthetic (test card numbers, 555 phone numbers, example.com addresses,
invalid-range-free SSNs made up here); about a third of the messages hold no personal
data but look like they might (prices, stock numbers, years, mileage, lot VINs, order
numbers), so precision is measured, not just recall.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

rng = random.Random(20261122)
FIRST = ["Maria", "James", "Aisha", "Wei", "Carlos", "Priya", "Tom", "Grace", "Omar", "Lena"]
LAST = ["Garcia", "Smith", "Khan", "Chen", "Lopez", "Patel", "Brown", "Kim", "Haddad", "Novak"]
DOMAINS = ["example.com", "mail.example.org", "example.net"]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009", "6011000000000004",
         "4012888888881881", "5105 1051 0510 5100"]
# Real check digits (position 9): an invalid VIN is not a VIN, so it is not a label.
VALID_VINS = ["1HGCM82633A004352", "1M8GDM9AXKP042788", "5YJ3E1EA2KF317000", "WBA3A5C57CF256651",
              "JH4KA7561PC008269", "1FTFW1ET9DFC10312"]


def phone() -> str:
    a, b = rng.randint(200, 989), rng.randint(0, 9999)
    return rng.choice([f"(555) {a:03d}-{b:04d}", f"555-{a:03d}-{b:04d}", f"555.{a:03d}.{b:04d}",
                       f"+1 555 {a:03d} {b:04d}", f"555{a:03d}{b:04d}"])


def email() -> str:
    return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{rng.randint(1, 99)}@" \
           f"{rng.choice(DOMAINS)}"


def ssn() -> str:
    area = rng.choice([x for x in range(1, 900) if x != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def dl() -> str:
    return rng.choice([f"D{rng.randint(1000000, 9999999)}", f"S{rng.randint(100, 999)}-"
                       f"{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
                       f"{rng.randint(10000000, 99999999)}"])


POSITIVE = [
    ("Hi, can someone call me back at {PHONE} about the RAV4?", ["PHONE"]),
    ("My email is {EMAIL}, please send the brochure for the Telluride.", ["EMAIL"]),
    ("Reach me at {EMAIL} or {PHONE} after 5pm.", ["EMAIL", "PHONE"]),
    ("I'd like to put a deposit down, card number {CARD}.", ["CARD"]),
    ("For the credit application my SSN is {SSN}.", ["SSN"]),
    ("My social security number is {SSN_RAW} if you need it for financing.", ["SSN"]),
    ("My driver's license number is {DL}, I want to book a test drive Saturday.", ["DL"]),
    ("DL: {DL} — can I test drive the Civic tomorrow?", ["DL"]),
    ("I'm trading in my Accord, the VIN is {VIN}. What's it worth?", ["VIN"]),
    ("Our minivan (VIN {VIN}) needs a recall check.", ["VIN"]),
    ("Text me at {PHONE} when the Model Y is in, thanks!", ["PHONE"]),
    ("Please update my contact to {EMAIL} and my cell to {PHONE}.", ["EMAIL", "PHONE"]),
    ("Use card {CARD} for the $500 hold, my number is {PHONE}.", ["CARD", "PHONE"]),
    ("Pre-approval: SSN {SSN}, email {EMAIL}.", ["SSN", "EMAIL"]),
    ("My wife's car VIN {VIN} is due for service, call {PHONE}.", ["VIN", "PHONE"]),
    ("I have a 2019 Tacoma to trade in, VIN {VIN}, license {DL_WORDS}.", ["VIN", "DL"]),
]
NEGATIVE = [
    "Is the 2024 RAV4 Hybrid XLE still $32,999 or is there a discount?",
    "Do you have stock number STK-48213 on the lot?",
    "Is VIN {VIN} still available? I saw it on your website.",
    "How much is the 2021 F-150 with 41,250 miles?",
    "What time are you open on Sunday? I can come at 10:30.",
    "My order number is 1234567890123456, when will the car arrive?",
    "Can I see the 2023 Camry, listing #4432198?",
    "What's the APR on a 60 month loan for $28,500?",
    "Your dealership is at 1200 Lakeside Blvd, zip 55401, right?",
    "Do you have VIN {VIN} in red? It was listed yesterday.",
    "Is the 2.5L engine better than the 3.5L V6 for towing 5,000 lbs?",
    "I want to schedule a test drive for 3 people on 11/28 at 2pm.",
    "Compare the 2022 Civic Si and the 2022 GTI please.",
    "The quote said 899 per month for 36 months, can you beat it?",
    "Is part number 90915-YZZD1 in stock for my Corolla?",
]


def fill(template: str) -> tuple[str, list[dict[str, str]]]:
    entities = []
    values = {"PHONE": phone, "EMAIL": email, "CARD": lambda: rng.choice(CARDS), "SSN": ssn,
              "SSN_RAW": lambda: ssn().replace("-", ""), "DL": dl,
              "DL_WORDS": lambda: f"number {dl()}", "VIN": lambda: rng.choice(VALID_VINS)}
    kinds = {"SSN_RAW": "SSN", "DL_WORDS": "DL"}
    text = template
    while "{" in text:
        start = text.index("{")
        name = text[start + 1:text.index("}", start)]
        value = values[name]()
        text = text[:start] + value + text[text.index("}", start) + 1:]
        entity_value = value.removeprefix("number ") if name == "DL_WORDS" else value
        entities.append({"kind": kinds.get(name, name), "value": entity_value})
    return text, entities


def main() -> None:
    rows = []
    for i in range(150):
        text, ents = fill(POSITIVE[i % len(POSITIVE)][0])
        rows.append({"text": text, "entities": ents})
    for i in range(75):
        text, _ = fill(NEGATIVE[i % len(NEGATIVE)])
        rows.append({"text": text, "entities": []})  # a lot VIN is not personal data
    rng.shuffle(rows)
    out = Path(__file__).with_name("pii_messages.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} messages → {out}")


if __name__ == "__main__":
    main()
