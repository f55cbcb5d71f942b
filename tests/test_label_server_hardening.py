"""The label server against hostile or broken clients, over real HTTP: 4xx (never 5xx) for malformed forms, a
64 kB request limit, security headers on every response, undo and revocation through the routes, and `serve`
printing the port it actually serves while keeping tokens out of its output."""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse

import pytest

from ziegler_trl.labeling import LabelStore
from ziegler_trl.labeling.app import MAX_BODY_BYTES, SECURITY_HEADERS, BackgroundServer, shown_order
from ziegler_trl.labeling.commands import add_labeler, register, revoke
from ziegler_trl.errors import UserInputError

FORM = "application/x-www-form-urlencoded"


def call(url: str, method: str, path: str, body: bytes | str = b"", content_type: str | None = FORM,
         headers: dict | None = None) -> tuple[int, dict[str, str], str]:
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    sent = dict(headers or {})
    if content_type is not None and method == "POST":
        sent.setdefault("Content-Type", content_type)
    connection.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=sent)
    response = connection.getresponse()
    result = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode("utf-8")
    connection.close()
    return result


def raw_exchange(url: str, head: bytes, body_chunks=(), pause: float = 0.0) -> tuple[int, bytes]:
    """Send `head` then each chunk over a plain socket; return the status and whatever answer came back."""
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we want
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return int(answer.split(b" ", 2)[1]), answer


@pytest.fixture
def served(tmp_path):
    store = LabelStore(tmp_path / "hard.db")
    store.add_comparisons([f"Query {i}" for i in range(4)], [[f"q{i} a", f"q{i} b", f"q{i} c"] for i in range(4)],
                          task="sentiment", round=0)
    store.add_labeler("ann")
    store.add_labeler("bob")
    store.assign(labelers=["ann", "bob"])
    with BackgroundServer(store) as url:
        yield store, url


