"""A synthetic bookstore with hidden tastes, generated deterministically from a seed.

Pure numpy: the ``seed_demo`` command turns what this module yields into rows.

The store is shaped like a real one: a few genres and authors sell most copies (long tails),
every customer has one to three favourite genres and a few favourite authors that they do
not tell anyone, page views are far more common than purchases, purchases are mostly of
books the customer looked at, and everything happens over the last year.  Because tastes
drive most of the browsing and even more of the buying, a recommender that learns them
clearly beats "most popular" on this data, while popularity still explains a good part of
it, as in a real shop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from recommendations.ml.ids import distinct

GENRES = [  # roughly from the best-selling genre down
    "Fantasy", "Mystery", "Romance", "Thriller", "Science Fiction", "Literary Fiction",
    "Crime", "Historical Fiction", "Young Adult", "Biography", "Children's", "Horror",
    "History", "Self-Help", "Popular Science", "Classics", "Business", "Cookery",
    "Graphic Novels", "Travel", "Philosophy", "Humour", "Poetry", "Art & Design",
]  # fmt: skip

FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonas",
    "Kira", "Leo", "Maya", "Nils", "Olga", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Uma",
    "Victor", "Wendy", "Xavier", "Yara", "Zoe", "Adrian", "Bianca", "Carlos", "Dina",
    "Emil", "Frida", "Gustav", "Hana", "Ivan", "Julia", "Karl", "Lena", "Marco", "Nora",
    "Oscar", "Petra", "Rafael", "Sofia", "Tomas", "Ulla", "Vera", "Walter", "Yusuf", "Zara",
    "Amira", "Bruno", "Chloe", "Dmitri", "Esther", "Fabian", "Greta", "Henrik", "Ines", "Jakob",
]  # fmt: skip

LAST_NAMES = [
    "Abbott", "Berg", "Castillo", "Dahl", "Eriksen", "Fischer", "Garcia", "Holm", "Ivanova",
    "Jensen", "Keller", "Lindqvist", "Moreau", "Novak", "Olsen", "Petrov", "Quist", "Rossi",
    "Schmidt", "Torres", "Ulrich", "Vance", "Weber", "Yilmaz", "Zimmer", "Andersson", "Blake",
    "Costa", "Dubois", "Evans", "Ferreira", "Gallo", "Hughes", "Ibsen", "Jovanovic", "Kowalski",
    "Larsen", "Martin", "Nakamura", "Ortega", "Park", "Quinn", "Reyes", "Silva", "Tanaka",
    "Usman", "Varga", "Wolf", "Young", "Zhang", "Alvarez", "Brooks", "Chen", "Dalton", "Engel",
    "Fontaine", "Grant", "Hoffmann", "Iqbal", "Jansen", "Kim", "Lopez", "Meyer", "Nielsen",
    "Okafor", "Patel", "Ramos", "Sato", "Thorne", "Underwood", "Vogel", "Ward", "Xu", "Yates",
    "Zeller", "Auer", "Bianchi", "Cruz", "Doyle", "Ekström",
]  # fmt: skip

TITLE_ADJECTIVES = [
    "Silent", "Hidden", "Last", "Broken", "Golden", "Distant", "Burning", "Forgotten", "Quiet",
    "Endless", "Crimson", "Secret", "Winter", "Wild", "Glass", "Iron", "Paper", "Midnight",
    "Lost", "Bright", "Hollow", "Northern", "Salt", "Velvet", "Shattered", "Gentle", "Restless",
]  # fmt: skip

TITLE_NOUNS = [  # singular: plural() makes "Compasses" and "Libraries"
    "River", "Garden", "Kingdom", "Letter", "Shore", "Mirror", "Harbour", "Orchard", "Empire",
    "Machine", "Forest", "Tide", "Lantern", "Archive", "Island", "Compass", "Crown", "Summer",
    "Signal", "Map", "Bridge", "Station", "House", "Sky", "Storm", "Library", "Voyage", "Clock",
]  # fmt: skip

FORMATS = np.array(["printedbook", "ebook", "audiobook"])
FORMAT_SHARE = np.array([0.6, 0.3, 0.1])
FORMAT_PRICE = np.array([16.0, 8.0, 21.0])  # median price per format


@dataclass(frozen=True)
class Catalogue:
    """Genres, authors and books, as parallel arrays (row i of each books array is one book)."""

    genre_names: list[str]
    author_names: list[str]
    author_genre: np.ndarray  # home genre of each author
    book_product: list[str]
    book_title: list[str]
    book_author: np.ndarray  # index into author_names
    book_genres: list[tuple[int, ...]]  # indices into genre_names, primary first
    book_format: np.ndarray
    book_price: np.ndarray  # float, two decimals
    book_published: np.ndarray  # datetime64[D]
    book_created: np.ndarray  # datetime64[s]
    book_available: np.ndarray
    book_popularity: np.ndarray  # hidden appeal, > 0


@dataclass(frozen=True)
class Customers:
    usernames: list[str]
    first_names: list[str]
    last_names: list[str]
    joined: np.ndarray  # datetime64[s]
    fav_genres: np.ndarray  # (n, 3), -1 padded
    fav_authors: np.ndarray  # (n, 4), -1 padded
    activity: np.ndarray  # expected number of browsing events


@dataclass(frozen=True)
class Activity:
    """One chunk of customers' history: page views per (customer, book) and purchases."""

    view_user: np.ndarray
    view_book: np.ndarray
    view_count: np.ndarray
    view_first: np.ndarray  # datetime64[s]
    view_last: np.ndarray
    buy_user: np.ndarray
    buy_book: np.ndarray
    buy_quantity: np.ndarray
    buy_time: np.ndarray
    buy_order: np.ndarray  # order number within the chunk, grouped per customer and day


