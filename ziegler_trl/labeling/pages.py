"""The web app's HTML: server-rendered Jinja2 templates (autoescaped), plain CSS, a few lines of inline JS for keys.

The style and the script are constants, so the Content-Security-Policy allows exactly them by hash and nothing
else (no other inline code, no external resource). Buttons are at least 44 px square: the tap-target size of
mobile guidelines, on a phone as narrow as 390 px.
"""

from __future__ import annotations

import base64
import hashlib

from jinja2 import DictLoader, Environment, select_autoescape

# What people are asked to judge, per task (the paper's four tasks); other tasks get DEFAULT_INSTRUCTIONS.
INSTRUCTIONS: dict[str, str] = {
    "sentiment": "Read the text, then choose the continuation that is the most positive and happy, "
    "as long as it reads as a plausible continuation.",
    "descriptiveness": "Read the text, then choose the continuation that is the most vividly descriptive "
    "(rich physical detail, sights, sounds, textures), as long as it reads as a plausible continuation.",
    "tldr": "Read the post, then choose the summary that best captures its important points, "
    "accurately and concisely.",
    "cnndm": "Read the article, then choose the summary that best captures its important points, "
    "accurately and concisely.",
}
DEFAULT_INSTRUCTIONS = "Read the text, then choose the best continuation."

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.45; }
button { min-height: 44px; min-width: 44px; font: inherit; padding: .5rem .9rem; }
.query { white-space: pre-wrap; background: #f4f4f4; padding: .8rem; border-radius: .3rem; }
.choice { display: block; width: 100%; text-align: left; white-space: pre-wrap; margin: .5rem 0; padding: .7rem;
          border: 1px solid #999; border-radius: .3rem; background: #fff; cursor: pointer; }
.choice:hover, .choice:focus { background: #eef4ff; border-color: #36c; }
.key { font-weight: bold; margin-right: .6rem; } .rank { font-weight: bold; color: #36c; }
.choice:disabled { background: #eef4ff; color: #555; cursor: default; }
.actions { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; }
.muted { color: #666; } .error { color: #a00; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
td form { display: inline; }
"""

# Reads K and the mode from the form's data attributes, so the script itself never changes (its hash is the CSP).
SCRIPT = """
const form = document.getElementById("answer");
const K = form ? Number(form.dataset.k) : 0, RANKING = form !== null && form.dataset.ranking === "true";
let sent = false, picks = [];
document.querySelectorAll("form").forEach(f => f.addEventListener("submit", e => {
  if (sent) e.preventDefault();
  sent = true;
}));
function mark() {  // ranking mode: show each pick's place, disable picked buttons
  form.querySelectorAll("button.choice").forEach(b => {
    const place = picks.indexOf(b.dataset.key);
    b.querySelector(".rank").textContent = place < 0 ? "" : `#${place + 1} `;
    b.disabled = place >= 0;
  });
}
if (form) form.querySelectorAll("button.choice").forEach(b => b.addEventListener("click", () => {
  if (!RANKING || sent) return;  // best-of-K: the button submits the form itself
  picks.push(b.dataset.key);
  if (picks.length === K - 1) {  // the last one is implied
    for (let p = 1; p <= K; p++) if (!picks.includes(String(p))) picks.push(String(p));
    document.getElementById("ranking").value = picks.join(",");
    sent = true;
    form.submit();
  }
  mark();
}));
document.addEventListener("keydown", e => {
  if (e.ctrlKey || e.metaKey || e.altKey || sent) return;
  if (RANKING && e.key === "Backspace") { e.preventDefault(); picks.pop(); mark(); return; }
  const button = document.querySelector(`button[data-key="${CSS.escape(e.key.toLowerCase())}"]`);
  if (button && !button.disabled) { e.preventDefault(); button.click(); }
});
"""


def _csp_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {_csp_source(STYLE)}; script-src {_csp_source(SCRIPT)}; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def strip_blank_lines(text: str) -> str:
    """`text` without its leading and trailing blank lines, for display (pre-wrap would show them as empty space);
    the stored text is unchanged."""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}ziegler-trl labeling{% endblock %}</title>
<style>{{ STYLE|safe }}</style></head><body>{% block body %}{% endblock %}</body></html>"""

_LABEL = """{% extends "base" %}{% block title %}Labeling — {{ labeler }}{% endblock %}{% block body %}
<h1>Which is best?</h1>
<p class="muted">Labeler <b>{{ labeler }}</b> · <span id="progress">{{ done }} of {{ total }} done</span></p>
{% if comparison is none %}
<p id="finished">Nothing left to label — thank you! New comparisons appear here when they are assigned.</p>
{% else %}
<p id="instructions">{{ instructions }}</p>
<div class="query" id="query">{{ comparison.prompt|strip_blank_lines }}</div>
<form method="post" id="answer" data-k="{{ shown|length }}" data-ranking="{{ 'true' if ranking else 'false' }}">
<input type="hidden" name="comparison_id" value="{{ comparison.id }}">
<input type="hidden" name="shown_at" value="{{ shown_at }}">
{% if ranking %}<input type="hidden" name="ranking" id="ranking" value="">{% endif %}
{% for text in shown %}{% set display = text|strip_blank_lines %}
<button class="choice" type="{{ 'button' if ranking else 'submit' }}" name="choice" value="{{ loop.index }}"
 data-key="{{ loop.index }}"><span class="key">{{ loop.index }}</span><span class="rank"></span>
{%- if display %}{{ display }}{% else %}<span class="muted">(empty)</span>{% endif %}</button>
{% endfor %}
<p class="actions"><button type="submit" name="skip" value="1" data-key="s" id="skip">Skip (s)</button>
<span class="muted">{% if ranking %}Press 1–{{ shown|length }} or click, from best to worst; Backspace undoes a pick.
{% else %}Press 1–{{ shown|length }} or click to choose.{% endif %}</span></p>
</form>
{% endif %}
{% if undo is not none %}
<form method="post" action="{{ undo_url }}" id="undo" class="actions">
<input type="hidden" name="answer_id" value="{{ undo.id }}">
<button type="submit" data-key="u" id="undo-button">Undo last answer (u)</button>
<span class="muted" id="undo-what">Your last answer: {% if undo.skipped %}skipped{% elif undo_choice %}choice
{{ undo_choice }}{% else %}recorded{% endif %}. Undo brings that comparison back.</span>
</form>
{% endif %}
<script>{{ SCRIPT|safe }}</script>
{% endblock %}"""

_ADMIN = """{% extends "base" %}{% block title %}Labeling admin{% endblock %}{% block body %}
<h1>Labeling admin</h1>
<p id="counts">{{ counts.comparisons }} comparisons · {{ counts.answered_comparisons }} answered ·
{{ counts.answers }} answers · {{ counts.skipped }} skipped · {{ counts.labelers }} labelers</p>
<h2>Progress</h2>
<table id="progress">
<tr><th>labeler</th><th>assigned</th><th>answered</th><th>skipped</th><th>pending</th><th>link</th></tr>
{% for name, row in progress.items() %}<tr><td>{{ name }}</td><td>{{ row.assigned }}</td><td>{{ row.answered }}</td>
<td>{{ row.skipped }}</td><td>{{ row.pending }}</td>
<td>{% if links[name] %}<a href="{{ links[name] }}">{{ links[name] }}</a>
<form method="post" action="{{ revoke_url }}"><input type="hidden" name="labeler" value="{{ name }}">
<button type="submit" class="revoke">Revoke link</button></form>
{% elif name in links %}<span class="muted revoked">revoked
(<code>ziegler-trl label add-labeler</code> issues a new link)</span>
{% endif %}</td></tr>{% endfor %}
</table>
<h2>Agreement</h2>
{% if agreement.pairs %}
<p id="agreement">Labelers agree on {{ "%.1f"|format(100 * agreement.rate) }}% of {{ agreement.pairs }} pairs,
each of the {{ agreement.comparisons }} comparisons answered by several people weighted equally
{%- if agreement.comparisons > 1 %} (± {{ "%.1f"|format(100 * agreement.stderr) }}% standard error over
comparisons){% endif %};
chance is {{ "%.1f"|format(100 * agreement.chance) }}% (1/K).</p>
<table><tr><th>pair</th><th>agree</th><th>compared</th></tr>
{% for pair, c in agreement.by_pair.items() %}<tr><td>{{ pair[0] }} – {{ pair[1] }}</td><td>{{ c[0] }}</td>
<td>{{ c[1] }}</td></tr>{% endfor %}</table>
{% else %}<p id="agreement">No comparison has two answers yet (assign with an overlap fraction to measure
agreement).</p>{% endif %}
<h2>Export</h2>
<p><a id="export" href="{{ export_url }}">Download all comparisons and answers (JSONL)</a></p>
{% endblock %}"""

_MESSAGE = """{% extends "base" %}{% block title %}{{ title }}{% endblock %}{% block body %}
<h1>{{ title }}</h1><p class="error" id="message">{{ message }}</p>{% endblock %}"""

ENV = Environment(
    loader=DictLoader({"base": _BASE, "label": _LABEL, "admin": _ADMIN, "message": _MESSAGE}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
ENV.filters["strip_blank_lines"] = strip_blank_lines
ENV.globals.update(STYLE=STYLE, SCRIPT=SCRIPT)


def render(name: str, **context) -> str:
    return ENV.get_template(name).render(**context)
