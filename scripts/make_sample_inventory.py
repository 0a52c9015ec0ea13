"""Writes gateway/data/inventory.csv: a realistic lot of ~150 vehicles for the demo and tests.

The columns are what a dealer management system exports. VINs are synthetic but carry a
valid check digit; prices, mileage and trims follow the models' real ranges. Seeded: the
same file every time.

    python scripts/make_sample_inventory.py
"""

from __future__ import annotations

import csv
import random
import string
from pathlib import Path

from gateway.vin import check_digit

OUT = Path(__file__).resolve().parents[1] / "gateway" / "data" / "inventory.csv"
COLUMNS = ["stock_number", "vin", "year", "make", "model", "trim", "body_style", "fuel",
           "drivetrain", "exterior_color", "mileage", "price", "status", "updated_at"]
# make, model, body, fuels, drivetrains, trims, new price range (USD)
MODELS = [
    ("Toyota", "RAV4", "SUV", ["gas", "hybrid", "plug-in hybrid"], ["AWD", "FWD"],
     ["LE", "XLE", "XSE", "Limited"], (29000, 45000)),
    ("Toyota", "Camry", "sedan", ["gas", "hybrid"], ["FWD", "AWD"], ["LE", "SE", "XSE"],
     (27000, 36000)),
    ("Toyota", "Highlander", "SUV", ["gas", "hybrid"], ["AWD", "FWD"],
     ["LE", "XLE", "Limited", "Platinum"], (39000, 53000)),
    ("Toyota", "Tacoma", "truck", ["gas"], ["4WD", "RWD"], ["SR", "SR5", "TRD Off-Road"],
     (32000, 48000)),
    ("Toyota", "Sienna", "minivan", ["hybrid"], ["FWD", "AWD"], ["LE", "XLE", "Limited"],
     (39000, 55000)),
    ("Toyota", "Corolla", "sedan", ["gas", "hybrid"], ["FWD"], ["LE", "SE"], (22000, 28000)),
    ("Honda", "CR-V", "SUV", ["gas", "hybrid"], ["AWD", "FWD"], ["EX", "EX-L", "Sport"],
     (30000, 41000)),
    ("Honda", "Civic", "sedan", ["gas"], ["FWD"], ["LX", "Sport", "EX"], (24000, 31000)),
    ("Honda", "Pilot", "SUV", ["gas"], ["AWD"], ["EX-L", "TrailSport", "Elite"],
     (40000, 54000)),
    ("Honda", "Accord", "sedan", ["gas", "hybrid"], ["FWD"], ["LX", "Sport", "Touring"],
     (28000, 39000)),
    ("Ford", "F-150", "truck", ["gas", "hybrid", "electric"], ["4WD", "RWD"],
     ["XL", "XLT", "Lariat"], (36000, 68000)),
    ("Ford", "Escape", "SUV", ["gas", "hybrid", "plug-in hybrid"], ["AWD", "FWD"],
     ["Active", "ST-Line", "Platinum"], (28000, 40000)),
    ("Ford", "Mustang Mach-E", "SUV", ["electric"], ["AWD", "RWD"], ["Select", "Premium"],
     (42000, 54000)),
    ("Chevrolet", "Equinox", "SUV", ["gas"], ["AWD", "FWD"], ["LS", "LT", "RS"],
     (27000, 35000)),
    ("Chevrolet", "Silverado", "truck", ["gas", "diesel"], ["4WD", "RWD"],
     ["WT", "LT", "High Country"], (38000, 65000)),
    ("Chevrolet", "Bolt EUV", "SUV", ["electric"], ["FWD"], ["LT", "Premier"], (28000, 33000)),
    ("Hyundai", "Tucson", "SUV", ["gas", "hybrid", "plug-in hybrid"], ["AWD", "FWD"],
     ["SE", "SEL", "Limited"], (28000, 40000)),
    ("Hyundai", "Ioniq 5", "SUV", ["electric"], ["AWD", "RWD"], ["SE", "SEL", "Limited"],
     (43000, 55000)),
    ("Kia", "Telluride", "SUV", ["gas"], ["AWD", "FWD"], ["LX", "EX", "SX"], (37000, 53000)),
    ("Kia", "Sorento", "SUV", ["gas", "hybrid", "plug-in hybrid"], ["AWD", "FWD"],
     ["LX", "S", "EX"], (32000, 48000)),
    ("Subaru", "Outback", "wagon", ["gas"], ["AWD"], ["Premium", "Limited", "Wilderness"],
     (30000, 43000)),
    ("Subaru", "Forester", "SUV", ["gas", "hybrid"], ["AWD"], ["Base", "Premium", "Sport"],
     (28000, 40000)),
    ("Tesla", "Model Y", "SUV", ["electric"], ["AWD", "RWD"], ["Long Range", "Performance"],
     (45000, 56000)),
    ("Nissan", "Rogue", "SUV", ["gas"], ["AWD", "FWD"], ["S", "SV", "SL"], (29000, 39000)),
]
COLORS = ["white", "black", "silver", "gray", "blue", "red", "green", "pearl white",
          "midnight black", "blueprint blue", "magnetic gray", "ruby red"]
WMI = {"Toyota": "2T3", "Honda": "2HK", "Ford": "1FT", "Chevrolet": "1GN", "Hyundai": "KM8",
       "Kia": "5XY", "Subaru": "4S4", "Tesla": "7SA", "Nissan": "5N1"}
VIN_CHARS = "".join(c for c in string.ascii_uppercase + string.digits if c not in "IOQ")


def vin(rng: random.Random, make: str, year: int) -> str:
    years = "ABCDEFGHJKLMNPRSTVWXY123456789"
    body = WMI[make] + "".join(rng.choice(VIN_CHARS) for _ in range(5)) + "0" + \
        years[(year - 2010) % 30] + rng.choice("ABCDEFGH") + f"{rng.randint(0, 999999):06d}"
    return body[:8] + check_digit(body) + body[9:]


def main() -> None:
    rng = random.Random(20261130)
    rows = []
    for i in range(152):
        make, model, body, fuels, drives, trims, (low, high) = rng.choice(MODELS)
        year = rng.choice([2019, 2020, 2021, 2022, 2023, 2024, 2024, 2025, 2025, 2025])
        new = year >= 2025
        miles = rng.randint(5, 40) if new else rng.randint(8000, 22000) * (2025 - year)
        price = rng.randint(low, high) * (1 if new else max(0.45, 1 - 0.09 * (2025 - year)))
        status = rng.choices(["available", "pending", "sold"], [82, 8, 10])[0]
        rows.append({"stock_number": f"{'N' if new else 'U'}{24100 + i}",
                     "vin": vin(rng, make, year), "year": year, "make": make, "model": model,
                     "trim": rng.choice(trims), "body_style": body, "fuel": rng.choice(fuels),
                     "drivetrain": rng.choice(drives),
                     "exterior_color": rng.choice(COLORS), "mileage": miles,
                     "price": int(round(price, -2)) - 1, "status": status,
                     "updated_at": f"2026-11-{rng.randint(20, 29):02d}T{rng.randint(8, 18):02d}:00:00Z"})
    with OUT.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} vehicles -> {OUT}")


if __name__ == "__main__":
    main()
