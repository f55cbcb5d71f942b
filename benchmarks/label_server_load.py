"""Load on the labeling server: N labelers answer M comparisons each over HTTP at once, as browsers would.

Each labeler's thread opens their page, reads the comparison shown, answers it (position `cid % K + 1`) and, for
every `--undo-every`-th answer, undoes it from the page's undo form and answers again with another position.
At the end the store must hold exactly one live answer per comparison, by its assignee, with the best that the
last choice meant in that labeler's shown order, and one retraction per undo. Prints throughput and the checks.

    python benchmarks/label_server_load.py --labelers 8 --answers 500
"""

from __future__ import annotations

import argparse
import http.client
import re
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

from ziegler_trl.labeling import LabelStore
from ziegler_trl.labeling.app import BackgroundServer, shown_order

K = 4
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def labeler_session(url: str, token: str, answers: int, undo_every: int, expected: dict, errors: list) -> None:
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    path = f"/label/{token}"

    def call(method: str, target: str, body: str = "") -> tuple[int, str]:
        connection.request(method, target, body=body or None, headers=FORM if method == "POST" else {})
        response = connection.getresponse()
        return response.status, response.read().decode()

    done = 0
    while done < answers:
        status, page = call("GET", path)
        found = re.search(r'name="comparison_id" value="(\d+)"', page)
        if status != 200 or not found:
            errors.append((token[:4], "page", status, page[-200:]))
            return
        cid = int(found.group(1))
        choice = cid % K + 1
        status, page = call("POST", path, f"comparison_id={cid}&choice={choice}")
        if status != 303:
            errors.append((token[:4], cid, status, page[-200:]))
            return
        done += 1
        if undo_every and done % undo_every == 0:
            status, page = call("GET", path)
            answer_id = re.search(r'name="answer_id" value="(\d+)"', page)
            status, page = call("POST", f"{path}/undo", f"answer_id={answer_id.group(1)}")
            if status != 303:
                errors.append((token[:4], "undo", status, page[-200:]))
                return
            choice = choice % K + 1  # a different answer the second time
            status, page = call("POST", path, f"comparison_id={cid}&choice={choice}")
            if status != 303:
                errors.append((token[:4], cid, "re-answer", status, page[-200:]))
                return
        expected[cid] = choice
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelers", type=int, default=8)
    parser.add_argument("--answers", type=int, default=500, help="answers per labeler")
    parser.add_argument("--undo-every", type=int, default=25, help="undo and re-answer every n-th answer (0: never)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = LabelStore(Path(tmp) / "load.sqlite")
        n = args.labelers * args.answers
        store.add_comparisons([f"query {i}" for i in range(n)], [[f"q{i} c{j}" for j in range(K)] for i in range(n)])
        names = [f"labeler{i}" for i in range(args.labelers)]
        for name in names:
            store.add_labeler(name)
        store.assign()
        assignee = dict(store.assignments())
        expected: dict[int, int] = {}
        errors: list = []
        with BackgroundServer(store) as url:
            threads = [threading.Thread(target=labeler_session,
                                        args=(url, store.labeler_token(name), args.answers, args.undo_every,
                                              expected, errors))
                       for name in names]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - start
        live = store.answers()
        trail = store.answers(include_retracted=True)
        per_comparison = Counter(a.comparison_id for a in live)
        wrong_labeler = sum(a.labeler != assignee[a.comparison_id] for a in live)
        wrong_best = sum(
            a.best != shown_order(store.order_secret, a.labeler, a.comparison_id, K)[expected[a.comparison_id] - 1]
            for a in live if a.comparison_id in expected
        )
        undos = args.labelers * (args.answers // args.undo_every if args.undo_every else 0)
        print(f"labelers {args.labelers} x answers {args.answers}, undo every {args.undo_every}: {seconds:.1f} s, "
              f"{len(trail) / seconds:.0f} answers/s (incl. re-answers)")
        print(f"errors {len(errors)}  live answers {len(live)}/{n}  comparisons answered more than once "
              f"{sum(c > 1 for c in per_comparison.values())}  unanswered {n - len(per_comparison)}  "
              f"by the wrong labeler {wrong_labeler}  wrong best {wrong_best}  "
              f"retractions {len(trail) - len(live)}/{undos}")
        for error in errors[:5]:
            print("  error:", error)
        ok = (not errors and len(live) == n == len(per_comparison) and not wrong_labeler and not wrong_best
              and len(trail) - len(live) == undos)
        raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
