"""The web labeling app (Starlette, server-rendered): people open their link and choose the best of K completions.

Routes (the token in the path is the access key):
- `GET /label/{token}`: the labeler's next assigned comparison — instructions, query, the K completions in a
  random order fixed per (labeler, comparison), progress; choose with a click or keys 1..K, skip with "s", undo
  the last answer with "u". With `ranking=True` the page asks for a full ranking instead (keys/clicks from best
  to worst).
- `POST /label/{token}`: record the answer (form: comparison_id, shown_at, and choice = shown position 1..K,
  or ranking = shown positions best first "3,1,4,2", or skip=1), then redirect to the next one. The shown
  order is recomputed on the server, never trusted from the form. Answering a comparison not assigned to you
  is 403; a different second answer is 409.
- `POST /label/{token}/undo`: take back one's latest answer (form: answer_id); the comparison comes back to the
  queue. Refused (409) once its round has been used for training or when it is not the latest answer.
- `GET /admin/{token}`: progress per labeler, labeler–labeler agreement (`agreement_summary`) vs chance 1/K,
  labeler links.
- `POST /admin/{token}/revoke`: revoke a labeler's link (form: labeler); `label add-labeler` issues a new one.
- `GET /admin/{token}/export.jsonl`: every comparison with its answers (`LabelStore.export_jsonl`).
An unknown or revoked token is 403 with a message saying so.

Hardening: every response carries `SECURITY_HEADERS` (no framing, no referrer, no caching, a CSP that allows only
the page's own inline style and script by hash); a form body is read only up to `MAX_BODY_BYTES` (413 beyond,
decided from Content-Length before reading when the client sends one); a malformed form is a 4xx naming the
field, never a 500. Tokens are compared in constant time and never logged (no access log: paths hold tokens).
"""

from __future__ import annotations

import math
import random
import re
import secrets
import socket
import threading
import time
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .agreement import agreement_summary
from .pages import CONTENT_SECURITY_POLICY, DEFAULT_INSTRUCTIONS, INSTRUCTIONS, render
from .records import LabelConflictError
from .store import LabelStore, UndoRefusedError

MAX_BODY_BYTES = 64 * 1024  # an answer form is ~100 bytes; this leaves room and caps what a client can send
MAX_FORM_FIELDS = 20
SQLITE_MAX_INT = 2**63 - 1
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the URL holds the token: never send it to another site
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_UNSIGNED = re.compile(r"[0-9]{1,19}")


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
        f"This {kind} link is not valid: the token is unknown or was revoked. Check that you copied the whole "
        "link, or ask the labeling admin for a new one.",
        403,
    )