class DemoStore:
    """Generates the store for one seed.  Same arguments, same store."""

    def __init__(self, *, users: int, books: int, interactions: int, seed: int, until: date):
        if users < 1 or books < 1 or interactions < 0:
            raise ValueError("users and books must be at least 1, interactions at least 0")
        self.n_users, self.n_books, self.n_interactions = users, books, interactions
        self.seed = seed
        self.until = np.datetime64(datetime(until.year, until.month, until.day), "s")
        self.year = np.timedelta64(365 * 24 * 3600, "s")
        rng = np.random.default_rng(seed)
        self.catalogue = self._catalogue(rng)
        self.customers = self._customers(rng)
        self._prepare_sampling()

    # -- catalogue --------------------------------------------------------------------------
    def _catalogue(self, rng: np.random.Generator) -> Catalogue:
        n_genres = len(GENRES)
        # Genre popularity: a long tail, in the order of GENRES.
        genre_weight = 1.0 / np.arange(1, n_genres + 1) ** 0.9
        self.genre_weight = genre_weight / genre_weight.sum()

        n_authors = max(3, min(self.n_books, self.n_books // 6 + 2))
        combos = len(FIRST_NAMES) * 27 * len(LAST_NAMES)
        picks = rng.choice(combos, size=n_authors, replace=combos < n_authors)
        author_names = []
        for i, code in enumerate(picks):
            first, rest = divmod(int(code), 27 * len(LAST_NAMES))
            initial, last = divmod(rest, len(LAST_NAMES))
            middle = f" {chr(ord('A') + initial - 1)}." if initial else ""
            name = f"{FIRST_NAMES[first]}{middle} {LAST_NAMES[last]}"
            author_names.append(name if combos >= n_authors else f"{name} {i}")
        author_genre = rng.choice(n_genres, size=n_authors, p=self.genre_weight)
        author_pop = rng.pareto(1.6, size=n_authors) + 0.2

        # Every author writes at least one book; prolific authors are the popular ones.
        extra = rng.choice(n_authors, size=self.n_books - n_authors, p=author_pop / author_pop.sum()) if (
            self.n_books > n_authors
        ) else np.empty(0, dtype=np.int64)
        book_author = np.concatenate([np.arange(min(n_authors, self.n_books)), extra])
        book_author = book_author[rng.permutation(self.n_books)]

        primary = np.where(
            rng.random(self.n_books) < 0.85,
            author_genre[book_author],
            rng.choice(n_genres, size=self.n_books, p=self.genre_weight),
        )
        second = rng.choice(n_genres, size=self.n_books, p=self.genre_weight)
        has_second = (rng.random(self.n_books) < 0.4) & (second != primary)
        book_genres = [
            (int(p), int(s)) if h else (int(p),) for p, s, h in zip(primary, second, has_second, strict=True)
        ]

        fmt = rng.choice(len(FORMATS), size=self.n_books, p=FORMAT_SHARE)
        price = FORMAT_PRICE[fmt] * rng.lognormal(0.0, 0.35, size=self.n_books)
        price = np.maximum(np.floor(price) + 0.99, 0.99).round(2)
        age_days = np.minimum(rng.exponential(8 * 365, size=self.n_books), 75 * 365).astype("int64")
        until_day = self.until.astype("datetime64[D]")
        published = until_day - age_days.astype("timedelta64[D]")
        created = self.until - (rng.random(self.n_books) * 2 * self.year).astype("timedelta64[s]")
        # Books published lately joined the catalogue when they came out.
        recent = published.astype("datetime64[s]") > created
        created = np.where(recent, published.astype("datetime64[s]"), created)
        available = rng.random(self.n_books) >= 0.03
        popularity = rng.lognormal(0.0, 1.3, size=self.n_books) * np.sqrt(author_pop[book_author])

        titles = demo_titles(np.random.default_rng([self.seed, 2]), self.n_books)

        return Catalogue(
            genre_names=list(GENRES),
            author_names=author_names,
            author_genre=author_genre,
            book_product=[str(10000 + i) for i in range(self.n_books)],
            book_title=titles,
            book_author=book_author,
            book_genres=book_genres,
            book_format=FORMATS[fmt],
            book_price=price,
            book_published=published,
            book_created=created,
            book_available=available,
            book_popularity=popularity,
        )

    # -- customers --------------------------------------------------------------------------
    def _customers(self, rng: np.random.Generator) -> Customers:
        n, cat = self.n_users, self.catalogue
        n_genres = len(cat.genre_names)
        first = rng.integers(len(FIRST_NAMES), size=n)
        last = rng.integers(len(LAST_NAMES), size=n)
        first_names = [FIRST_NAMES[i] for i in first]
        last_names = [LAST_NAMES[i] for i in last]
        usernames = [f"{f.lower()}.{l.lower()}{i + 1}" for i, (f, l) in enumerate(zip(first_names, last_names))]
        usernames = [u.replace("ö", "o").replace("ä", "a") for u in usernames]

        fav_genres = np.full((n, 3), -1, dtype=np.int64)
        k = rng.choice([1, 2, 3], size=n, p=[0.45, 0.4, 0.15])
        weights = self.genre_weight**0.6
        weights /= weights.sum()
        for j in range(3):
            draw = rng.choice(n_genres, size=n, p=weights)
            fav_genres[:, j] = np.where(j < k, draw, -1)
        # Duplicates among the drawn favourites simply weigh that genre more.

        # Favourite authors: popular authors of the customer's favourite genres.
        n_authors = len(cat.author_names)
        author_pop = np.bincount(cat.book_author, weights=cat.book_popularity, minlength=n_authors) + 1e-9
        by_genre = {}
        for g in range(n_genres):
            members = np.flatnonzero(cat.author_genre == g)
            if members.size:
                p = author_pop[members]
                by_genre[g] = (members, np.cumsum(p) / p.sum())
        fav_authors = np.full((n, 4), -1, dtype=np.int64)
        n_fav = rng.integers(1, 5, size=n)
        for j in range(4):
            genre = fav_genres[np.arange(n), rng.integers(0, k)]
            u = rng.random(n)
            col = np.full(n, -1, dtype=np.int64)
            for g, (members, cdf) in by_genre.items():
                rows = np.flatnonzero((genre == g) & (j < n_fav))
                if rows.size:
                    col[rows] = members[np.minimum(np.searchsorted(cdf, u[rows]), members.size - 1)]
            fav_authors[:, j] = col

        activity = rng.lognormal(0.0, 1.0, size=n)
        joined = self.until - ((0.05 + rng.random(n) * 1.45) * self.year).astype("timedelta64[s]")
        return Customers(usernames, first_names, last_names, joined, fav_genres, fav_authors, activity)

    def make_demo_customer(self, index: int = 0) -> None:
        """Give one customer a clear, readable taste (fantasy and science fiction) and a busy history."""
        g = {name: i for i, name in enumerate(self.catalogue.genre_names)}
        c = self.customers
        c.usernames[index] = "demo"
        c.first_names[index], c.last_names[index] = "Dana", "Demo"
        c.fav_genres[index] = [g["Fantasy"], g["Science Fiction"], -1]
        authors = np.flatnonzero(np.isin(self.catalogue.author_genre, c.fav_genres[index, :2]))
        pop = np.bincount(self.catalogue.book_author, minlength=len(self.catalogue.author_names))[authors]
        top = authors[np.argsort(-pop, kind="stable")[:2]]
        c.fav_authors[index] = -1
        c.fav_authors[index, : top.size] = top
        c.activity[index] = max(float(np.quantile(c.activity, 0.9)), 1.0)

    # -- sampling ---------------------------------------------------------------------------
    def _prepare_sampling(self) -> None:
        cat = self.catalogue
        pop = cat.book_popularity
        self.global_cdf = np.cumsum(pop) / pop.sum()
        self.genre_books: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        members: dict[int, list[int]] = {}
        for b, genres in enumerate(cat.book_genres):
            for g in genres:
                members.setdefault(g, []).append(b)
        for g, books in members.items():
            books_arr = np.asarray(books)
            p = pop[books_arr]
            self.genre_books[g] = (books_arr, np.cumsum(p) / p.sum())
        order = np.argsort(cat.book_author, kind="stable")
        self.author_books = order
        counts = np.bincount(cat.book_author, minlength=len(cat.author_names))
        self.author_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.author_count = counts
        self.book_primary_genre = np.array([genres[0] for genres in cat.book_genres])
        # About 11 % of rows are purchases; aim the browsing events at the rest.
        self.events_per_activity = (self.n_interactions / 1.11) / max(self.customers.activity.sum(), 1e-9)

    def activity(self, chunk_size: int = 5000) -> Iterator[tuple[int, int, Activity]]:
        """Yield ``(start, stop, Activity)`` for customers ``start:stop``, chunk by chunk."""
        for start in range(0, self.n_users, chunk_size):
            stop = min(start + chunk_size, self.n_users)
            # One generator per chunk, derived from the seed: chunks do not depend on each other.
            rng = np.random.default_rng([self.seed, 1, start])
            yield start, stop, self._chunk(rng, start, stop)

    def _sample_books(self, rng: np.random.Generator, ev_user: np.ndarray) -> np.ndarray:
        """The book of each browsing event of ``ev_user``."""
        c = self.customers
        n = ev_user.size
        book = np.empty(n, dtype=np.int64)
        source = rng.random(n)
        # What drives a visit: a favourite genre (55 %), a favourite author (15 %), or what
        # everybody is looking at (30 %).
        by_genre = source < 0.55
        by_author = (source >= 0.55) & (source < 0.70)
        by_crowd = source >= 0.70

        fav_g = c.fav_genres[ev_user]
        n_g = (fav_g >= 0).sum(axis=1)
        pick = fav_g[np.arange(n), (rng.random(n) * n_g).astype(np.int64)]
        # A favourite genre without books in this catalogue sends the customer to the crowd.
        empty = ~np.isin(pick, list(self.genre_books))
        by_crowd |= by_genre & empty
        by_genre &= ~empty
        u = rng.random(n)
        for g, (members, cdf) in self.genre_books.items():
            rows = np.flatnonzero(by_genre & (pick == g))
            if rows.size:
                book[rows] = members[np.minimum(np.searchsorted(cdf, u[rows]), members.size - 1)]

        fav_a = c.fav_authors[ev_user]
        n_a = (fav_a >= 0).sum(axis=1)
        author = fav_a[np.arange(n), (rng.random(n) * np.maximum(n_a, 1)).astype(np.int64)]
        by_crowd |= by_author & (author < 0)
        by_author &= author >= 0
        rows = np.flatnonzero(by_author)
        a = author[rows]
        book[rows] = self.author_books[self.author_start[a] + (u[rows] * self.author_count[a]).astype(np.int64)]

        rows = np.flatnonzero(by_crowd)
        book[rows] = np.minimum(np.searchsorted(self.global_cdf, u[rows]), self.n_books - 1)
        return book

    def _chunk(self, rng: np.random.Generator, start: int, stop: int) -> Activity:
        c, cat = self.customers, self.catalogue
        users = np.arange(start, stop)
        # How many different books each customer looks at (nearly everyone visits once).
        target = rng.poisson(c.activity[users] * self.events_per_activity) + (rng.random(users.size) < 0.9)
        target = np.minimum(target, max(1, self.n_books // 2))
        # Browse in rounds until each customer has seen their number of different books;
        # the repeated visits on the way become page-view counts.
        ev_user = np.empty(0, dtype=np.int64)
        ev_book = np.empty(0, dtype=np.int64)
        deficit = target
        for _ in range(8):
            need = np.flatnonzero(deficit > 0)
            if need.size == 0:
                break
            more = np.repeat(users[need], np.ceil(deficit[need] * 1.2).astype(np.int64))
            ev_user = np.concatenate([ev_user, more])
            ev_book = np.concatenate([ev_book, self._sample_books(rng, more)])
            pairs = distinct(ev_user * self.n_books + ev_book)
            seen = np.bincount(pairs // self.n_books - start, minlength=users.size)
            deficit = target - seen
        # Keep a random `target` of each customer's books, with all their visits.
        pairs = distinct(ev_user * self.n_books + ev_book)
        priority = rng.random(pairs.size)
        pair_user = pairs // self.n_books - start
        order = np.lexsort((priority, pair_user))
        rank = np.arange(pairs.size) - np.searchsorted(pair_user[order], pair_user[order])
        kept = np.sort(pairs[order][rank < target[pair_user[order]]])
        keep_event = _in_sorted(ev_user * self.n_books + ev_book, kept)
        ev_user, book = ev_user[keep_event], ev_book[keep_event]
        n = ev_user.size

        # The history covers the last year; customers who joined later start later.
        begin = np.maximum(c.joined[ev_user], self.until - self.year)
        span = (self.until - begin).astype(np.int64)
        when = begin + (rng.random(n) * span).astype("timedelta64[s]")

        # One row per (customer, book): count the visits, keep the first and last time.
        key = ev_user * self.n_books + book
        order = np.lexsort((when, key))
        key, when = key[order], when[order]
        first_idx = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        last_idx = np.r_[first_idx[1:] - 1, key.size - 1]
        v_user = key[first_idx] // self.n_books
        v_book = key[first_idx] % self.n_books
        visits = last_idx - first_idx + 1
        v_first, v_last = when[first_idx], when[last_idx]
        # Customers look at a page a few times before deciding.
        v_count = visits + rng.geometric(0.55, size=visits.size) - 1

        # Buying: far likelier for a book of a favourite genre or author, less so when expensive.
        liked_genre = (c.fav_genres[v_user] == self.book_primary_genre[v_book][:, None]).any(axis=1)
        liked_author = (c.fav_authors[v_user] == cat.book_author[v_book][:, None]).any(axis=1)
        price_factor = np.clip(15.0 / cat.book_price[v_book], 0.4, 1.5)
        p_buy = (0.03 + 0.14 * liked_genre + 0.12 * liked_author) * price_factor * np.minimum(v_count, 3) / 2
        bought = (rng.random(v_user.size) < p_buy) & cat.book_available[v_book]
        delay = rng.exponential(2 * 86400, size=v_user.size).astype("int64").astype("timedelta64[s]")
        buy_time = np.minimum(v_first + delay, self.until - np.timedelta64(60, "s"))
        buy_time = np.maximum(buy_time, v_first)
        # A few purchases come without a recorded view (gifts, a link from a newsletter).
        blind = bought & (rng.random(v_user.size) < 0.05)
        keep = ~blind

        b_user, b_book, b_time = v_user[bought], v_book[bought], buy_time[bought]
        quantity = 1 + (rng.random(b_user.size) < 0.06)
        order = np.lexsort((b_time, b_user))
        b_user, b_book, b_time, quantity = b_user[order], b_book[order], b_time[order], quantity[order]
        # A new order when the customer changes or more than a day passed since their last purchase.
        gap = np.r_[True, (b_user[1:] != b_user[:-1]) | ((b_time[1:] - b_time[:-1]) > np.timedelta64(86400, "s"))]
        b_order = np.cumsum(gap) - 1

        return Activity(
            view_user=v_user[keep],
            view_book=v_book[keep],
            view_count=v_count[keep],
            view_first=v_first[keep],
            view_last=np.maximum(v_last[keep], v_first[keep]),
            buy_user=b_user,
            buy_book=b_book,
            buy_quantity=quantity,
            buy_time=b_time,
            buy_order=b_order,
        )


def _in_sorted(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.isin(values, keys)`` for sorted, distinct ``keys``, by binary search: np.isin
    sorts or hashes both arrays again, a third of the time it took to generate a large store."""
    if keys.size == 0:
        return np.zeros(values.shape, dtype=bool)
    return keys[np.minimum(np.searchsorted(keys, values), keys.size - 1)] == values


def plural(noun: str) -> str:
    """The plural of a singular English noun of the title vocabulary: Sky → Skies,
    Compass → Compasses, River → Rivers."""
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def _title_forms() -> list[list[str]]:
    """Every title the vocabulary makes, one list per form of title."""
    adjectives, nouns = TITLE_ADJECTIVES, TITLE_NOUNS
    return [
        [f"The {a} {n}" for a in adjectives for n in nouns],
        [f"{n} of {plural(m)}" for n in nouns for m in nouns if m != n],
        [f"{'An' if a[0] in 'AEIOU' else 'A'} {a} {n}" for a in adjectives for n in nouns],
        [f"The {n} at {a} {m}" for n in nouns for a in adjectives for m in nouns if m != n],
        [f"{a} {plural(n)}" for a in adjectives for n in nouns],
    ]


def demo_titles(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` different titles in random order, each form of title about equally common.

    Each form's titles are dealt from a shuffled deck, so no title comes twice.  A catalogue
    larger than the vocabulary (some 23,000 titles) deals the decks again as a series:
    "The Quiet Harbour: Book 2".
    """
    forms = _title_forms()
    titles: list[str] = []
    series = 0
    while len(titles) < n:
        series += 1
        suffix = "" if series == 1 else f": Book {series}"
        decks = [[form[i] for i in rng.permutation(len(form))] for form in forms]
        for pick in rng.integers(len(forms), size=n - len(titles)):
            # A form whose deck is empty passes its turn to the next form that has titles.
            deck = next((d for d in decks[pick:] + decks[:pick] if d), None)
            if deck is None:
                break
            titles.append(deck.pop() + suffix)
    return titles