def assert_secure(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name.lower()) == value, name
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_malformed_forms_get_4xx_naming_the_problem(served):
    store, url = served
    path = f"/label/{store.labeler_token('ann')}"
    cid = store.next_assignment("ann").id
    cases = {
        f"comparison_id={2**63}&choice=1": (400, "positive integer id"),
        f"comparison_id={2**63 - 1}&choice=1": (400, f"no comparison {2**63 - 1}"),
        "comparison_id=" + "9" * 5000 + "&choice=1": (400, "positive integer id"),
        "comparison_id=-1&choice=1": (400, "positive integer id"),
        "comparison_id=0&choice=1": (400, "positive integer id"),
        "comparison_id=x&choice=1": (400, "positive integer id"),
        "comparison_id=&choice=1": (400, "positive integer id"),
        "choice=1": (400, "missing field &#39;comparison_id&#39;"),
        f"comparison_id={cid}": (400, "missing field &#39;choice&#39;"),
        f"comparison_id={cid}&choice=0": (400, "between 1 and 3"),
        f"comparison_id={cid}&choice=4": (400, "between 1 and 3"),
        f"comparison_id={cid}&choice=1e0": (400, "between 1 and 3"),
        f"comparison_id={cid}&ranking=1,1,2": (400, "each of 1..3 once"),
        f"comparison_id={cid}&choice=1&shown_at=nan": (400, "finite time"),
        f"comparison_id={cid}&choice=1&shown_at=inf": (400, "finite time"),
        f"comparison_id={cid}&choice=1&shown_at=-inf": (400, "finite time"),
        f"comparison_id={cid}&choice=1&shown_at=1e400": (400, "finite time"),
        f"comparison_id={cid}&choice=1&shown_at=-3": (400, "finite time"),
        f"comparison_id={cid}&choice=1&shown_at=soon": (400, "finite time"),
        f"comparison_id={cid}&choice=%FF": (400, "not valid UTF-8"),
        "&".join(f"f{i}=1" for i in range(50)): (400, "more than 20 fields"),
    }
    for body, (status, message) in cases.items():
        code, headers, page = call(url, "POST", path, body)
        assert (code, message in page) == (status, True), (body[:80], code, page[-300:])
        assert_secure(headers)
    code, _, page = call(url, "POST", path, f"comparison_id={cid}&choice=\xff".encode("latin-1"))
    assert code == 400 and "not valid UTF-8" in page
    for content_type in (None, "text/plain", "multipart/form-data; boundary=x", "application/json"):
        code, headers, page = call(url, "POST", path, f"comparison_id={cid}&choice=1", content_type=content_type)
        assert code == 415 and "application/x-www-form-urlencoded" in page, content_type
        assert_secure(headers)
    assert store.answers() == []  # nothing malformed was stored
    code, _, _ = call(url, "POST", path, f"comparison_id={cid}&choice=1&shown_at=1700000000.25",
                      content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert code == 303 and store.answers()[0].shown_at == 1700000000.25


def test_request_size_limit_answers_413_without_reading_the_body(served):
    store, url = served
    path = f"/label/{store.labeler_token('ann')}"
    cid = store.next_assignment("ann").id
    padded = f"comparison_id={cid}&choice=2&pad="
    at_limit = padded + "x" * (MAX_BODY_BYTES - len(padded))
    assert call(url, "POST", path, at_limit)[0] == 303  # exactly the limit is accepted

    # A declared 100 MB body: refused from the header alone (we never send the body).
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: 100000000\r\n\r\n").encode()
    start = time.monotonic()
    status, answer = raw_exchange(url, head)
    assert status == 413 and time.monotonic() - start < 5 and b"at most 65536" in answer
    assert b"x-frame-options: DENY" in answer.lower().replace(b"deny", b"DENY")

    # A chunked body has no Content-Length: the server counts while reading and stops past the limit.
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    piece = b"a=" + b"y" * 16382
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 64  # 1 MB if all were read
    status, answer = raw_exchange(url, head, chunks, pause=0.005)
    assert status == 413 and b"over 65536" in answer
    assert len(store.answers()) == 1


def test_every_response_carries_the_security_headers(served, monkeypatch):
    store, url = served
    token = store.labeler_token("ann")
    cid = store.next_assignment("ann").id
    responses = [
        call(url, "GET", "/"),
        call(url, "GET", f"/label/{token}"),
        call(url, "POST", f"/label/{token}", f"comparison_id={cid}&choice=1"),  # 303
        call(url, "GET", "/label/not-a-token"),  # 403
        call(url, "GET", "/label/%C3%A9t%FF"),  # non-ASCII and broken escapes in the token: 403, not 500
        call(url, "GET", "/nowhere"),  # 404
        call(url, "PUT", f"/label/{token}"),  # 405
        call(url, "GET", f"/admin/{store.admin_token}"),
        call(url, "GET", f"/admin/{store.admin_token}/export.jsonl"),
    ]
    assert [code for code, _, _ in responses] == [200, 200, 303, 403, 403, 404, 405, 200, 200]
    for _, headers, _ in responses:
        assert_secure(headers)

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "next_assignment", broken)
    code, headers, page = call(url, "GET", f"/label/{token}")
    assert code == 500 and "disk on fire" not in page
    assert_secure(headers)


def test_undo_over_http(served):
    store, url = served
    path = f"/label/{store.labeler_token('ann')}"
    first, second = [cid for cid, name in store.assignments() if name == "ann"]
    assert 'id="undo"' not in call(url, "GET", path)[2]  # nothing answered yet
    order = shown_order(store.order_secret, "ann", first, 3)
    assert call(url, "POST", path, f"comparison_id={first}&choice=3")[0] == 303
    page = call(url, "GET", path)[2]
    (answer_id,) = re.findall(r'name="answer_id" value="(\d+)"', page)
    assert "Your last answer: choice\n3." in page and f'value="{second}"' in page
    assert store.answers()[0].best == order[2]

    assert call(url, "POST", f"/label/{store.labeler_token('bob')}/undo", f"answer_id={answer_id}")[0] == 403
    assert call(url, "POST", f"{path}/undo", "answer_id=abc")[0] == 400
    assert call(url, "POST", f"{path}/undo", f"answer_id={answer_id}")[0] == 303
    assert call(url, "POST", f"{path}/undo", f"answer_id={answer_id}")[0] == 303  # a double click: no-op
    page = call(url, "GET", path)[2]
    assert f'name="comparison_id" value="{first}"' in page and "0 of 2 done" in page  # back in the queue
    assert call(url, "POST", path, f"comparison_id={first}&choice=1")[0] == 303  # a different answer now
    assert [(a.comparison_id, a.best) for a in store.answers()] == [(first, order[0])]

    store.training_dataset("reward_round0", round=0)
    page = call(url, "GET", path)[2]
    assert 'id="undo"' not in page
    (latest,) = [a.id for a in store.answers()]
    code, headers, page = call(url, "POST", f"{path}/undo", f"answer_id={latest}")
    assert code == 409 and "used for training" in page
    assert_secure(headers)


