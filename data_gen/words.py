"""The shipped word lists the world is built from. Names of products, kinds and places are
invented from syllables (see `world.invent_name`), so no model can know them before training:
only the generated corpus can teach them."""

# Each topic: the hypernym noun, a feature that queries can negate ("without a bag"), a numeric
# attribute with its unit and range, and which qualifier matters for the need.
TOPICS = [
    # noun,        feature,        unit,     lo,   hi,   important qualifier
    ("vacuum",     "bag",          "watt",   600, 2000, "size"),
    ("blender",    "glass jar",    "watt",   300, 1500, "price"),
    ("tent",       "porch",        "kg",       1,   12, "size"),
    ("kettle",     "filter",       "litre",    1,    3, "price"),
    ("backpack",   "rain cover",   "litre",   15,   80, "size"),
    ("camera",     "viewfinder",   "gram",   200, 1200, "price"),
    ("desk lamp",  "dimmer",       "lumen",  200, 1600, "price"),
    ("sneaker",    "lace",         "gram",   180,  420, "size"),
    ("guitar",     "cutaway",      "fret",    18,   24, "price"),
    ("heater",     "fan",          "watt",   500, 3000, "size"),
    ("drill",      "cord",         "volt",    12,   36, "price"),
    ("stroller",   "canopy",       "kg",       4,   15, "size"),
    ("mattress",   "spring",       "cm",      15,   35, "size"),
    ("jacket",     "hood",         "gram",   300, 1500, "price"),
    ("bicycle",    "suspension",   "kg",       8,   25, "size"),
    ("printer",    "scanner",      "page",    10,   60, "price"),
    ("speaker",    "battery",      "watt",    10,  200, "size"),
    ("monitor",    "stand",        "inch",    21,   49, "size"),
    ("grill",      "lid",          "cm",      30,   90, "size"),
    ("coffee maker", "grinder",    "cup",      1,   12, "price"),
]

# Qualifier values and their synonyms: a query may say "compact", a document "small".
QUALIFIERS = {
    "size": {0: ["small", "compact", "mini"], 1: ["large", "big", "full size"]},
    "price": {0: ["cheap", "budget", "affordable"], 1: ["premium", "luxury", "high end"]},
}

TRAVEL_MODES = ["flights", "train", "bus", "ferry"]

SYLLABLES = ["ka", "lo", "mer", "vin", "dar", "pla", "iden", "zor", "vex", "tal", "quen", "bri", "sol",
             "mar", "nor", "vel", "tru", "gan", "hol", "res", "fin", "ost", "lum", "dra", "kel", "pir",
             "sab", "tor", "wen", "yal", "cor", "vish", "bel", "ran", "mo", "sel", "ter", "ana", "ul", "ex"]
MODEL_LETTERS = "ABCDEGHKLMPRSTVXZ"

GENRES = ["guide", "review", "news", "shop", "forum"]

# Verbs and adjectives for readable body text, and words of the general (not in-domain) corpus.
PRAISE = ["works well", "feels solid", "is easy to clean", "is quiet", "lasts a long time", "is light",
          "packs away neatly", "looks good", "heats up fast", "is simple to set up"]
COMPLAINT = ["is noisy", "broke after a month", "is heavy", "feels cheap", "is hard to clean",
             "has a weak motor", "arrived late", "is awkward to carry"]
GENERAL_SUBJECTS = ["the weather", "the market", "the old bridge", "our neighbour", "the city council",
                    "the football team", "the school", "the bakery", "the river", "the museum", "the library",
                    "the farmers", "the choir", "the new road", "the harbour", "the festival"]
GENERAL_VERBS = ["changed again", "opened early", "was busy all day", "closed for repairs", "drew a crowd",
                 "made the news", "looked calm", "surprised everyone", "needed more time", "stayed quiet"]
GENERAL_TAILS = ["on monday", "this spring", "after the rain", "in the morning", "last week", "at noon",
                 "before the holidays", "for the first time", "as usual", "despite the wind"]
EMOJI_NOISE = ["🔥", "✨", "💯", "😍", "👉", "!!!", "###", "$$$", "~~~", "★★★", "👍", "🎉"]
