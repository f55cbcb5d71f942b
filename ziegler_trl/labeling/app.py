"""The web labeling app (Starlette, server-rendered): people open their link and choose the best of K completions.

Routes (the token in the path is the access key):
- `GET /label/{token}`: the labeler's next assigned comparison — instructions, query, the K completions in a
  random order fixed per (labeler, comparison), progress; choose with a click or keys 1..K, skip with "s".
  With `ranking=True` the page asks for a full ranking instead (keys/clicks from best to worst).
- `POST /label/{token}`: record the answer (form: comparison_id, shown_at, and choice = shown position 1..K,
  or ranking = shown positions best first "3,1,4,2", or skip=1), then redirect to the next one. The shown
  order is recomputed on the server, never trusted from the form. Answering a comparison not assigned to you
  is 403; a different second answer is 409.
- `GET /admin/{token}`: progress per labeler, labeler–labeler agreement vs chance 1/K, labeler links.
- `GET /admin/{token}/export.jsonl`: every comparison with its answers (`LabelStore.export_jsonl`).
An unknown token is 403 with a message saying so.
"""

from __future__ import annotations

import random
import secrets
import socket
import threading
import time
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .pages import DEFAULT_INSTRUCTIONS, INSTRUCTIONS, render
from .store import LabelConflictError, LabelStore


def shown_order(store_secret: str, labeler: str, comparison_id: int, k: int) -> list[int]:
    """The order a labeler sees a comparison's completions in: random, but the same on every reload.

    Position p on the page shows stored completion `order[p]`.
    """
    order = list(range(k))
    random.Random(f"{store_secret}:{labeler}:{comparison_id}").shuffle(order)
    return order


def _message(title: str, message: str, status: int) -> HTMLResponse:
    return HTMLResponse(render("message", title=title, message=message), status_code=status)


def _forbidden(kind: str) -> HTMLResponse:
    return _message(
        "Access refused",
        f"This {kind} link is not valid: the token is unknown. Check that you copied the whole link, "
        "or ask the labeling admin for a new one.",
        403,
    )