class FormError(Exception):
    """A request whose form cannot be used; becomes a 4xx page with this status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message

    def response(self) -> HTMLResponse:
        titles = {413: "Request too large", 415: "Unsupported form encoding"}
        response = _message(titles.get(self.status, "Bad request"), self.message, self.status)
        if self.status == 413:  # the rest of the body is never read, so this connection cannot carry another request
            response.headers["Connection"] = "close"
        return response


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (last value of each field), read only up to `MAX_BODY_BYTES`."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise FormError(415, "Answers are sent as an HTML form (Content-Type application/x-www-form-urlencoded).")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _UNSIGNED.fullmatch(declared.strip()):
            raise FormError(400, "The Content-Length header is not a byte count.")
        if int(declared) > MAX_BODY_BYTES:
            raise FormError(413, f"The form is {int(declared)} bytes; at most {MAX_BODY_BYTES} are accepted.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:  # a chunked body (no Content-Length) is cut off here, not read whole
            raise FormError(413, f"The form is over {MAX_BODY_BYTES} bytes; at most {MAX_BODY_BYTES} are accepted.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                          max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise FormError(400, "The form is not valid UTF-8.") from None
    except ValueError:
        raise FormError(400, f"The form has more than {MAX_FORM_FIELDS} fields.") from None
    return {key: values[-1] for key, values in fields.items()}


def _id_field(form: dict[str, str], name: str) -> int:
    raw = form.get(name)
    if raw is None:
        raise FormError(400, f"The form is missing field '{name}'.")
    if not _UNSIGNED.fullmatch(raw) or not 1 <= int(raw) <= SQLITE_MAX_INT:
        raise FormError(400, f"Field '{name}' must be a positive integer id, got {raw[:40]!r}.")
    return int(raw)


def _shown_at_field(form: dict[str, str]) -> float | None:
    raw = form.get("shown_at")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise FormError(400, f"Field 'shown_at' must be a finite time in seconds, got {raw[:40]!r}.")
    return value


def _positions_field(form: dict[str, str], k: int) -> list[int] | None:
    """Shown positions (1-based) best first from 'ranking' or 'choice'; None for a skip."""
    if form.get("skip") == "1":
        return None
    name = "ranking" if form.get("ranking") else "choice"
    raw = form.get(name)
    if raw is None:
        raise FormError(400, "The form is missing field 'choice' (or 'ranking', or skip=1).")
    parts = raw.split(",")
    if not all(re.fullmatch(r"[0-9]{1,3}", p) for p in parts) or not all(1 <= int(p) <= k for p in parts):
        raise FormError(400, f"Field '{name}' must list positions between 1 and {k}, got {raw[:40]!r}.")
    positions = [int(p) for p in parts]
    if len(positions) > 1 and sorted(positions) != list(range(1, k + 1)):
        raise FormError(400, f"A ranking must list each of 1..{k} once, got {raw[:40]!r}.")
    return positions


class SecurityHeaders:
    """ASGI middleware: adds `SECURITY_HEADERS` to every HTTP response the app sends (404 and 405 included)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                         if k.lower().encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _server_error(request: Request, exc: Exception) -> Response:
    # Runs outside the middleware stack (Starlette's ServerErrorMiddleware), so it sets the headers itself.
    response = _message("Server error", "The server failed on this request; the labeling admin can see why.", 500)
    response.headers.update(SECURITY_HEADERS)
    return response


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
        given = request.path_params["token"].encode("utf-8", "replace")
        return secrets.compare_digest(given, store.admin_token.encode())

    def label_path(request: Request) -> str:
        return f"/label/{request.path_params['token']}"

    async def index(request: Request) -> Response:
        return _message("ziegler-trl labeling", "Open the personal link your labeling admin sent you.", 200)

    async def label_page(request: Request) -> Response:
        labeler = await run_in_threadpool(labeler_of, request)
        if labeler is None:
            return _forbidden("labeler")
        comparison = await run_in_threadpool(store.next_assignment, labeler)
        stats = (await run_in_threadpool(store.progress)).get(labeler, {})
        undo = await run_in_threadpool(store.undoable_answer, labeler)
        context = {
            "labeler": labeler,
            "done": stats.get("answered", 0) + stats.get("skipped", 0),
            "total": stats.get("assigned", 0),
            "comparison": comparison,
            "ranking": ranking,
            "undo": undo,
            "undo_url": f"{label_path(request)}/undo",
            # the shown position of the answer that undo would take back, to name it on the button
            "undo_choice": None if undo is None or undo.best is None or undo.shown_order is None
            else undo.shown_order.index(undo.best) + 1,
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
        try:
            form = await read_form(request)
            comparison_id = _id_field(form, "comparison_id")
            shown_at = _shown_at_field(form)
            try:
                (comparison,) = await run_in_threadpool(store.get_comparisons, [comparison_id])
            except KeyError:
                raise FormError(400, f"There is no comparison {comparison_id}.") from None
            positions = _positions_field(form, comparison.k)
        except FormError as err:
            return err.response()
        order = shown_order(store.order_secret, labeler, comparison_id, comparison.k)
        best = ranked = None
        if positions is not None:
            best = order[positions[0] - 1]
            ranked = [order[p - 1] for p in positions] if len(positions) > 1 else None
        try:
            await run_in_threadpool(
                lambda: store.add_answer(comparison_id, labeler, best, ranking=ranked, shown_order=order,
                                         skipped=positions is None, shown_at=shown_at, require_assignment=True)
            )
        except PermissionError:
            return _message("Access refused", f"Comparison {comparison_id} is not assigned to you.", 403)
        except LabelConflictError:
            return _message("Already answered", f"You already gave a different answer to comparison {comparison_id}; "
                            "only your latest answer can be undone.", 409)
        return RedirectResponse(label_path(request), status_code=303)

    async def label_undo(request: Request) -> Response:
        labeler = await run_in_threadpool(labeler_of, request)
        if labeler is None:
            return _forbidden("labeler")
        try:
            answer_id = _id_field(await read_form(request), "answer_id")
        except FormError as err:
            return err.response()
        try:
            await run_in_threadpool(store.retract_answer, answer_id, labeler)
        except KeyError:
            return _message("Access refused", f"Answer {answer_id} is not one of yours.", 403)
        except UndoRefusedError as err:
            reason = str(err).split(": ", 1)[-1]
            return _message("Cannot undo", f"That answer cannot be undone: {reason}.", 409)
        return RedirectResponse(label_path(request), status_code=303)

    async def admin_page(request: Request) -> Response:
        if not is_admin(request):
            return _forbidden("admin")

        def links() -> dict[str, str | None]:
            live = set(store.active_labelers())
            return {name: f"{base_url}/label/{store.labeler_token(name)}" if name in live else None
                    for name in store.labelers()}

        token_links = await run_in_threadpool(links)
        return HTMLResponse(
            render(
                "admin",
                counts=await run_in_threadpool(store.counts),
                progress=await run_in_threadpool(store.progress),
                agreement=agreement_summary(await run_in_threadpool(store.judgements, list(token_links))),  # people
                links=token_links,
                revoke_url=f"{request.url.path}/revoke",
                export_url=f"{request.url.path}/export.jsonl",
            )
        )

    async def admin_revoke(request: Request) -> Response:
        if not is_admin(request):
            return _forbidden("admin")
        try:
            name = (await read_form(request)).get("labeler")
            if not name:
                raise FormError(400, "The form is missing field 'labeler'.")
            await run_in_threadpool(store.revoke_labeler, name)
        except FormError as err:
            return err.response()
        except KeyError:
            return _message("Bad request", f"There is no labeler named {name[:60]!r}.", 400)
        return RedirectResponse(f"/admin/{request.path_params['token']}", status_code=303)

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
            Route("/label/{token}/undo", label_undo, methods=["POST"]),
            Route("/admin/{token}", admin_page, methods=["GET"]),
            Route("/admin/{token}/revoke", admin_revoke, methods=["POST"]),
            Route("/admin/{token}/export.jsonl", admin_export, methods=["GET"]),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={Exception: _server_error},
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to (host, port); port 0 picks a free one (read it with getsockname)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def served_url(host: str, sock: socket.socket) -> str:
    """http://HOST:PORT with the port the socket is actually bound to."""
    return f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"


def serve(
    store: LabelStore, host: str = "127.0.0.1", port: int = 8000, base_url: str | None = None, ranking: bool = False
) -> None:
    """Run the app with uvicorn until interrupted; prints the admin link (with the port served) first."""
    import uvicorn

    sock = bind_socket(host, port)  # bound first, so port 0 is known before any link is printed
    base_url = (base_url or served_url(host, sock)).rstrip("/")
    print(f"admin page: {base_url}/admin/{store.admin_token}", flush=True)
    # No access log: request paths carry the labelers' and the admin's tokens.
    config = uvicorn.Config(create_app(store, base_url=base_url, ranking=ranking), host=host,
                            port=sock.getsockname()[1], log_level="info", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl+C is how it is meant to stop (uvicorn has shut down cleanly by now)
        pass
    finally:
        sock.close()


class BackgroundServer:
    """The app served by uvicorn in a daemon thread on a free localhost port (tests, notebooks, a local loop).

    `with BackgroundServer(store) as url: ...` — `url` is e.g. "http://127.0.0.1:38123"; the server stops on exit.
    """

    def __init__(self, store: LabelStore, host: str = "127.0.0.1", port: int = 0, **app_kwargs):
        import uvicorn

        self.socket = bind_socket(host, port)  # bound before the thread starts: no race for the port
        self.url = served_url(host, self.socket)
        app = create_app(store, base_url=self.url, **app_kwargs)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.socket.getsockname()[1],
                                                    log_level="warning", access_log=False))
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
