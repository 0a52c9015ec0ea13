"""The words stock questions are written in, beyond the names the lot's own stock supplies:
synonyms, drivetrains, colour words, and the makes and models sold in the US and Mexico.
English and Spanish, written without accents: the extractor folds them away first. Data.
"""

from __future__ import annotations

# phrase → (field, value); longer phrases win over their parts. Extendable in
# `inventory.synonyms`.
SYNONYMS: dict[str, tuple[str, str]] = {
    "plug-in hybrid": ("fuels", "plug-in hybrid"), "plug in hybrid": ("fuels", "plug-in hybrid"),
    "plug-in": ("fuels", "plug-in hybrid"), "phev": ("fuels", "plug-in hybrid"),
    "hybrid": ("fuels", "hybrid"), "hybrids": ("fuels", "hybrid"),
    "electric": ("fuels", "electric"), "ev": ("fuels", "electric"), "evs": ("fuels", "electric"),
    "bev": ("fuels", "electric"), "diesel": ("fuels", "diesel"),
    "gas": ("fuels", "gas"), "gasoline": ("fuels", "gas"),
    "suv": ("body_styles", "SUV"), "suvs": ("body_styles", "SUV"),
    "crossover": ("body_styles", "SUV"), "crossovers": ("body_styles", "SUV"),
    "truck": ("body_styles", "truck"), "trucks": ("body_styles", "truck"),
    "pickup": ("body_styles", "truck"), "pickups": ("body_styles", "truck"),
    "sedan": ("body_styles", "sedan"), "sedans": ("body_styles", "sedan"),
    "minivan": ("body_styles", "minivan"), "minivans": ("body_styles", "minivan"),
    "van": ("body_styles", "minivan"), "wagon": ("body_styles", "wagon"),
    "estate": ("body_styles", "wagon"),
    "chevy": ("makes", "Chevrolet"), "vw": ("makes", "Volkswagen"),
    "mach-e": ("models", "Mustang Mach-E"), "mach e": ("models", "Mustang Mach-E"),
    # Spanish, as the dealership's Spanish-speaking customers write it (accents folded).
    "hibrido": ("fuels", "hybrid"), "hibrida": ("fuels", "hybrid"),
    "hibrido enchufable": ("fuels", "plug-in hybrid"),
    "hibrida enchufable": ("fuels", "plug-in hybrid"), "enchufable": ("fuels", "plug-in hybrid"),
    "electrico": ("fuels", "electric"), "electrica": ("fuels", "electric"),
    "gasolina": ("fuels", "gas"),
    "camioneta pickup": ("body_styles", "truck"), "troca": ("body_styles", "truck"),
    "todoterreno": ("body_styles", "SUV"), "familiar": ("body_styles", "wagon"),
    "furgoneta": ("body_styles", "minivan"),
}
# Drivetrains as customers write them, to the inventory's own names.
DRIVETRAINS = {"awd": "AWD", "all wheel drive": "AWD", "all-wheel drive": "AWD",
               "all-wheel-drive": "AWD", "4wd": "4WD", "4x4": "4WD", "four wheel drive": "4WD",
               "four-wheel drive": "4WD", "4 wheel drive": "4WD", "fwd": "FWD",
               "front wheel drive": "FWD", "front-wheel drive": "FWD", "rwd": "RWD",
               "rear wheel drive": "RWD", "rear-wheel drive": "RWD", "traccion integral": "AWD",
               "traccion total": "AWD", "doble traccion": "4WD", "traccion delantera": "FWD",
               "traccion trasera": "RWD"}
COLOR_WORDS = ("white", "black", "silver", "gray", "grey", "blue", "red", "green",
               "orange", "yellow", "brown", "beige", "gold")
COLOR_ES = {"blanco": "white", "blanca": "white", "negro": "black", "negra": "black",
            "plata": "silver", "plateado": "silver", "plateada": "silver", "gris": "gray",
            "azul": "blue", "rojo": "red", "roja": "red", "verde": "green", "naranja": "orange",
            "amarillo": "yellow", "amarilla": "yellow", "cafe": "brown", "dorado": "gold"}
# Makes sold new in the US and Mexico, so a question about one the lot has none of is still
# a stock question (answered "none of those here", with the nearest as not matching). Not
# the makes that are also everyday words ("mini", "lucid"): the lot's own stock names them.
KNOWN_MAKES = ("Acura", "Alfa Romeo", "Audi", "BMW", "Buick", "Cadillac", "Chevrolet",
               "Chrysler", "Dodge", "Fiat", "Ford", "Genesis", "GMC", "Honda", "Hyundai",
               "Infiniti", "Jaguar", "Jeep", "Kia", "Land Rover", "Lexus", "Lincoln", "Mazda",
               "Mercedes-Benz", "Mitsubishi", "Nissan", "Polestar", "Porsche", "Ram", "Rivian",
               "Subaru", "Tesla", "Toyota", "Volkswagen", "Volvo")
# Models of those makes, for the same reason. Only names that are not everyday words: a lot
# that sells the Escape, Pilot or Edge has them in its stock, and the stock's names count.
KNOWN_MODELS = (
    "4Runner", "Avalon", "bZ4X", "C-HR", "Camry", "Corolla", "Corolla Cross", "GR86",
    "Grand Highlander", "Highlander", "Prius", "RAV4", "Sienna", "Tacoma", "Tundra", "Venza",
    "Accord", "CR-V", "Civic", "HR-V", "Ridgeline", "F-150", "F-250", "F-350", "Bronco Sport",
    "Mustang Mach-E", "Camaro", "Corvette", "Equinox", "Silverado", "Trailblazer",
    "Bolt EUV", "Blazer EV", "Hummer EV", "Altima", "Murano", "Pathfinder", "Rogue", "Sentra",
    "Ariya", "Elantra", "Ioniq 5", "Ioniq 6", "Palisade", "Tucson", "Sorento", "Sportage",
    "Seltos", "Telluride", "EV6", "EV9", "Niro", "Crosstrek", "Forester", "Impreza",
    "Outback", "WRX", "Solterra", "CX-30", "CX-5", "CX-50", "CX-70", "CX-90", "MX-5 Miata",
    "Mazda3", "ID.4", "Jetta", "Tiguan", "Model 3", "Model S", "Model X", "Model Y",
    "Cybertruck", "Grand Cherokee", "Wrangler", "Wagoneer", "Outlander", "Eclipse Cross",
    "MDX", "RDX", "Integra", "XC40", "XC60", "XC90", "RX 350", "NX 350", "Aveo", "Onix",
    "Jimny")