def create_app(
    store: LabelStore,
    instructions: dict[str, str] | None = None,
    base_url: str = "",
    ranking: bool = False,
) -> Starlette:
    """The labeling app over `store`; `instructions` maps task name → text shown above each comparison;
    `ranking` asks people for a full ranking instead of only the best."""
    texts = {**INSTRUCTIONS, **(instructions or {})}

    def labeler_of(request: Request) -> str | None:
        return store.labeler_for_token(request.path_params["token"])

    def is_admin(request: Request) -> bool:
        return secrets.compare_digest(request.path_params["token"].encode(), store.admin_token.encode())

    async def index(request: Request) -> Response:
        return _message("ziegler-trl labeling", "Open the personal link your labeling admin sent you.", 200)

    async def label_page(request: Request) -> Response:
        labeler = await run_in_threadpool(labeler_of, request)
        if labeler is None:
            return _forbidden("labeler")
        comparison = await run_in_threadpool(store.next_assignment, labeler)
        stats = (await run_in_threadpool(store.progress)).get(labeler, {})
        context = {
            "labeler": labeler,
            "done": stats.get("answered", 0) + stats.get("skipped", 0),
            "total": stats.get("assigned", 0),
            "comparison": comparison,
            "ranking": ranking,
        }
        if comparison is not None:
            order = shown_order(store.order_secret, labeler, comparison.id, comparison.k)
            context.update(
                instructions=texts.get(comparison.task or "", DEFAULT_INSTRUCTIONS),
                shown=[comparison.completions[i] for i in order],
                shown_at=f"{time.time():.3f}",
            )
        return HTMLResponse(render("label", **context))

    async def label_submit(request: Request) -> Response:
        labeler = await run_in_threadpool(labeler_of, request)
        if labeler is None:
            return _forbidden("labeler")
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _message("Bad request", "Answers are sent as an HTML form (application/x-www-form-urlencoded).", 400)
        form = {key: values[-1] for key, values in parse_qs((await request.body()).decode("utf-8")).items()}
        try:
            comparison_id = int(form["comparison_id"])
            shown_at = float(form["shown_at"]) if form.get("shown_at") else None
            skipped = form.get("skip") == "1"
            positions = None
            if not skipped:
                raw = form.get("ranking") or form["choice"]
                positions = [int(p) for p in raw.split(",")]
        except (KeyError, ValueError) as err:
            return _message("Bad request", f"The answer form is incomplete or malformed ({err!r}).", 400)
        try:
            (comparison,) = await run_in_threadpool(store.get_comparisons, [comparison_id])
        except KeyError:
            return _message("Bad request", f"There is no comparison {comparison_id}.", 400)
        order = shown_order(store.order_secret, labeler, comparison_id, comparison.k)
        best = ranked = None
        if positions is not None:
            if not all(1 <= p <= comparison.k for p in positions):
                return _message("Bad request", f"choices must be between 1 and {comparison.k}, got {positions}.", 400)
            if len(positions) > 1 and sorted(positions) != list(range(1, comparison.k + 1)):
                return _message("Bad request", f"a ranking must list each of 1..{comparison.k} once, got {positions}.",
                                400)
            best = order[positions[0] - 1]
            ranked = [order[p - 1] for p in positions] if len(positions) > 1 else None
        try:
            await run_in_threadpool(
                lambda: store.add_answer(comparison_id, labeler, best, ranking=ranked, shown_order=order,
                                         skipped=skipped, shown_at=shown_at, require_assignment=True)
            )
        except PermissionError:
            return _message("Access refused", f"Comparison {comparison_id} is not assigned to you.", 403)
        except LabelConflictError:
            return _message("Already answered", f"You already gave a different answer to comparison {comparison_id}; "
                            "answers cannot be changed.", 409)
        return RedirectResponse(request.url.path, status_code=303)

    async def admin_page(request: Request) -> Response:
        if not is_admin(request):
            return _forbidden("admin")
        token_links = {name: f"{base_url}/label/{await run_in_threadpool(store.labeler_token, name)}"
                       for name in await run_in_threadpool(store.labelers)}
        return HTMLResponse(
            render(
                "admin",
                counts=await run_in_threadpool(store.counts),
                progress=await run_in_threadpool(store.progress),
                agreement=await run_in_threadpool(store.agreement, list(token_links)),  # people only
                links=token_links,
                export_url=f"{request.url.path}/export.jsonl",
            )
        )

    async def admin_export(request: Request) -> Response:
        if not is_admin(request):
            return _forbidden("admin")
        text = await run_in_threadpool(store.export_jsonl)
        return PlainTextResponse(
            text,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{store.path.stem}.jsonl"'},
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/label/{token}", label_page, methods=["GET"]),
            Route("/label/{token}", label_submit, methods=["POST"]),
            Route("/admin/{token}", admin_page, methods=["GET"]),
            Route("/admin/{token}/export.jsonl", admin_export, methods=["GET"]),
        ]
    )


def serve(
    store: LabelStore, host: str = "127.0.0.1", port: int = 8000, base_url: str | None = None, ranking: bool = False
) -> None:
    """Run the app with uvicorn until interrupted; prints the admin link first."""
    import uvicorn

    base_url = base_url or f"http://{host}:{port}"
    print(f"admin page: {base_url}/admin/{store.admin_token}", flush=True)
    # No access log: request paths carry the labelers' and the admin's tokens.
    uvicorn.run(create_app(store, base_url=base_url, ranking=ranking), host=host, port=port, log_level="info",
                access_log=False)


class BackgroundServer:
    """The app served by uvicorn in a daemon thread on a free localhost port (tests, notebooks, a local loop).

    `with BackgroundServer(store) as url: ...` — `url` is e.g. "http://127.0.0.1:38123"; the server stops on exit.
    """

    def __init__(self, store: LabelStore, host: str = "127.0.0.1", port: int = 0, **app_kwargs):
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))  # bound before the thread starts: no race for the port
        self.url = f"http://{host}:{self.socket.getsockname()[1]}"
        app = create_app(store, base_url=self.url, **app_kwargs)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the labeling server at {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
