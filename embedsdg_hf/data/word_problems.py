"""A deterministic generator of grade-school math word problems: the seed pool the project ships.

GSM8K itself may not be redistributed, so :func:`make_word_problems` makes a pool of the same kind, in the spirit of
scikit-learn's ``make_*`` data sets: short word problems over many problem types, names, objects and phrasings, each
with a worked solution in GSM8K style. Every arithmetic step carries a calculator annotation ``<<expr=result>>``
followed by the result, and the solution ends with a line ``#### N`` holding the final answer::

    Each notebook costs 24/6 = $<<24/6=4>>4.
    So 9 notebooks cost 9*4 = $<<9*4=36>>36.
    #### 36

Every expression uses only non-negative integers and ``+ - * /``; operands are chosen so that all intermediate and
final results (every division included) are whole numbers. The output depends only on ``(n, seed)``: row ``i`` is
drawn from its own ``random.Random`` seeded by ``(seed, i)``, so a longer pool extends a shorter one with the same
seed.
"""

from __future__ import annotations

import ast
import math
import numbers
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import datasets

__all__ = ["PROBLEM_TYPES", "make_word_problem", "make_word_problems"]

_SALT = "embedsdg-word-problems-v1"

# ---------------------------------------------------------------------------------------------------------------------
# People: a name and the pronoun set used with it.
# ---------------------------------------------------------------------------------------------------------------------

_NAMES: tuple[tuple[str, str], ...] = (
    *((name, "she") for name in (
        "Natalia", "Aisha", "Mei", "Sofia", "Priya", "Hannah", "Fatima", "Chloe", "Yuki", "Grace", "Amara", "Lucia",
        "Olivia", "Zara", "Ingrid", "Rosa", "Leila", "Emma", "Nadia", "Keiko", "Maya", "Elena", "Tanya", "Beatriz",
    )),
    *((name, "he") for name in (
        "James", "Omar", "Diego", "Liam", "Kwame", "Raj", "Mateo", "Ethan", "Hiroshi", "Noah", "Tariq", "Lucas",
        "Samuel", "Wei", "Jamal", "Felix", "Ivan", "Carlos", "Arjun", "Ben", "Malik", "Kenji", "Oscar", "Dmitri",
    )),
    *((name, "they") for name in (
        "Alex", "Jordan", "Riley", "Casey", "Quinn", "Avery", "Morgan", "Robin", "Jamie", "Rowan", "Sky", "Devon",
    )),
)  # fmt: skip

_PRONOUNS: dict[str, dict[str, str]] = {
    "he": {"he": "he", "him": "him", "his": "his", "s": "s", "has": "has", "does": "does", "be": "is", "was": "was"},
    "she": {"he": "she", "him": "her", "his": "her", "s": "s", "has": "has", "does": "does", "be": "is", "was": "was"},
    "they": {
        "he": "they", "him": "them", "his": "their", "s": "", "has": "have", "does": "do", "be": "are", "was": "were",
    },
}  # fmt: skip


@dataclass(frozen=True)
class _Person:
    """A name plus pronouns, used in templates as ``{p.name}``, ``{p.He}``, ``{p.his}``, ``buy{p.s}``, ``{p.has}``."""

    name: str
    pronoun: str

    def __getattr__(self, key: str) -> str:
        forms = _PRONOUNS[object.__getattribute__(self, "pronoun")]
        if key in forms:
            return forms[key]
        if key[:1].isupper() and key.lower() in forms:  # {p.He}, {p.His}: sentence-initial forms
            return _cap(forms[key.lower()])
        raise AttributeError(key)


def _people(rng: random.Random, k: int) -> list[_Person]:
    return [_Person(name, pronoun) for name, pronoun in rng.sample(_NAMES, k)]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------------------------------------------------------------
# Things to count, buy, share and make.
# ---------------------------------------------------------------------------------------------------------------------

# (singular, plural, lowest price, highest price) in whole dollars
_SHOP_ITEMS: tuple[tuple[str, str, int, int], ...] = (
    ("notebook", "notebooks", 2, 6), ("pen", "pens", 1, 4), ("T-shirt", "T-shirts", 8, 20), ("book", "books", 5, 15),
    ("toy car", "toy cars", 3, 9), ("sandwich", "sandwiches", 4, 9), ("mug", "mugs", 3, 10),
    ("potted plant", "potted plants", 4, 12), ("basketball", "basketballs", 10, 25), ("puzzle", "puzzles", 6, 15),
    ("pair of socks", "pairs of socks", 2, 6), ("candle", "candles", 3, 8), ("comic book", "comic books", 2, 7),
    ("water bottle", "water bottles", 5, 14), ("hat", "hats", 6, 18), ("box of crayons", "boxes of crayons", 2, 5),
    ("packet of seeds", "packets of seeds", 1, 4), ("board game", "board games", 12, 30),
    ("bag of apples", "bags of apples", 3, 7), ("pillow", "pillows", 7, 16), ("kite", "kites", 5, 12),
)  # fmt: skip

_COLLECTIBLES: tuple[str, ...] = (
    "marbles", "stickers", "stamps", "seashells", "trading cards", "beads", "baseball cards", "buttons", "postcards",
    "rocks", "toy cars", "comic books", "bottle caps", "feathers", "keychains", "pins", "coins", "action figures",
    "pressed flowers", "crayons",
)  # fmt: skip

_FOODS: tuple[str, ...] = (
    "cookies", "cupcakes", "muffins", "apples", "oranges", "brownies", "granola bars", "donuts", "bagels", "pretzels",
    "strawberries", "tangerines", "rolls", "lemon bars", "dumplings", "eggs",
)  # fmt: skip
_CONTAINERS: tuple[str, ...] = ("box", "bag", "tray", "tin", "basket", "carton")
_CONTAINER_PLURAL = {"box": "boxes"}

# (people, vehicle or place they fill)
_GROUPS: tuple[tuple[str, str], ...] = (
    ("students", "van"), ("players", "car"), ("guests", "table"), ("campers", "cabin"), ("scouts", "canoe"),
    ("tourists", "boat"), ("children", "bench"), ("hikers", "tent"), ("fans", "bus"), ("volunteers", "minivan"),
)  # fmt: skip

# (base verb, third person, past tense, lowest speed, highest speed, speed step)
_MOVERS: tuple[tuple[str, str, str, int, int, int], ...] = (
    ("drive", "drives", "drove", 30, 70, 5), ("ride a bike", "rides a bike", "rode a bike", 8, 18, 1),
    ("walk", "walks", "walked", 2, 4, 1), ("jog", "jogs", "jogged", 4, 8, 1),
    ("ride a scooter", "rides a scooter", "rode a scooter", 6, 15, 1),
    ("take the train", "takes the train", "took the train", 40, 90, 10), ("sail", "sails", "sailed", 5, 15, 1),
    ("ride a horse", "rides a horse", "rode a horse", 5, 12, 1), ("skate", "skates", "skated", 6, 12, 1),
)  # fmt: skip
_DISTANCE_UNITS: tuple[str, ...] = ("miles", "kilometers")