def test_revoked_links_get_403_everywhere_and_can_be_reissued(served, capsys):
    store, url = served
    old = store.labeler_token("ann")
    cid = store.next_assignment("ann").id
    assert call(url, "POST", f"/label/{old}", f"comparison_id={cid}&choice=1")[0] == 303
    (answer_id,) = [a.id for a in store.answers()]
    admin = f"/admin/{store.admin_token}"
    assert call(url, "POST", f"/admin/{old}/revoke", "labeler=ann")[0] == 403  # a labeler is no admin
    code, _, page = call(url, "POST", f"{admin}/revoke", "labeler=zed")
    assert code == 400 and "no labeler named" in page
    assert call(url, "POST", f"{admin}/revoke", "")[0] == 400
    assert call(url, "POST", f"{admin}/revoke", "labeler=ann")[0] == 303
    for method, path, body in (("GET", f"/label/{old}", ""),
                               ("POST", f"/label/{old}", f"comparison_id={cid}&choice=2"),
                               ("POST", f"/label/{old}/undo", f"answer_id={answer_id}")):
        code, headers, page = call(url, method, path, body)
        assert code == 403 and "unknown or was revoked" in page, path
    page = call(url, "GET", admin)[2]
    assert f"/label/{old}" not in page and 'class="muted revoked"' in page and page.count('class="revoke"') == 1

    # A new link for the same person: it works, the old one stays dead, her answer is still hers.
    link = add_labeler(store.path, "ann", url)
    new_path = urllib.parse.urlsplit(link).path
    assert new_path != f"/label/{old}" and call(url, "GET", new_path)[0] == 200
    assert call(url, "GET", f"/label/{old}")[0] == 403
    assert f"{url}{new_path}" in call(url, "GET", admin)[2]
    assert [a.labeler for a in store.answers()] == ["ann"]

    parser = argparse.ArgumentParser(prog="ziegler-trl")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["label", "revoke", "--store", str(store.path), "bob"])
    assert args.func(args) == 0 and "revoked the link of bob" in capsys.readouterr().out
    assert call(url, "GET", f"/label/{store.labeler_token('ann')}")[0] == 200
    assert "has no live link" in revoke(store.path, "bob")
    with pytest.raises(UserInputError, match=r"no labeler named 'zed' \(labelers: ann, bob\)"):
        revoke(store.path, "zed")


SERVE = textwrap.dedent(
    """
    import sys
    from ziegler_trl.labeling import LabelStore
    from ziegler_trl.labeling.app import serve
    serve(LabelStore(sys.argv[1]), "127.0.0.1", 0)
    """
)


def test_serve_prints_the_port_it_serves_and_logs_no_token(tmp_path):
    store = LabelStore(tmp_path / "served.db")
    store.add_comparisons(["Query"], [["a", "b"]])
    token = store.add_labeler("ann")
    store.assign()
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(store.path)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = server.stdout.readline()
        match = re.fullmatch(r"admin page: http://127\.0\.0\.1:(\d+)/admin/(\S+)\n", first)
        assert match and match.group(2) == store.admin_token, first
        port = int(match.group(1))
        assert port != 0
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status = call(url, "GET", f"/label/{token}")[0]
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        assert status == 200
        assert call(url, "GET", f"/admin/{store.admin_token}")[0] == 200
        assert call(url, "POST", f"/label/{token}", "comparison_id=99&choice=1")[0] == 400
        assert call(url, "GET", f"/label/{token}x")[0] == 403
        assert call(url, "GET", f"/nowhere/{token}")[0] == 404
    finally:
        server.send_signal(signal.SIGINT)
        output = first + server.communicate(timeout=30)[0]
    assert server.returncode == 0 and "Traceback" not in output and "Application shutdown complete" in output
    assert token not in output and output.count(store.admin_token) == 1  # only the printed admin link
