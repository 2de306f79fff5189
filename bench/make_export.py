"""Write a legacy export (the CSV format of import_interactions) of a generated store.

    python bench/make_export.py OUT.csv [--users N] [--books N] [--interactions N] [--seed S]

Rows come from the same generator as seed_demo (bookstore/demo.py), streamed chunk by
chunk, so files of millions of rows are written in bounded memory.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bookstore.demo import DemoStore  # noqa: E402

HEADER = ["number", "type", "username", "product", "price", "model", "publishing_dt", "author", "genres", "title", "timestamp"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--books", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--until", type=date.fromisoformat, default=date(2026, 6, 30))
    args = parser.parse_args()
    store = DemoStore(users=args.users, books=args.books, interactions=args.interactions, seed=args.seed, until=args.until)
    cat, people = store.catalogue, store.customers
    meta = [
        (
            cat.book_product[i], f"{cat.book_price[i]:.2f}", str(cat.book_format[i]), str(cat.book_published[i]),
            cat.author_names[cat.book_author[i]], ",".join(cat.genre_names[g] for g in cat.book_genres[i]), cat.book_title[i],
        )
        for i in range(len(cat.book_product))
    ]  # fmt: skip
    rows = 0
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for _, _, act in store.activity():
            stamps = np.datetime_as_string(act.view_first, unit="s")
            for u, b, n, t in zip(act.view_user.tolist(), act.view_book.tolist(), act.view_count.tolist(), stamps, strict=True):
                p, price, fmt, pub, author, genres, title = meta[b]
                writer.writerow([n, "access", people.usernames[u], p, price, fmt, pub, author, genres, title, t + "Z"])
            stamps = np.datetime_as_string(act.buy_time, unit="s")
            for u, b, n, t in zip(act.buy_user.tolist(), act.buy_book.tolist(), act.buy_quantity.tolist(), stamps, strict=True):
                p, price, fmt, pub, author, genres, title = meta[b]
                writer.writerow([n, "orderline", people.usernames[u], p, price, fmt, pub, author, genres, title, t + "Z"])
            rows += act.view_user.size + act.buy_user.size
    print(f"wrote {rows} rows to {args.out}")


if __name__ == "__main__":
    main()