# (base verb, third person, plural object) for people working together
_TASKS: tuple[tuple[str, str, str], ...] = (
    ("wash", "washes", "cars"), ("fold", "folds", "shirts"), ("pack", "packs", "boxes"), ("plant", "plants", "trees"),
    ("frost", "frosts", "cupcakes"), ("sort", "sorts", "letters"), ("stack", "stacks", "chairs"),
    ("label", "labels", "jars"), ("paint", "paints", "fence posts"), ("wrap", "wraps", "presents"),
    ("grade", "grades", "quizzes"), ("knit", "knits", "scarves"),
)  # fmt: skip

# (machine, third person verb, plural object)
_MACHINES: tuple[tuple[str, str, str], ...] = (
    ("printer", "prints", "pages"), ("bottling machine", "fills", "bottles"), ("pump", "moves", "gallons of water"),
    ("robot", "assembles", "toy trucks"), ("bread machine", "bakes", "rolls"),
    ("sewing machine", "stitches", "patches"), ("juicer", "squeezes", "oranges"),
    ("packing machine", "seals", "envelopes"),
)  # fmt: skip

_BIG_ITEMS: tuple[str, ...] = (
    "jacket", "bicycle", "pair of shoes", "backpack", "lamp", "video game", "tent", "desk chair", "watch", "guitar",
    "scooter", "blender", "suitcase", "coat", "skateboard", "microwave",
)  # fmt: skip

# What one batch of a recipe makes
_DISHES: tuple[str, ...] = (
    "pancakes", "muffins", "cookies", "waffles", "bowls of soup", "dinner rolls", "brownies", "tacos", "crepes",
    "servings of pasta", "smoothies", "biscuits",
)  # fmt: skip
_INGREDIENTS: tuple[str, ...] = (
    "cups of flour", "eggs", "tablespoons of butter", "cups of milk", "teaspoons of vanilla", "ounces of chocolate",
    "cups of oats", "bananas", "cups of sugar", "cloves of garlic", "cups of rice", "tomatoes",
)  # fmt: skip

_MEALS: tuple[str, ...] = ("dinner", "lunch", "breakfast", "brunch")
_PLACES_TO_EAT: tuple[str, ...] = (
    "a pizza place", "a diner", "a sushi restaurant", "a cafe", "a noodle shop", "a steakhouse", "a taco stand",
    "an Italian restaurant", "a food truck", "a barbecue restaurant",
)  # fmt: skip

_JOBS: tuple[str, ...] = (
    "a cashier", "a tutor", "a lifeguard", "a barista", "a dog walker", "a camp counselor", "a delivery driver",
    "a library assistant", "a gardener", "a mechanic", "a lab assistant", "a waiter",
)  # fmt: skip

# (plot of land, what goes around it)
_YARDS: tuple[str, ...] = (
    "garden", "backyard", "playground", "patio", "dog run", "vegetable patch", "chicken coop yard", "parking lot",
    "tennis court", "goat pen",
)  # fmt: skip
_ROOMS: tuple[str, ...] = (
    "living room",
    "bedroom",
    "kitchen",
    "classroom",
    "hallway",
    "home office",
    "basement",
    "studio",
)
_LENGTH_UNITS: tuple[tuple[str, str], ...] = (("feet", "foot"), ("meters", "meter"), ("yards", "yard"))

_GOALS: tuple[str, ...] = (
    "bike", "video game console", "skateboard", "guitar", "tablet", "pair of sneakers", "telescope", "concert ticket",
    "camera", "scooter", "keyboard", "fishing rod", "tent",
)  # fmt: skip

_BOOKS: tuple[str, ...] = (
    "mystery novel", "fantasy book", "biography", "science book", "history book", "pirate adventure story",
    "book of poems", "graphic novel", "cookbook", "book about space",
)  # fmt: skip

_TESTS: tuple[str, ...] = ("math tests", "spelling quizzes", "science tests", "history quizzes", "reading tests")

# (shop, stock, container the deliveries come in)
_SHOPS: tuple[tuple[str, str, str], ...] = (
    ("toy store", "stuffed animals", "cartons"), ("bookstore", "notebooks", "boxes"),
    ("grocery store", "cans of soup", "cases"), ("garden center", "flower pots", "crates"),
    ("sports shop", "tennis balls", "cases"), ("pet store", "bags of dog food", "pallets"),
    ("hardware store", "light bulbs", "boxes"), ("bakery", "bagels", "trays"), ("florist", "roses", "buckets"),
    ("stationery shop", "pencils", "boxes"),
)  # fmt: skip

_WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")

