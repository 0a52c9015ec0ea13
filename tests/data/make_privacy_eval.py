"""Writes tests/data/privacy_eval.jsonl: the labelled conversations the privacy rules and the
PII redactor are measured on.

Why a script: each conversation below was written by hand as a skeleton, and the values
that fill its slots come from hand-written pools in the many shapes customers really type
(phones with dots, spaces, +52, read out in words; lowercase or accented names; typos;
Spanish-English mixes). Filling every skeleton with several values gives the set variety
a single hand could not type, while every sentence is still one a person wrote. The pools
hold names that are *not* in the redactor's name list, and the skeletons hold hard
negatives (prices, stock numbers, the lot's VINs, model years, "call me after 5").

Labels: `entities` are (kind, value) pairs, where value is the exact text that must not
leave the building; `private` marks conversations with a money, credit or identity turn.

    python tests/data/make_privacy_eval.py   # rewrites the .jsonl (seeded: the same file)
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).with_name("privacy_eval.jsonl")

NAMES = ["Maria Gonzalez", "Jose Luis Hernandez", "maria gonzalez", "Dwayne Pritchett",
         "Keisha Washington", "Nguyen Van Thanh", "Siobhan O'Neill", "Ana Lucía Ramírez",
         "tomás ortega", "Priya Raghunathan", "Bartholomew Finch", "Chidi Okonkwo",
         "Yesenia Treviño", "Mike", "jessica", "Guadalupe Castillo", "Rashida Jones-Miller",
         "DeShawn Carter", "Marisol", "Ewa Kowalczyk", "Hiroshi Tanaka", "Fatima Al-Sayed",
         "Beto Salinas", "Carmen", "Luz Elena Vargas", "Kenny Boudreaux", "Xochitl Morales"]
FIRST_ONLY = ["Maria", "Jose", "Keisha", "Tomas", "Priya", "Chidi", "Yesenia", "Beto", "Luz",
              "Dwayne", "Marisol", "Kenny", "Ana", "Rashida"]
PHONES = ["(512) 555-0143", "512-555-0187", "512.555.0122", "512 555 0199", "5125550176",
          "+1 512 555 0134", "+52 55 1234 5678", "+44 20 7946 0958", "+52 1 81 8765 4321",
          "(210) 555-0111", "737-555-0162", "+1 (830) 555-0190",
          "five one two five five five zero one four three",
          "cinco uno dos cinco cinco cinco cero uno dos dos"]
EMAILS = ["maria.gonzalez@gmail.com", "jlhernandez82@yahoo.com", "keisha_w@outlook.com",
          "tomas.ortega+cars@icloud.com", "priya.r@protonmail.com", "dwayne@pritchettplumbing.biz",
          "ana.ramirez@hotmail.es", "chidi.okonkwo@utexas.edu",
          "maria dot g at gmail dot com", "beto salinas at yahoo dot com"]
CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009", "6011000990139424",
         "4012 8888 8888 1881"]
SSNS = ["123-45-6789", "078 05 1120", "219-09-9999", "401-33-7788"]
SSN_BARE = ["123456789", "401337788"]
DOBS = ["03/14/1988", "3-14-88", "1990-07-02", "July 2, 1990", "March 14th, 1988",
        "14 de marzo de 1988", "12/1/1975", "Nov 30, 2001"]
ADDRESSES = ["1234 Oak Ridge Dr, Austin, TX 78701", "88 Elm St Apt 4B", "4501 N Lamar Blvd",
             "702 West Avenue, San Marcos, TX 78666", "16 Quail Hollow Ln",
             "3300 S Congress Ave Suite 210", "915 E Cesar Chavez St", "27 Magnolia Ct",
             "12008 Ranch Road 620", "401 Pecan Trail, Round Rock, TX 78664"]
PLATES = ["LKP-4821", "7ABC123", "HXT 9920", "JFK 1234", "4GTR88"]
ACCOUNTS = ["000123456789", "4455667788", "1029384756", "98765432100"]
ROUTINGS = ["111000025", "021000021", "114900685", "121000358"]
INCOMES = ["$85,000", "85k", "$62,500", "4200", "$3,800", "72 grand", "$95,000"]
SCORES = ["640", "580", "712", "695", "755", "610"]
DLS = ["D1234567", "S123-4567-8901", "47281930", "TX09876543"]
CUSTOMER_VINS = ["1HGCM82633A004352", "1M8GDM9AXKP042788"]
LOT_VINS = ["2T3P1RFV8MC123456", "1HGCM82633A004352"]   # quoted from the lot: not personal
STOCK = ["STK-48213", "A10445", "P2291", "#4432198", "T-8812"]
PRICES = ["$32,999", "$27,450", "$41k", "35000", "$18,995"]
YEARS = ["2019", "2021", "2023", "2024", "2018"]
MODELS = ["RAV4 hybrid", "Camry SE", "Tacoma TRD", "Highlander", "F-150", "CR-V", "Civic",
          "Corolla Cross", "Sienna", "Model Y", "Tundra", "Accord"]
COLORS = ["blue", "red", "white", "midnight black", "gris", "azul", "silver"]

Slot = tuple[str, str]   # (kind or "", value)


def pick(rng: random.Random, pool: list[str]) -> str:
    return rng.choice(pool)


# Each skeleton: (private, [turns]); a turn is a string with {slots}. A slot's kind decides
# the label: {NAME}, {PHONE}, ... are personal; {MODEL}, {PRICE}, {STOCK}, {LOTVIN},
# {YEAR}, {COLOR} are the hard negatives (never labelled).
SKELETONS: list[tuple[bool, list[str]]] = [
    # --- financing and credit: private conversations, often only in one turn ------------
    (True, ["My credit score is {SCORE} and I make {INCOME} a year, can I finance the {MODEL}?",
            "Which trims come in {COLOR}?"]),
    (True, ["What would my monthly be on the {MODEL}?", "ok and how long is the warranty"]),
    (True, ["Can I get approved with a {SCORE} score?", "my name is {NAME}, call me at {PHONE}"]),
    (True, ["How much down do I need?", "for the {YEAR} {MODEL} listed at {PRICE}"]),
    (True, ["hi", "I still owe like 9k on my {MODEL}, what's the payoff process for a trade",
            "cool. is stock {STOCK} still there?"]),
    (True, ["Is there 0% APR on the {MODEL} right now?", "and do you have it in {COLOR}"]),
    (True, ["Hola, quiero saber cuanto seria la mensualidad del {MODEL}",
            "mi nombre es {NAME} y mi cel es {PHONE}"]),
    (True, ["¿Cuánto de enganche necesito para el {MODEL}?", "gracias!"]),
    (True, ["I'm self employed, my income is {INCOME} a month, do I qualify for a loan?"]),
    (True, ["can my dad co-sign? his score is {SCORE}", "we're looking at the {MODEL}"]),
    (True, ["I'd like to get pre-approved. SSN {SSN}, DOB {DOB}",
            "address is {ADDRESS}", "email me at {EMAIL}"]),
    (True, ["What rates do you have on used cars for someone with a bankruptcy last year?"]),
    (True, ["I want to set up autopay, my routing number is {ROUTING} and account {ACCOUNT}"]),
    (True, ["this is {NAME}, i was born on {DOB}, do you need that for the credit app?"]),
    (True, ["Looking at the {MODEL}. what payments would I be looking at with {INCOME} income?",
            "ok what colors"]),
    (True, ["We make about {INCOME}, what can we afford?", "something like a {MODEL}"]),
    (True, ["Quick question about leasing vs buying the {MODEL}", "and mileage limits?"]),
    (True, ["my social is {SSN_BARE}, can you run my credit", "thanks, {FIRST}"]),
    (True, ["Does the dealership work with credit unions?", "I bank with Navy Federal"]),
    (True, ["i'm upside down on my {MODEL} by about 4 grand, can i still trade it in",
            "whats my trade worth"]),
    (True, ["Tengo mal crédito, ¿me pueden aprobar?", "soy {NAME}"]),
    (True, ["what's the interest rate for 72 months?", "on the {YEAR} {MODEL}"]),
    (True, ["How much would I pay per month on {PRICE} over 60 months?"]),
    (True, ["I have a {SCORE} fico, what apr tier is that"]),
    # --- ordinary conversations with personal data: may go off-site, redacted ----------
    (False, ["Hi, I'm {NAME}. I'm interested in the {YEAR} {MODEL}.",
             "You can reach me at {PHONE} or {EMAIL}."]),
    (False, ["Can I book a test drive Saturday at 10am?", "it's {NAME}, number is {PHONE}"]),
    (False, ["Do you have the {MODEL} in {COLOR}?", "Is VIN {LOTVIN} still for sale?",
             "ok, text me at {PHONE}"]),
    (False, ["Is stock {STOCK} still available?", "What's the price? I saw {PRICE} online",
             "call me after 5"]),
    (False, ["I want to trade in my {MODEL}, the VIN is {VIN}",
             "plate number is {PLATE}", "what would you offer?"]),
    (False, ["Can you deliver the car to {ADDRESS}?", "my name is {NAME}"]),
    (False, ["Your dealership is at 1200 Lakeside Blvd, right?", "what time do you open?"]),
    (False, ["How much is the {YEAR} model?", "my budget is flexible"]),
    (False, ["Need to reschedule my appointment. This is {NAME}, phone {PHONE}",
             "can we do Tuesday at 3pm"]),
    (False, ["hey its {FIRST_LOWER}, is the {MODEL} hybrid or plug-in?"]),
    (False, ["Which SUV would you recommend for a family of five?",
             "we drive about 30 miles down Main St every day",
             "thanks - {NAME}"]),
    (False, ["Hola, busco una camioneta {COLOR} para mi familia",
             "me llamo {NAME}, mi correo es {EMAIL}"]),
    (False, ["What's the towing capacity of the {MODEL}?", "I have a 5000 lb boat"]),
    (False, ["Do you have any {YEAR} {MODEL}s under {PRICE}?", "with less than 40,000 miles"]),
    (False, ["Hello!", "do you guys have the {MODEL} with 3 rows", "cool, ask for {FIRST}?"]),
    (False, ["My license plate is {PLATE} and I left my sunglasses in the service bay",
             "I'm {NAME}"]),
    (False, ["I need a quote sent to {EMAIL}", "for the {MODEL} in {COLOR}"]),
    (False, ["Is the {MODEL} good on gas?", "my commute is 45 minutes"]),
    (False, ["Can someone call me? {PHONE}", "about the {MODEL}"]),
    (False, ["What's the IIHS safety rating of the {MODEL}?", "and does it have AWD"]),
    (False, ["We live at {ADDRESS}, is there a service center closer to us?"]),
    (False, ["My driver's license is {DL}, do you need it for the test drive?",
             "see you at 2"]),
    (False, ["hi this is a great car", "i'm looking for something sporty"]),
    (False, ["Thank you so much!", "Regards, {NAME}"]),
    (False, ["my wife {NAME} will come pick it up", "her number is {PHONE}"]),
    (False, ["is the {YEAR} {MODEL} certified pre-owned?", "vin {LOTVIN}"]),
    (False, ["Do you have the {MODEL} in stock? stock number {STOCK}",
             "I'm at {ADDRESS} so not far"]),
    (False, ["I'd like to buy the car with card {CARD}, can I pay the deposit online?"]),
    (False, ["send the brochure to {NAME} at {ADDRESS}"]),
    (False, ["What time does service close on Sunday?", "ok ill call {PHONE_STORE}"]),
    # --- written later, after the rules: a held-out batch the redactor was not tuned on --
    (True, ["whats the lowest payment i can get on a {MODEL}", "i can do 2k down"]),
    (True, ["If I put $3000 down what's the loan amount on the {PRICE} {MODEL}?"]),
    (True, ["my nme is {NAME} and my credit is bad, like {SCORE}", "can u help"]),
    (True, ["Do you report to all three credit bureaus?"]),
    (True, ["Mi esposa {NAME} quiere financiar el {MODEL}, ella gana {INCOME} al mes"]),
    (True, ["Is gap insurance required if I finance?", "ok and extended warranty?"]),
    (True, ["I was born {DOB} — is that old enough to sign the loan papers?"]),
    (True, ["Can I use my tax refund as down payment", "it's about 4000"]),
    (True, ["Hi", "What documents do I need for financing?", "Do you need paystubs?"]),
    (True, ["What's my trade worth? I owe about 12k on it", "it's a {YEAR} {MODEL}"]),
    (False, ["The {YEAR} Honda Accord with 45,000 miles, is it still there?",
             "And the {MODEL} with 300 hp?"]),
    (False, ["Does it come with a license plate frame?", "and are tag and title fees extra?"]),
    (False, ["my budget is like 30k", "prefer {COLOR}"]),
    (False, ["We're on Route 66 heading your way, open till 7?", "call me after 5"]),
    (False, ["HI MY NAME IS {NAME} I WANT A TEST DRIVE", "MY PHONE {PHONE}"]),
    (False, ["It's for my daughter {FIRST}, she's 17", "first car, something safe"]),
    (False, ["mi número es {PHONE}, llámame para la prueba de manejo",
             "Mañana a las 4pm"]),
    (False, ["Pick me up at {ADDRESS} for the test drive?", "Thanks, {NAME}"]),
    (False, ["Email: {EMAIL}", "Name: {NAME}", "Phone: {PHONE}"]),
    (False, ["I emailed you from {EMAIL} yesterday about stock {STOCK}", "any update?"]),
    (False, ["the {MODEL} at {PRICE} — is that the out the door price?"]),
    (False, ["Which is better for snow, the {MODEL} or the Outback?"]),
    (False, ["{POBOX} is where to mail the title", "- {NAME}"]),   # a PO box is an address too
    (False, ["Can I put the $500 deposit on my Visa {CARD}?", "exp 09/27"]),
    (True, ["pay the down payment with card {CARD} please"]),
    (False, ["my parts order number is 4111 1111 1111 1112, is it in yet?"]),
    (False, ["Tarjeta {CARD} para el depósito del {MODEL}", "gracias"]),
]

KINDED = {"NAME": ("NAME", NAMES), "PHONE": ("PHONE", PHONES), "EMAIL": ("EMAIL", EMAILS),
          "CARD": ("CARD", CARDS), "SSN": ("SSN", SSNS), "SSN_BARE": ("SSN", SSN_BARE),
          "DOB": ("DOB", DOBS), "ADDRESS": ("ADDRESS", ADDRESSES), "PLATE": ("PLATE", PLATES),
          "ACCOUNT": ("BANK_ACCOUNT", ACCOUNTS), "ROUTING": ("ROUTING", ROUTINGS),
          "INCOME": ("INCOME", INCOMES), "SCORE": ("CREDIT_SCORE", SCORES),
          "DL": ("DL", DLS), "VIN": ("VIN", CUSTOMER_VINS), "FIRST": ("NAME", FIRST_ONLY),
          "POBOX": ("ADDRESS", ["PO Box 1142, Kyle TX 78640"]),
          "FIRST_LOWER": ("NAME", [n.lower() for n in FIRST_ONLY])}
NEGATIVE = {"MODEL": MODELS, "PRICE": PRICES, "STOCK": STOCK, "LOTVIN": LOT_VINS,
            "YEAR": YEARS, "COLOR": COLORS, "PHONE_STORE": ["(555) 010-2000"]}


def fill(turn: str, rng: random.Random) -> dict:
    entities: list[list[str]] = []

    def sub(m: re.Match[str]) -> str:
        slot = m.group(1)
        if slot in KINDED:
            kind, pool = KINDED[slot]
            value = pick(rng, pool)
            entities.append([kind, value])
            return value
        return pick(rng, NEGATIVE[slot])

    text = re.sub(r"\{([A-Z_]+)\}", sub, turn)
    # The store's own number is quoted back at the customer: still a phone number in form,
    # so it is labelled (redacting it off-site costs nothing).
    if "(555) 010-2000" in text:
        entities.append(["PHONE", "(555) 010-2000"])
    return {"text": text, "entities": entities}


COPIES = 6


def main() -> None:
    rng = random.Random(20261130)
    rows = []
    for i, (private, turns) in enumerate(SKELETONS):
        for copy in range(COPIES):
            rows.append({"id": f"c{i:02d}-{copy}", "private": private,
                         "turns": [fill(t, rng) for t in turns]})
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    messages = sum(len(r["turns"]) for r in rows)
    multi = sum(1 for r in rows if len(r["turns"]) > 1)
    print(f"{len(rows)} conversations ({multi} multi-turn), {messages} messages -> {OUT}")


if __name__ == "__main__":
    main()