# Fractions in words: (numerator, denominator) -> words.
_FRACTIONS: dict[tuple[int, int], str] = {
    (1, 2): "half", (1, 3): "a third", (2, 3): "two-thirds", (1, 4): "a quarter", (3, 4): "three-quarters",
    (1, 5): "a fifth", (2, 5): "two-fifths", (3, 5): "three-fifths", (1, 6): "a sixth", (5, 6): "five-sixths",
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------------------
# Exact arithmetic and the worked solution.
# ---------------------------------------------------------------------------------------------------------------------

_OPERATORS: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_EXPRESSION_CHARS = frozenset("0123456789+-*/")


def _evaluate(expr: str) -> int:
    """Evaluate ``expr`` (integers and ``+ - * /`` only) exactly; every division and the result must be whole."""
    if not expr or not set(expr) <= _EXPRESSION_CHARS:
        raise AssertionError(f"bad calculator expression {expr!r}")

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            result = _OPERATORS[type(node.op)](value(node.left), value(node.right))
            if isinstance(node.op, ast.Div) and result.denominator != 1:
                raise AssertionError(f"inexact division in {expr!r}")
            return result
        raise AssertionError(f"unsupported syntax in {expr!r}")

    result = value(ast.parse(expr, mode="eval").body)
    if result.denominator != 1 or result < 0:
        raise AssertionError(f"{expr!r} = {result} is not a non-negative whole number")
    return int(result)


class _Solution:
    """Collects the sentences of a worked solution; ``step`` adds one with a calculator annotation."""

    def __init__(self, fields: dict[str, object]) -> None:
        self.fields = fields
        self.lines: list[str] = []
        self.result: int | None = None

    def step(self, expr: str, text: str, *, money: bool = False) -> int:
        """Append ``text`` with ``{calc}`` replaced by ``expr = <<expr=value>>value``; return the value."""
        result = _evaluate(expr)
        calc = f"{expr} = {'$' if money else ''}<<{expr}={result}>>{result}"
        self.lines.append(_cap(text.format(**self.fields, calc=calc)))
        self.result = result
        return result

    def say(self, text: str) -> None:
        """Append a sentence without arithmetic."""
        self.lines.append(_cap(text.format(**self.fields)))

    def render(self) -> tuple[str, str]:
        """The solution text ending in ``#### N``, and ``N``."""
        if self.result is None:
            raise AssertionError("a solution needs at least one step")
        return "\n".join([*self.lines, f"#### {self.result}"]), str(self.result)


def _ask(rng: random.Random, templates: Sequence[str], fields: dict[str, object]) -> str:
    """Fill one of ``templates`` (picked with ``rng``) from ``fields``."""
    return _cap(rng.choice(templates).format(**fields))


def _multiple_of(rng: random.Random, base: int, lo: int, hi: int) -> int:
    """A multiple of ``base`` in ``[lo, hi]`` (``hi >= lo`` with at least one multiple between them)."""
    return base * rng.randint(-(-lo // base), hi // base)


# ---------------------------------------------------------------------------------------------------------------------
# Problem types. Each takes its own ``random.Random`` and returns the question and its worked solution.
# ---------------------------------------------------------------------------------------------------------------------

_Problem = tuple[str, _Solution]


def _shopping_change(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    (_, a, lo_a, hi_a), (_, b, lo_b, hi_b) = rng.sample(_SHOP_ITEMS, 2)
    qa, qb, pa, pb = rng.randint(2, 6), rng.randint(2, 6), rng.randint(lo_a, hi_a), rng.randint(lo_b, hi_b)
    bill = rng.choice([x for x in (20, 50, 100, 200, 500) if x > qa * pa + qb * pb][:2])
    f = dict(p=p, a=a, b=b, qa=qa, qb=qb, pa=pa, pb=pb, bill=bill)
    question = _ask(
        rng,
        (
            "{p.name} buys {qa} {a} for ${pa} each and {qb} {b} for ${pb} each. {p.He} pay{p.s} with a ${bill} bill. "
            "How much change {p.does} {p.he} get back?",
            "At the store, {p.name} picked up {qa} {a} that cost ${pa} apiece and {qb} {b} at ${pb} apiece. If {p.he} "
            "handed the cashier ${bill}, how many dollars of change should {p.he} receive?",
            "{a} cost ${pa} each and {b} cost ${pb} each. {p.name} buys {qa} {a} and {qb} {b} and pays with a ${bill} "
            "bill. How much change does {p.name} get?",
            "{p.name} has ${bill}. {p.He} spend{p.s} some of it on {qa} {a} at ${pa} each and {qb} {b} at ${pb} each. "
            "How much money does {p.name} have left?",
        ),
        f,
    )
    sol = _Solution(f)
    cost_a = sol.step(f"{qa}*{pa}", "the {a} cost {calc}.", money=True)
    cost_b = sol.step(f"{qb}*{pb}", "the {b} cost {calc}.", money=True)
    total = sol.step(
        f"{cost_a}+{cost_b}", rng.choice(("altogether {p.he} spent {calc}.", "the total is {calc}.")), money=True
    )
    sol.step(f"{bill}-{total}", "so {p.name} gets back {calc} in change.", money=True)
    return question, sol


def _unit_price(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    one, many, lo, hi = rng.choice(_SHOP_ITEMS)
    unit = rng.randint(max(1, lo // 2), hi)
    pack = rng.choice((3, 4, 5, 6, 8, 10, 12))
    want = rng.choice([m for m in range(2, 31) if m != pack])
    f = dict(p=p, one=one, many=many, pack=pack, price=pack * unit, want=want, budget=want * unit)
    sol = _Solution(f)
    if rng.random() < 0.5:
        question = _ask(
            rng,
            (
                "A pack of {pack} {many} costs ${price}. At the same price per {one}, how much would {want} {many} "
                "cost?",
                "{p.name} sees that {pack} {many} sell for ${price}. {p.He} need{p.s} {want} {many}. If every {one} "
                "costs the same, how many dollars will {p.he} spend?",
                "A shop charges ${price} for {pack} {many}. How much does {p.name} pay for {want} {many} at that "
                "rate?",
            ),
            f,
        )
        price = sol.step(f"{pack * unit}/{pack}", "each {one} costs {calc}.", money=True)
        sol.step(f"{want}*{price}", "so {want} {many} cost {calc}.", money=True)
    else:
        question = _ask(
            rng,
            (
                "{pack} {many} cost ${price}. How many {many} can {p.name} buy with ${budget}?",
                "{p.name} has ${budget} to spend on {many}. If {pack} {many} cost ${price}, how many {many} can "
                "{p.he} buy?",
                "At a market, {many} are priced at ${price} for {pack}. {p.name} spends exactly ${budget} on {many}. "
                "How many {many} does {p.name} buy?",
            ),
            f,
        )
        price = sol.step(f"{pack * unit}/{pack}", "one {one} costs {calc}.", money=True)
        sol.step(f"{want * unit}/{price}", "with ${budget}, {p.name} can buy {calc} {many}.")
    return question, sol


def _speed_distance_time(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    base, third, past, lo, hi, inc = rng.choice(_MOVERS)
    unit = rng.choice(_DISTANCE_UNITS)
    speed, speed2 = (rng.randrange(lo, hi + 1, inc) for _ in range(2))
    hours, hours2 = rng.randint(2, 6), rng.randint(2, 5)
    f = dict(
        p=p, base=base, third=third, past=past, unit=unit, v=speed, v2=speed2, t=hours, t2=hours2, d=speed * hours
    )
    sol = _Solution(f)
    kind = rng.randrange(3)
    if kind == 0:
        question = _ask(
            rng,
            (
                "{p.name} {past} {d} {unit} in {t} hours. At the same speed, how many {unit} can {p.he} {base} in "
                "{t2} hours?",
                "It takes {p.name} {t} hours to {base} {d} {unit}. Going just as fast, how far {p.does} {p.he} go in "
                "{t2} hours?",
                "When {p.name} {third}, {p.he} cover{p.s} {d} {unit} every {t} hours. How many {unit} {p.does} {p.he} "
                "cover in {t2} hours?",
            ),
            f,
        )
        per_hour = sol.step(f"{speed * hours}/{hours}", "{p.name} goes {calc} {unit} per hour.")
        sol.step(f"{per_hour}*{hours2}", "in {t2} hours that is {calc} {unit}.")
    elif kind == 1:
        question = _ask(
            rng,
            (
                "{p.name} {third} to a town {d} {unit} away at {v} {unit} per hour and comes back the same way at the "
                "same speed. How many hours does the round trip take?",
                "A trip is {d} {unit} each way. If {p.name} {third} at {v} {unit} an hour both ways, how many hours "
                "will {p.he} spend traveling in all?",
                "{p.name} {past} {d} {unit} to visit a friend at {v} {unit} per hour, then went home along the same "
                "route at the same speed. How long did the two trips take altogether, in hours?",
            ),
            f,
        )
        one_way = sol.step(f"{speed * hours}/{speed}", "one way takes {calc} hours.")
        sol.step(f"{one_way}*2", "there and back takes {calc} hours.")
    else:
        question = _ask(
            rng,
            (
                "{p.name} {past} for {t} hours at {v} {unit} per hour and then for {t2} more hours at {v2} {unit} per "
                "hour. How many {unit} did {p.he} travel in total?",
                "On a trip, {p.name} {third} {t} hours at {v} {unit} an hour, then {t2} hours at {v2} {unit} an hour. "
                "What is the total distance in {unit}?",
            ),
            f,
        )
        first = sol.step(f"{speed}*{hours}", "in the first part {p.name} went {calc} {unit}.")
        second = sol.step(f"{speed2}*{hours2}", "in the second part {p.he} went {calc} {unit}.")
        sol.step(f"{first}+{second}", "the total distance is {calc} {unit}.")
    return question, sol


# Pairs of hours (a, b) for which two workers together need a whole number of hours, a*b/(a+b).
_TOGETHER_HOURS: tuple[tuple[int, int], ...] = tuple(
    (a, b)
    for a in range(2, 41)
    for b in range(2, 41)
    if a * b % (a + b) == 0 and a * b // (a + b) >= 2 and math.lcm(a, b) <= 60 and (a != b or a <= 12)
)


def _work_rate(rng: random.Random) -> _Problem:
    a, b = _people(rng, 2)
    common: dict[str, object] = dict(a=a, b=b)
    if rng.random() < 0.5:
        machine, verb, things = rng.choice(_MACHINES)
        unit = rng.choice(("minute", "hour"))
        r1, r2 = rng.randint(2, 15), rng.randint(2, 15)
        total = (r1 + r2) * rng.randint(3, 20)
        f = dict(common, machine=machine, verb=verb, things=things, unit=unit, r1=r1, r2=r2, total=total)
        question = _ask(
            rng,
            (
                "One {machine} {verb} {r1} {things} per {unit} and a second {machine} {verb} {r2} {things} per "
                "{unit}. Working together, how many {unit}s will they take to handle {total} {things}?",
                "{a.name} runs two machines: an old {machine} that {verb} {r1} {things} each {unit} and a new one "
                "that {verb} {r2} {things} each {unit}. How many {unit}s does it take both of them to get through "
                "{total} {things}?",
                "A workshop needs {total} {things} done. Its two machines handle {r1} and {r2} {things} per {unit}. "
                "If both run at once, how many {unit}s will the job take?",
            ),
            f,
        )
        sol = _Solution(f)
        rate = sol.step(f"{r1}+{r2}", "together the machines handle {calc} {things} per {unit}.")
        sol.step(f"{total}/{rate}", "so {total} {things} take {calc} {unit}s.")
        return question, sol
    base, third, things = rng.choice(_TASKS)
    ha, hb = rng.choice(_TOGETHER_HOURS)
    lcm = math.lcm(ha, hb)
    least = 2 if lcm < 2 * max(ha, hb) else 1  # each worker does at least 2 per hour
    total = lcm * rng.randint(least, max(least, 60 // lcm))
    f = dict(common, base=base, third=third, things=things, ha=ha, hb=hb, total=total)
    question = _ask(
        rng,
        (
            "{a.name} can {base} {total} {things} in {ha} hours. {b.name} can {base} {total} {things} in {hb} hours. "
            "Working together, how many hours will it take them to {base} {total} {things}?",
            "It takes {a.name} {ha} hours to {base} {total} {things} and {b.name} {hb} hours to do the same. If they "
            "work side by side, how many hours will the {total} {things} take?",
            "{a.name} {third} {total} {things} in {ha} hours, while {b.name} needs {hb} hours for the same {total}. "
            "How long, in hours, will the two of them need together?",
        ),
        f,
    )
    sol = _Solution(f)
    ra = sol.step(f"{total}/{ha}", "{a.name} does {calc} {things} per hour.")
    rb = sol.step(f"{total}/{hb}", "{b.name} does {calc} {things} per hour.")
    rate = sol.step(f"{ra}+{rb}", "together they do {calc} {things} per hour.")
    sol.step(f"{total}/{rate}", "so they need {calc} hours.")
    return question, sol


def _percent_discount(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    pct = rng.choice((10, 15, 20, 25, 30, 40, 50))
    price = _multiple_of(rng, 20, 20, 300)
    count = rng.randint(2, 5)
    f = dict(p=p, item=rng.choice(_BIG_ITEMS), pct=pct, price=price, count=count)
    kind = rng.randrange(3)
    questions = (
        (
            "A {item} costs ${price}. It is on sale for {pct}% off. What is the sale price of the {item}?",
            "{p.name} wants a {item} that normally sells for ${price}. The store is taking {pct}% off everything. "
            "How much will {p.name} pay?",
            "The price tag on a {item} says ${price}, and a coupon gives {pct}% off. How many dollars does the {item} "
            "cost with the coupon?",
        ),
        (
            "A {item} usually costs ${price}. During a sale everything is {pct}% off. How much do {count} of them "
            "cost during the sale?",
            "{p.name} buys {count} gifts, each a {item} priced at ${price}, with a {pct}% discount on each. How "
            "much does {p.name} spend?",
        ),
        (
            "Last year a {item} cost ${price}. This year the price went up by {pct}%. What does the {item} cost now?",
            "{p.name} sells a {item} for ${price} but decides to raise the price by {pct}%. What is the new price?",
        ),
    )
    question = _ask(rng, questions[kind], f)
    sol = _Solution(f)
    change = sol.step(f"{price}*{pct}/100", f"the {'increase' if kind == 2 else 'discount'} is {{calc}}.", money=True)
    if kind == 2:
        sol.step(f"{price}+{change}", "the new price is {calc}.", money=True)
        return question, sol
    sale = sol.step(f"{price}-{change}", ("the sale price is {calc}.", "each one costs {calc}.")[kind], money=True)
    if kind == 1:
        sol.step(f"{sale}*{count}", "{count} of them cost {calc}.", money=True)
    return question, sol


def _fraction_of_quantity(rng: random.Random) -> _Problem:
    p, friend = _people(rng, 2)
    things = rng.choice(_COLLECTIBLES + _FOODS)
    (num, den), words = rng.choice(list(_FRACTIONS.items()))
    part = rng.choice((2, 3, 4, 5))
    total = den * part * rng.randint(2, max(2, 120 // (den * part)))
    f = dict(p=p, q=friend, things=things, words=words, part=part, total=total)
    question = _ask(
        rng,
        (
            "{p.name} has {total} {things}. {p.He} give{p.s} {words} of them to {q.name}, and then {p.he} give{p.s} "
            "1/{part} of what is left to a neighbor. How many {things} {p.does} {p.name} have now?",
            "There were {total} {things} in a jar. {p.name} took {words} of them. Then {q.name} took 1/{part} of the "
            "{things} that remained. How many {things} are still in the jar?",
            "{p.name} collected {total} {things}. {p.He} used {words} of them for a project and shared 1/{part} of "
            "the rest with {q.name}. How many {things} {p.does} {p.he} keep?",
        ),
        f,
    )
    sol = _Solution(f)
    expr = f"{total}/{den}" if num == 1 else f"{total}*{num}/{den}"
    first = sol.step(expr, "{words} of {total} is {calc} {things}.")
    rest = sol.step(f"{total}-{first}", "that leaves {calc} {things}.")
    second = sol.step(f"{rest}/{part}", "1/{part} of those is {calc} {things}.")
    sol.step(f"{rest}-{second}", "so {calc} {things} are left.")
    return question, sol


def _division_remainder(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    size = rng.randint(4, 12)
    full, extra = rng.randint(2, 15), rng.randint(2, size - 1)
    count = size * full + extra
    common: dict[str, object] = dict(p=p, size=size, full=full, count=count)
    kind = rng.randrange(3)
    if kind == 2:
        things = rng.choice(_COLLECTIBLES + _FOODS)
        f = dict(common, things=things)
        question = _ask(
            rng,
            (
                "{p.name} has {count} {things} and shares them equally among {size} friends, giving each friend as "
                "many as possible. How many {things} are left over?",
                "{count} {things} are split evenly between {size} children so that each child gets the same whole "
                "number. How many {things} remain?",
                "{p.name} wants to give each of {size} classmates the same number of {things}. {p.He} {p.has} {count} "
                "{things}. After giving out as many as {p.he} can, how many {things} {p.does} {p.he} have left?",
            ),
            f,
        )
        sol = _Solution(f)
        sol.say("each person can get {full} {things}.")
        given = sol.step(f"{size}*{full}", "{size} people get {calc} {things} in all.")
        sol.step(f"{count}-{given}", "so {calc} {things} are left over.")
        return question, sol
    if kind == 0:
        things = rng.choice(_FOODS)
        box = rng.choice(_CONTAINERS)
        f = dict(common, things=things, box=box, boxes=_CONTAINER_PLURAL.get(box, box + "s"))
        question = _ask(
            rng,
            (
                "{p.name} baked {count} {things}. Each {box} holds {size} {things}. How many {boxes} does {p.name} "
                "need to pack all of them?",
                "A shop has {count} {things} to pack into {boxes} of {size}. How many {boxes} are needed so that no "
                "{things} are left out?",
                "{p.name} is packing {count} {things} into {boxes}. A {box} fits {size}. What is the smallest number "
                "of {boxes} {p.he} can use?",
            ),
            f,
        )
    else:
        people, seat = rng.choice(_GROUPS)
        f = dict(common, things=people, box=seat, boxes=seat + "s")
        question = _ask(
            rng,
            (
                "{count} {things} are going on a trip. Each {box} holds {size} {things}. How many {boxes} are needed?",
                "{p.name} is organizing {count} {things}. At most {size} {things} fit in one {box}. How many {boxes} "
                "{p.does} {p.he} need so that everyone has a place?",
                "There are {count} {things} and every {box} has room for {size}. What is the fewest number of {boxes} "
                "that can hold all of them?",
            ),
            f,
        )
    sol = _Solution(f)
    filled = sol.step(f"{size}*{full}", "{full} full {boxes} hold {calc} {things}.")
    sol.step(f"{count}-{filled}", "that leaves {calc} {things}, which need one more {box}.")
    sol.step(f"{full}+1", "so {calc} {boxes} are needed.")
    return question, sol


def _ages(rng: random.Random) -> _Problem:
    a, b = _people(rng, 2)
    young = rng.randint(4, 15)
    gap, years, times = rng.randint(2, 12), rng.randint(2, 10), rng.randint(2, 4)
    f = dict(a=a, b=b, young=young, gap=gap, years=years, times=times, total=2 * young + gap)
    sol = _Solution(f)
    kind = rng.randrange(3)
    if kind == 0:
        question = _ask(
            rng,
            (
                "{a.name} is {gap} years older than {b.name}. {b.name} is {young} years old. What will the sum of "
                "their ages be in {years} years?",
                "{b.name} is {young}, and {a.name} is {gap} years older. In {years} years, how old will they be "
                "together?",
            ),
            f,
        )
        old = sol.step(f"{young}+{gap}", "{a.name} is {calc} years old.")
        later_a = sol.step(f"{old}+{years}", "in {years} years {a.name} will be {calc}.")
        later_b = sol.step(f"{young}+{years}", "{b.name} will be {calc}.")
        sol.step(f"{later_a}+{later_b}", "together they will be {calc} years old.")
    elif kind == 1:
        question = _ask(
            rng,
            (
                "{a.name} is {times} times as old as {b.name}. If {b.name} is {young} years old, how old will "
                "{a.name} be in {years} years?",
                "{b.name} is {young} years old, and {a.name}'s age is {times} times {b.name}'s. How old will {a.name} "
                "be {years} years from now?",
            ),
            f,
        )
        old = sol.step(f"{young}*{times}", "{a.name} is {calc} years old now.")
        sol.step(f"{old}+{years}", "in {years} years {a.name} will be {calc}.")
    else:
        question = _ask(
            rng,
            (
                "The ages of {a.name} and {b.name} add up to {total}. {a.name} is {gap} years older than {b.name}. "
                "How old is {b.name}?",
                "Together {a.name} and {b.name} are {total} years old, and {b.name} is {gap} years younger than "
                "{a.name}. What is {b.name}'s age?",
            ),
            f,
        )
        twice = sol.step(f"{2 * young + gap}-{gap}", "without the {gap}-year gap, the ages add up to {calc}.")
        sol.step(f"{twice}/2", "so {b.name} is {calc} years old.")
    return question, sol


def _savings(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    goal = rng.choice(_GOALS)
    per_week, weeks, start = rng.randint(3, 25), rng.randint(3, 12), rng.randint(5, 60)
    short = rng.randint(5, 80)
    spend = rng.randint(1, per_week * weeks - 1)
    f = dict(
        p=p,
        goal=goal,
        s=per_week,
        w=weeks,
        start=start,
        price=start + per_week * weeks,
        price2=start + per_week * weeks + short,
        spend=spend,
    )
    sol = _Solution(f)
    kind = rng.randrange(3)
    if kind == 0:
        question = _ask(
            rng,
            (
                "{p.name} wants a {goal} that costs ${price}. {p.He} already {p.has} ${start} and save{p.s} ${s} "
                "every week. How many weeks will it take {p.him} to have enough?",
                "A {goal} costs ${price}. {p.name} has ${start} saved and puts away ${s} each week. After how many "
                "weeks can {p.name} buy the {goal}?",
            ),
            f,
        )
        need = sol.step(f"{f['price']}-{start}", "{p.name} still needs {calc}.", money=True)
        sol.step(f"{need}/{per_week}", "at ${s} a week that takes {calc} weeks.")
    elif kind == 1:
        question = _ask(
            rng,
            (
                "{p.name} saves ${s} a week for {w} weeks. Then {p.he} spend{p.s} ${spend} on a present for a friend. "
                "How much money {p.does} {p.he} have left?",
                "Every week for {w} weeks, {p.name} puts ${s} into a piggy bank. At the end, {p.he} take{p.s} out "
                "${spend} for a trip. How many dollars are still in the piggy bank?",
            ),
            f,
        )
        saved = sol.step(f"{per_week}*{weeks}", "{p.name} saves {calc}.", money=True)
        sol.step(f"{saved}-{spend}", "after spending ${spend}, {calc} is left.", money=True)
    else:
        question = _ask(
            rng,
            (
                "{p.name} has ${start} and saves ${s} a week for {w} weeks to buy a {goal} that costs ${price2}. How "
                "much more money {p.does} {p.he} need after those weeks?",
                "A {goal} costs ${price2}. {p.name} starts with ${start} and adds ${s} every week. After {w} weeks, "
                "how many more dollars does {p.name} need?",
            ),
            f,
        )
        saved = sol.step(f"{per_week}*{weeks}", "in {w} weeks {p.name} saves {calc}.", money=True)
        has = sol.step(f"{start}+{saved}", "{p.he} then {p.has} {calc}.", money=True)
        sol.step(f"{f['price2']}-{has}", "{p.he} still need{p.s} {calc}.", money=True)
    return question, sol


def _rectangle(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    units, unit = rng.choice(_LENGTH_UNITS)
    kind = rng.randrange(3)  # 0: fence around, 1: floor covering, 2: area left around a square
    length, width = sorted(rng.sample(range(3, 17 if kind == 1 else 41), 2), reverse=True)
    cost, side = rng.randint(2, 6 if kind == 1 else 15), rng.randint(2, min(width, 8) - 1)
    f = dict(
        p=p,
        yard=rng.choice(_YARDS),
        room=rng.choice(_ROOMS),
        units=units,
        unit=unit,
        l=length,
        w=width,
        c=cost,
        side=side,
    )
    sol = _Solution(f)
    if kind == 0:
        question = _ask(
            rng,
            (
                "{p.name}'s {yard} is a rectangle {l} {units} long and {w} {units} wide. Fencing costs ${c} per "
                "{unit}. How much will it cost to put a fence all the way around it?",
                "A rectangular {yard} measures {l} {units} by {w} {units}. {p.name} wants to fence it in, and fence "
                "costs ${c} for each {unit}. What is the total cost of the fence?",
            ),
            f,
        )
        perimeter = sol.step(f"2*{length}+2*{width}", "the perimeter is {calc} {units}.")
        sol.step(f"{perimeter}*{cost}", "the fence costs {calc}.", money=True)
    elif kind == 1:
        question = _ask(
            rng,
            (
                "{p.name} is putting new carpet in a {room} that is {l} {units} long and {w} {units} wide. Carpet "
                "costs ${c} per square {unit}. How much will the carpet cost?",
                "The floor of a rectangular {room} is {l} {units} by {w} {units}. Tiles cost ${c} for each square "
                "{unit}. How many dollars does it cost to tile the whole floor?",
            ),
            f,
        )
        area = sol.step(f"{length}*{width}", "the floor is {calc} square {units}.")
        sol.step(f"{area}*{cost}", "covering it costs {calc}.", money=True)
    else:
        question = _ask(
            rng,
            (
                "A rectangular {yard} is {l} {units} long and {w} {units} wide. {p.name} builds a square shed {side} "
                "{units} on each side in it. How many square {units} of the {yard} are not covered by the shed?",
                "{p.name} has a {yard} measuring {l} by {w} {units}. A square sandbox {side} {units} wide sits "
                "inside. What area, in square {units}, is left around the sandbox?",
            ),
            f,
        )
        area = sol.step(f"{length}*{width}", "the {yard} has an area of {calc} square {units}.")
        taken = sol.step(f"{side}*{side}", "the square takes up {calc} square {units}.")
        sol.step(f"{area}-{taken}", "so {calc} square {units} are left.")
    return question, sol


def _compare_collections(rng: random.Random) -> _Problem:
    a, b, c = _people(rng, 3)
    things = rng.choice(_COLLECTIBLES)
    base, times = rng.randint(5, 60), rng.randint(2, 5)
    fewer = rng.randint(1, min(20, base * times - 2))  # C still has at least 2
    more = rng.randint(1, min(30, base * (times - 1) - 2))  # B has at least 2 more than C
    f = dict(a=a, b=b, c=c, things=things, x=base, k=times, fewer=fewer, more=more)
    sol = _Solution(f)
    second = sol.step(f"{base}*{times}", "{b.name} has {calc} {things}.")
    if rng.random() < 0.5:
        question = _ask(
            rng,
            (
                "{a.name} has {x} {things}. {b.name} has {k} times as many {things} as {a.name}, and {c.name} has "
                "{fewer} fewer than {b.name}. How many {things} do the three of them have altogether?",
                "{b.name} owns {k} times as many {things} as {a.name}, who owns {x}. {c.name} owns {fewer} fewer "
                "{things} than {b.name}. How many {things} do they have in total?",
                "In a club, {a.name} brought {x} {things}, {b.name} brought {k} times that many, and {c.name} brought "
                "{fewer} less than {b.name}. How many {things} were brought in all?",
            ),
            f,
        )
        third = sol.step(f"{second}-{fewer}", "{c.name} has {calc} {things}.")
        sol.step(f"{base}+{second}+{third}", "altogether they have {calc} {things}.")
    else:
        question = _ask(
            rng,
            (
                "{a.name} has {x} {things} and {b.name} has {k} times as many. {c.name} has {more} more {things} than "
                "{a.name}. How many more {things} does {b.name} have than {c.name}?",
                "{b.name}'s collection is {k} times the size of {a.name}'s {x} {things}. {c.name} has {more} more "
                "than {a.name}. How many {things} does {b.name} have beyond {c.name}'s?",
            ),
            f,
        )
        third = sol.step(f"{base}+{more}", "{c.name} has {calc} {things}.")
        sol.step(f"{second}-{third}", "{b.name} has {calc} more {things} than {c.name}.")
    return question, sol


def _recipe_scaling(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    first = rng.choice(_INGREDIENTS)
    makes = rng.choice((2, 3, 4, 6, 8, 10, 12))
    amount = rng.randint(2, 6)
    whole_batches = [makes * k for k in range(2, 7)]
    part_batches = [t for t in range(makes + 1, 61) if amount * t % makes == 0 and t % makes != 0]
    kind = rng.randrange(3) if part_batches else rng.randrange(2)
    want = rng.choice(part_batches if kind == 2 else whole_batches)
    have = rng.randint(2, amount * want // makes - 1) if kind == 1 else 0
    f = dict(p=p, dish=rng.choice(_DISHES), first=first, makes=makes, a=amount, want=want, have=have)
    questions = (
        (
            "A recipe for {makes} {dish} uses {a} {first}. {p.name} wants to make {want} {dish}. How many {first} "
            "{p.does} {p.he} need?",
            "{p.name}'s recipe makes {makes} {dish} with {a} {first}. How many {first} are needed for {want} {dish}?",
        ),
        (
            "{p.name} wants to make {want} {dish}. The recipe uses {a} {first} for every {makes} {dish}, and "
            "{p.he} only {p.has} {have} {first}. How many more {first} {p.does} {p.he} need?",
            "A batch of {makes} {dish} takes {a} {first}. {p.name} is making {want} {dish} for a party and "
            "already has {have} {first} at home. How many more {first} must {p.he} get?",
        ),
        (
            "A recipe needs {a} {first} to make {makes} {dish}. How many {first} are needed to make {want} {dish}?",
            "{p.name} uses {a} {first} for every {makes} {dish}. If {p.he} make{p.s} {want} {dish}, how many {first} "
            "{p.does} {p.he} use?",
        ),
    )
    question = _ask(rng, questions[kind], f)
    sol = _Solution(f)
    if kind == 2:
        sol.step(f"{amount}*{want}/{makes}", "for {want} {dish}, {p.name} needs {calc} {first}.")
        return question, sol
    scale = sol.step(f"{want}/{makes}", "{want} {dish} is {calc} batches.")
    need = sol.step(f"{amount}*{scale}", "that takes {calc} {first}.")
    if kind == 1:
        sol.step(f"{need}-{have}", "{p.he} {p.has} {have}, so {p.he} need{p.s} {calc} more.")
    return question, sol


_TIP_QUESTIONS: tuple[tuple[str, ...], ...] = (
    (
        "{p.name}'s {meal} at {place} costs ${bill}. {p.He} want{p.s} to leave a {pct}% tip. How much {p.does} "
        "{p.he} pay altogether?",
        "The bill for {meal} at {place} is ${bill}. {p.name} adds a {pct}% tip. What is the total {p.name} pays?",
    ),
    (
        "{p.name} and {others} friends eat {meal} at {place}. The bill is ${bill} and they add a {pct}% tip. If "
        "they split the total evenly, how much does each person pay?",
        "The {meal} bill for {k} people at {place} comes to ${bill}. They leave a {pct}% tip and share the cost "
        "equally. How many dollars does each of them pay?",
    ),
    (
        "At {place}, {p.name} orders three dishes for {meal} costing ${m1}, ${m2} and ${m3}. {p.He} leave{p.s} a "
        "{pct}% tip. How much {p.does} {p.he} pay in total?",
        "{p.name} buys {meal} for the family at {place}: one meal is ${m1}, another is ${m2} and a third is ${m3}. "
        "With a {pct}% tip, how many dollars does the meal cost?",
    ),
)


def _restaurant_tip(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    pct = rng.choice((10, 15, 20, 25))
    bill = _multiple_of(rng, 20, 20, 200)
    splits = [k for k in range(3, 9) if bill * (100 + pct) // 100 % k == 0]
    kind = rng.randrange(3) if splits else rng.choice((0, 2))
    friends = rng.choice(splits) if kind == 1 else 1
    m1, m2 = rng.randint(6, 30), rng.randint(6, 30)
    m3 = 20 - (m1 + m2) % 20 + rng.choice((0, 20))  # makes the three dishes add up to a multiple of 20
    f = dict(
        p=p,
        meal=rng.choice(_MEALS),
        place=rng.choice(_PLACES_TO_EAT),
        pct=pct,
        bill=bill,
        k=friends,
        others=friends - 1,
        m1=m1,
        m2=m2,
        m3=m3,
    )
    question = _ask(rng, _TIP_QUESTIONS[kind], f)
    sol = _Solution(f)
    if kind == 2:
        bill = sol.step(f"{m1}+{m2}+{m3}", "the food costs {calc}.", money=True)
    tip = sol.step(f"{bill}*{pct}/100", "the tip is {calc}.", money=True)
    paid = sol.step(f"{bill}+{tip}", "the total is {calc}.", money=True)
    if kind == 1:
        sol.step(f"{paid}/{friends}", "each of the {k} people pays {calc}.", money=True)
    return question, sol


def _hourly_overtime(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    wage = 2 * rng.randint(5, 15)
    daily = rng.random() < 0.5
    limit = 8 if daily else 40
    hours = limit + rng.randint(2, 4 if daily else 12)
    f = dict(
        p=p,
        job=rng.choice(_JOBS),
        wage=wage,
        limit=limit,
        hours=hours,
        period="day" if daily else "week",
        on="on Saturday" if daily else "last week",
    )
    question = _ask(
        rng,
        (
            "{p.name} works as {job} and earns ${wage} an hour. For every hour over {limit} hours in a {period}, "
            "{p.he} {p.be} paid 1.5 times the normal rate. {p.name} worked {hours} hours {on}. How much did {p.he} "
            "earn?",
            "As {job}, {p.name} makes ${wage} per hour, plus time and a half for hours beyond {limit} in one "
            "{period}. If {p.name} worked {hours} hours {on}, what was {p.his} pay?",
            "{p.name} is paid ${wage} an hour as {job}. Overtime, anything past {limit} hours a {period}, pays one "
            "and a half times as much. How many dollars did {p.name} make working {hours} hours {on}?",
        ),
        f,
    )
    sol = _Solution(f)
    regular = sol.step(f"{wage}*{limit}", "the first {limit} hours pay {calc}.", money=True)
    rate = sol.step(f"{wage}*3/2", "the overtime rate is {calc} per hour.", money=True)
    extra = sol.step(f"{hours}-{limit}", "{p.name} worked {calc} hours of overtime.")
    over = sol.step(f"{extra}*{rate}", "overtime pays {calc}.", money=True)
    sol.step(f"{regular}+{over}", "in total {p.name} earned {calc}.", money=True)
    return question, sol


def _inventory(rng: random.Random) -> _Problem:
    shop, stock, crates = rng.choice(_SHOPS)
    start = rng.randint(60, 400)
    day1, day2 = rng.sample(_WEEKDAYS, 2)
    sold1 = rng.randint(5, start // 3)
    sold2 = rng.randint(5, start // 3)
    boxes, per_box = rng.randint(2, 9), rng.choice((6, 10, 12, 20, 24, 25, 30))
    (p,) = _people(rng, 1)
    f = dict(
        p=p,
        shop=shop,
        stock=stock,
        crates=crates,
        start=start,
        d1=day1,
        d2=day2,
        s1=sold1,
        s2=sold2,
        n=boxes,
        per=per_box,
    )
    question = _ask(
        rng,
        (
            "A {shop} had {start} {stock}. It sold {s1} on {d1} and {s2} on {d2}. Then a delivery of {n} {crates} "
            "with {per} {stock} each arrived. How many {stock} does the {shop} have now?",
            "{p.name} manages a {shop} that started the week with {start} {stock}. Customers bought {s1} on {d1} and "
            "{s2} on {d2}. {p.name} then unpacked {n} {crates} holding {per} {stock} apiece. How many {stock} are in "
            "stock?",
            "There are {start} {stock} at the {shop}. After selling {s1} on {d1} and {s2} on {d2}, the owner, "
            "{p.name}, orders {n} {crates} of {per}. Once they arrive, how many {stock} are there?",
        ),
        f,
    )
    sol = _Solution(f)
    sold = sol.step(f"{sold1}+{sold2}", "the {shop} sold {calc} {stock}.")
    left = sol.step(f"{start}-{sold}", "that left {calc} {stock}.")
    delivered = sol.step(f"{boxes}*{per_box}", "the delivery brought {calc} {stock}.")
    sol.step(f"{left}+{delivered}", "now there are {calc} {stock}.")
    return question, sol


def _reading_pages(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    first_rate, days = rng.randint(5, 30), rng.randint(2, 7)
    second_rate, more_days = rng.randint(first_rate + 1, first_rate + 25), rng.randint(2, 8)
    pages = first_rate * days + second_rate * more_days
    f = dict(p=p, book=rng.choice(_BOOKS), pages=pages, r=first_rate, d=days, r2=second_rate)
    question = _ask(
        rng,
        (
            "{p.name} is reading a {pages}-page {book}. {p.He} read {r} pages a day for {d} days. If {p.he} now "
            "read{p.s} {r2} pages a day, how many more days will it take to finish the {book}?",
            "A {book} has {pages} pages. {p.name} reads {r} pages every day for the first {d} days, then speeds up to "
            "{r2} pages a day. How many more days does {p.name} need to finish?",
            "For {d} days {p.name} read {r} pages a day of a {book} that is {pages} pages long. Reading {r2} pages a "
            "day from now on, in how many days will {p.he} reach the end?",
        ),
        f,
    )
    sol = _Solution(f)
    read = sol.step(f"{first_rate}*{days}", "in {d} days {p.name} read {calc} pages.")
    left = sol.step(f"{pages}-{read}", "{calc} pages are left.")
    sol.step(f"{left}/{second_rate}", "at {r2} pages a day that takes {calc} days.")
    return question, sol


def _test_average(rng: random.Random) -> _Problem:
    (p,) = _people(rng, 1)
    count = rng.randint(3, 5)
    target = rng.randint(70, 92)
    k = count - 1
    need = rng.randint(max(50, target * count - 100 * k), min(100, target * count - 50 * k))
    rest = target * count - need  # what the other k scores (each 50..100) add up to
    scores = [rest // k + (m < rest % k) for m in range(k)]
    for _ in range(k):  # spread the scores out without changing their sum
        i, j = rng.sample(range(k), 2)
        shift = rng.randint(0, min(100 - scores[i], scores[j] - 50, 15))
        scores[i], scores[j] = scores[i] + shift, scores[j] - shift
    f = dict(p=p, tests=rng.choice(_TESTS), n=count, k=k, target=target,
             given=", ".join(map(str, scores[:-1])), last=scores[-1])  # fmt: skip
    question = _ask(
        rng,
        (
            "{p.name} takes {n} {tests} this term. {p.His} scores on the first {k} were {given} and {last}. What "
            "score {p.does} {p.he} need on the last one to average {target} across all {n}?",
            "On {k} {tests}, {p.name} scored {given} and {last}. There is one more, for {n} in all. What must "
            "{p.name} score on it for an average of exactly {target}?",
            "To get an average of {target} on {n} {tests}, what does {p.name} need on the final one if {p.his} other "
            "scores are {given} and {last}?",
        ),
        f,
    )
    sol = _Solution(f)
    needed_total = sol.step(f"{target}*{count}", "an average of {target} over {n} {tests} means {calc} points.")
    so_far = sol.step("+".join(map(str, scores)), "so far {p.name} has {calc} points.")
    sol.step(f"{needed_total}-{so_far}", "{p.he} need{p.s} {calc} on the last one.")
    return question, sol


_GENERATORS: dict[str, Callable[[random.Random], _Problem]] = {
    "shopping_change": _shopping_change,
    "unit_price": _unit_price,
    "speed_distance_time": _speed_distance_time,
    "work_rate": _work_rate,
    "percent_discount": _percent_discount,
    "fraction_of_quantity": _fraction_of_quantity,
    "division_remainder": _division_remainder,
    "ages": _ages,
    "savings": _savings,
    "rectangle_area_perimeter": _rectangle,
    "compare_collections": _compare_collections,
    "recipe_scaling": _recipe_scaling,
    "restaurant_tip": _restaurant_tip,
    "hourly_overtime": _hourly_overtime,
    "inventory": _inventory,
    "reading_pages": _reading_pages,
    "test_average": _test_average,
}

#: The ``problem_type`` values :func:`make_word_problems` produces.
PROBLEM_TYPES: tuple[str, ...] = tuple(_GENERATORS)

_FEATURES = datasets.Features(
    {name: datasets.Value("string") for name in ("question", "answer", "final_answer", "problem_type")}
)


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    return int(value)


def _family_counts(n: int, family_weights: Mapping[str, float]) -> dict[str, int]:
    """Rows per family: ``n`` split in proportion to the weights by largest remainder (ties: PROBLEM_TYPES order)."""
    if not isinstance(family_weights, Mapping):
        kind = type(family_weights).__name__
        raise TypeError(f"family_weights must be a mapping problem_type -> weight, got {kind}.")
    unknown = sorted(set(family_weights) - set(PROBLEM_TYPES))
    if unknown:
        raise ValueError(
            f"family_weights names unknown problem_type(s) {unknown}; the families are {list(PROBLEM_TYPES)}."
        )
    weights = {}
    for family in PROBLEM_TYPES:
        value = family_weights.get(family, 1.0)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"family_weights[{family!r}] must be a finite number >= 0, got {value!r}.")
        weights[family] = float(value)
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("family_weights gives every problem_type weight 0: at least one family needs weight > 0.")
    exact = {family: n * w / total for family, w in weights.items()}
    counts = {family: math.floor(x) for family, x in exact.items()}
    by_remainder = sorted(PROBLEM_TYPES, key=lambda f: (-(exact[f] - counts[f]), PROBLEM_TYPES.index(f)))
    for family in by_remainder[: n - sum(counts.values())]:
        counts[family] += 1
    return counts


def make_word_problem(problem_type: str, *, seed: int | str) -> dict[str, str]:
    """One fresh problem of family ``problem_type``, drawn from its own ``random.Random(seed)``.

    Example:
        >>> row = make_word_problem("ages", seed=3)
        >>> sorted(row)
        ['answer', 'final_answer', 'problem_type', 'question']
    """
    if problem_type not in _GENERATORS:
        raise ValueError(f"Unknown problem_type {problem_type!r}; the families are {list(PROBLEM_TYPES)}.")
    question, solution = _GENERATORS[problem_type](random.Random(f"{_SALT}:one:{problem_type}:{seed}"))
    answer, final = solution.render()
    return {"question": question, "answer": answer, "final_answer": final, "problem_type": problem_type}


def make_word_problems(
    n: int = 1000, *, seed: int = 0, family_weights: Mapping[str, float] | None = None
) -> datasets.Dataset:
    """Make ``n`` grade-school math word problems with GSM8K-style worked solutions.

    Problem types take turns (in an order shuffled by ``seed``), so each of the :data:`PROBLEM_TYPES` gets
    ``n / len(PROBLEM_TYPES)`` rows, give or take one. Row ``i`` depends only on ``(seed, i)``.

    With ``family_weights`` (``problem_type -> weight >= 0``; a family not named weighs 1), family ``f`` gets
    ``n * w_f / sum(w)`` rows (largest remainder, so the counts add up to ``n`` exactly) in an order shuffled by
    ``seed``; row ``i`` is still drawn from the generator seeded by ``(seed, i)``. A family of weight 0 is left out.
    This is how a pool with a planted imbalance is made: ``family_weights={"ages": 0.1}`` makes ``ages`` ten times
    rarer than any other family.

    Args:
        n: Number of problems, at least 1.
        seed: Any int; the same ``(n, seed, family_weights)`` always gives the same dataset.
        family_weights: Optional relative frequency per ``problem_type``; ``None`` (default) gives equal turns.

    Returns:
        A :class:`datasets.Dataset` with string columns ``question``, ``answer`` (the worked solution, whose last
        line is ``#### N``), ``final_answer`` (``N``) and ``problem_type`` (the family label).

    Example:
        >>> ds = make_word_problems(3, seed=7)
        >>> ds.column_names
        ['question', 'answer', 'final_answer', 'problem_type']
        >>> ds[0]["answer"].splitlines()[-1] == "#### " + ds[0]["final_answer"]
        True
        >>> rare = make_word_problems(170, seed=0, family_weights={"ages": 0.1})
        >>> rare["problem_type"].count("ages")
        1
    """
    n = _check_int("n", n)
    seed = _check_int("seed", seed)
    if n < 1:
        raise ValueError(f"n must be >= 1 (the number of problems to make), got {n}.")
    if family_weights is None:
        order = list(PROBLEM_TYPES)
        random.Random(f"{_SALT}:{seed}:order").shuffle(order)
        families = [order[i % len(order)] for i in range(n)]
    else:
        counts = _family_counts(n, family_weights)
        families = [family for family in PROBLEM_TYPES for _ in range(counts[family])]
        random.Random(f"{_SALT}:{seed}:weighted-order").shuffle(families)
    rows: dict[str, list[str]] = {name: [] for name in _FEATURES}
    for i, problem_type in enumerate(families):
        question, solution = _GENERATORS[problem_type](random.Random(f"{_SALT}:{seed}:{i}"))
        answer, final = solution.render()
        rows["question"].append(question)
        rows["answer"].append(answer)
        rows["final_answer"].append(final)
        rows["problem_type"].append(problem_type)
    return datasets.Dataset.from_dict(rows, features=_FEATURES)
