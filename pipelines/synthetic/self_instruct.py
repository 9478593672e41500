"""Self-Instruct (Wang et al. 2022) without the network: seed tasks, prompts, parsers and filters.

The generation loop (elsewhere) goes: `sample_in_context` → `instruction_messages` → model →
`parse_instructions` → `instruction_rejection` and `NoveltyFilter.accept` → `classification_messages`
→ `parse_is_classification` → `instance_messages` → `parse_instances` → `instance_rejection` →
`to_messages` (one SFT record). Everything here is pure, so it is tested without a served model.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from pipelines.common.bundled import SEED_TASKS
from pipelines.common.errors import UserError
from pipelines.synthetic.self_instruct_filters import NoveltyFilter, instruction_rejection

__all__ = [
    "NO_INPUT", "PROMPT_VERSION", "SEED_TASKS", "Instance", "NoveltyFilter", "SeedFileError", "SeedTask",
    "classification_messages", "instance_messages", "instance_rejection", "instruction_messages",
    "instruction_rejection", "load_seed_tasks", "parse_instances", "parse_instructions",
    "parse_is_classification", "sample_in_context", "to_messages",
]  # fmt: skip

# Stored with every generated record. Bump it (self-instruct-v2, …) whenever a prompt's text, a
# demonstration or a parser's behaviour changes, so records made under different prompts stay apart.
PROMPT_VERSION = "self-instruct-v1"


class Instance(BaseModel):
    """One input/output example of a task; `input` is empty for tasks that need none."""

    input: str = ""
    output: str


class SeedTask(BaseModel):
    """A task as the paper's seed file (`seed_tasks.jsonl`) writes it, one JSON object a line."""

    id: str = Field(min_length=1)
    name: str
    instruction: str = Field(min_length=1)
    instances: list[Instance] = Field(min_length=1)  # the instance prompts need an example to show
    is_classification: bool


class SeedFileError(UserError):
    """The seed file is missing, empty or has a bad line; the message names the file and line."""


def _validation_summary(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in err.errors())


def load_seed_tasks(path: str | Path = SEED_TASKS) -> list[SeedTask]:
    """Read a seed file in the paper's JSONL format; blank lines are skipped.

    Raises SeedFileError naming the file and 1-based line for bad JSON, a missing or invalid field,
    or an id used twice; and for a missing or empty file (the generator cannot start without seeds).
    """
    path = Path(path)
    if not path.is_file():
        raise SeedFileError(f"seed file {path} not found: pass a JSONL file of tasks (see {SEED_TASKS})")
    tasks: list[SeedTask] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            task = SeedTask.model_validate(json.loads(line))
        except json.JSONDecodeError as err:
            raise SeedFileError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
        except ValidationError as err:
            raise SeedFileError(f"{path}:{number}: bad seed task ({_validation_summary(err)})") from None
        if task.id in first_line:
            raise SeedFileError(f"{path}:{number}: id {task.id!r} already used on line {first_line[task.id]}")
        first_line[task.id] = number
        tasks.append(task)
    if not tasks:
        raise SeedFileError(f"seed file {path} has no tasks: write one JSON task per line")
    return tasks


def sample_in_context(
    seed: list[str], generated: list[str], rng: random.Random, n_seed: int = 6, n_generated: int = 2
) -> list[str]:
    """The in-context instructions of one generation prompt: `n_seed` human-written ones, which keep
    the quality up, and `n_generated` machine ones, which push diversity; seeds fill in while fewer
    have been generated. Shuffled by `rng`, so a run is reproducible from its seed.

    Raises ValueError when the seed list is too short to fill the prompt.
    """
    from_generated = min(n_generated, len(generated))
    from_seed = n_seed + n_generated - from_generated
    if len(seed) < from_seed:
        raise ValueError(f"need {from_seed} seed instructions for the prompt, have {len(seed)}")
    chosen = rng.sample(seed, from_seed) + rng.sample(generated, from_generated)
    rng.shuffle(chosen)
    return chosen


# --- step 1: new instructions --------------------------------------------------------------------

_INSTRUCTION_PROMPT = """\
Here is a numbered list of tasks that people ask a text-only AI assistant to do. Add new tasks to \
the list. Each new task should differ from all the others in topic and in kind: mix questions, \
writing, rewriting, explanations, reasoning puzzles, small calculations, classification and advice. \
Each task is one self-contained instruction that can be answered with text alone (no images, sound, \
files or internet). Write one task per line and continue the numbering.

{examples}
{next}."""


def instruction_messages(examples: list[str]) -> list[dict]:
    """Chat messages asking the model to continue a numbered list of `examples` with new, diverse tasks.

    The prompt ends on the next number, so a model continuing it writes the new task first.
    """
    listed = "\n".join(f"{i}. {text.strip()}" for i, text in enumerate(examples, start=1))
    return [{"role": "user", "content": _INSTRUCTION_PROMPT.format(examples=listed, next=len(examples) + 1)}]


_NUMBERED = re.compile(r"^\s*(?:[*_#>]+\s*)?(?:task|instruction)?\s*#?\d+\s*[.):\-]\s*(?:[*_]+\s*)?(?P<text>.*)$", re.I)
_BULLET = re.compile(r"^\s*[-*•]\s+(?P<text>.+)$")
_CHATTER = re.compile(r"^\W*(?:sure|here|certainly|of course|okay|ok|great|absolutely|i)\b", re.I)


def _clean(text: str) -> str:
    return text.strip().strip("*_").strip().strip("\"'“”").strip()


def parse_instructions(text: str) -> list[str]:
    """The new instructions in a model's answer: numbered ("9. …", "9) …", "Task 9: …") or bulleted
    lines, numbering and markdown stripped. An unnumbered first line is the continuation of the
    prompt's last number (which the model need not repeat) unless it reads as chatter ("Sure! Here
    are…", anything ending in ":"); other unnumbered lines are junk. Duplicates are kept once.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    found = []
    for index, line in enumerate(lines):
        match = _NUMBERED.match(line) or _BULLET.match(line)
        if match:
            found.append(_clean(match["text"]))
        elif index == 0 and not line.rstrip().endswith(":") and not _CHATTER.match(line):
            found.append(_clean(line))
    return list(dict.fromkeys(t for t in found if t))


# --- step 2: is it a classification task? --------------------------------------------------------

_CLASSIFICATION_PROMPT = """\
A classification task is one whose answer is picked from a small, fixed set of labels (for example \
positive/negative, yes/no, or one of a few named categories). Say whether the task below is a \
classification task. Answer with one word: Yes or No.

Task: Tell whether the customer's message is a complaint or a compliment.
Answer: Yes

Task: Write a limerick about a forgetful cat.
Answer: No

Task: Which of the three listed cities lies furthest north?
Answer: Yes

Task: Explain how interest on a savings account grows over time.
Answer: No

Task: {instruction}
Answer:"""


def classification_messages(instruction: str) -> list[dict]:
    """Chat messages asking whether `instruction` is a classification task (answer Yes or No)."""
    return [{"role": "user", "content": _CLASSIFICATION_PROMPT.format(instruction=instruction.strip())}]


def parse_is_classification(text: str) -> bool | None:
    """True for a yes, False for a no: the first word when it is one, else the only one of the two
    the answer contains; None when it has neither or both (the caller retries or drops the task)."""
    words = re.findall(r"[a-z]+", text.lower())
    words = words[1:] if words[:1] == ["answer"] else words
    if words and words[0] in ("yes", "no"):
        return words[0] == "yes"
    said = {w for w in words if w in ("yes", "no")}
    return said == {"yes"} if len(said) == 1 else None


# --- step 3: instances ---------------------------------------------------------------------------

NO_INPUT = "<no input>"
_EMPTY_INPUTS = {"", NO_INPUT, "none", "n/a", "na", "(none)", "<none>", "-", "<noinput>", "no input", "empty"}

_INPUT_FIRST_ASK = (
    'Write examples for the task below. For each example write "Input:" with a concrete input, then '
    '"Output:" with the correct, complete answer to the task for that input. If the task needs no '
    'input, write "Input: {no_input}". Give one or two examples and nothing else.\n\nTask: {instruction}'
)
_OUTPUT_FIRST_ASK = (
    'Write examples for the classification task below. First write "Class label:" with one of the '
    'task\'s possible labels, then "Input:" with an input that belongs to that label. Give one example '
    "for each label the task has, and nothing else.\n\nTask: {instruction}"
)
# Demonstrations, as earlier turns of the conversation: a small model shown them inside the request
# copies them as its answer (SmolLM2-135M answered "The Patient Loaf" to every task); as turns it
# answers the last one. An output equal to a demonstration's is still set aside (`copied_demonstration`).
_INPUT_FIRST_DEMOS = (
    ("Turn the temperature in Celsius into Fahrenheit.", "Input: 25 °C\nOutput: 77 °F\n\nInput: -10 °C\nOutput: 14 °F"),
    ("Suggest a name for a bakery that sells only bread made with sourdough.", f"Input: {NO_INPUT}\nOutput: The Patient Loaf"),
)
_OUTPUT_FIRST_DEMOS = (
    (
        "Decide whether the animal named is a mammal or a bird.",
        "Class label: mammal\nInput: dolphin\n\nClass label: bird\nInput: penguin",
    ),
)


def instance_messages(instruction: str, is_classification: bool) -> list[dict]:
    """Chat messages asking for instances of `instruction`, after demonstration turns: input first for
    ordinary tasks; for classification, label first, because a model that writes the input first tends
    to give inputs of the majority label (the paper's reason for output-first generation)."""
    ask, demos = (_OUTPUT_FIRST_ASK, _OUTPUT_FIRST_DEMOS) if is_classification else (_INPUT_FIRST_ASK, _INPUT_FIRST_DEMOS)
    messages = []
    for task, answer in demos:
        messages += [
            {"role": "user", "content": ask.format(instruction=task, no_input=NO_INPUT)},
            {"role": "assistant", "content": answer},
        ]
    return messages + [{"role": "user", "content": ask.format(instruction=instruction.strip(), no_input=NO_INPUT)}]


# A field name starts a line (any case, maybe in markdown), or follows a space mid-line when
# capitalised as the prompt writes it ("Input: 3 apples Output: 6 apples").
_FIELD = re.compile(
    r"(?:^[ \t]*[*_#]*[ \t]*(?i:(class[ \t]+label|label|input|output))|(?<=[ \t])(Class label|Label|Input|Output))"
    r"[ \t]*\d*[ \t]*:[*_]*[ \t]*",
    re.M,
)
# A header that ends a field's value: the next task or example, or the model's own notes.
_STOP = re.compile(
    r"^[ \t]*[*_#]*[ \t]*(?:task[ \t]*\d*[ \t]*:|example\b[ \t]*\d*[ \t]*[:.]?[ \t]*$|example[ \t]+\d|note[ \t]*:|#{2,})",
    re.I | re.M,
)


def _fields(text: str) -> list[tuple[str, str]]:
    """The ("input" | "output" | "label", value) fields of an answer, in order; a value runs to the
    next field or to a header line ("Task:", "Example 2", "Note: …"), which ends it."""
    marks = list(_FIELD.finditer(text))
    fields = []
    for mark, after in zip(marks, marks[1:] + [None]):
        value = text[mark.end() : after.start() if after else len(text)]
        stop = _STOP.search(value)
        value = value[: stop.start()] if stop else value
        kind = (mark[1] or mark[2]).lower()
        fields.append(("output" if kind == "output" else "input" if kind == "input" else "label", value.strip()))
    return fields


def _input_value(value: str) -> str:
    return "" if value.strip().strip(".").lower() in _EMPTY_INPUTS else value


def parse_instances(text: str, is_classification: bool) -> list[Instance]:
    """The instances in a model's answer to `instance_messages`; junk before, between and after is
    ignored, and an example with a field missing is dropped.

    Ordinary tasks: each "Output:" closes an instance, with the "Input:" before it (or none). For
    classification the label ("Class label:", or "Output:" if the model wrote it that way) is the
    output, paired with the "Input:" next to it, whichever came first. Duplicates are kept once.
    """
    instances: list[Instance] = []
    pending: dict[str, str] = {}
    for kind, value in _fields(text):
        if is_classification:
            kind = "input" if kind == "input" else "output"
            pending[kind] = value
            if len(pending) == 2:
                instances.append(Instance(input=_input_value(pending["input"]), output=pending["output"]))
                pending = {}
        elif kind == "input":
            pending["input"] = value
        elif kind == "output":
            instances.append(Instance(input=_input_value(pending.pop("input", "")), output=value))
    return list({(i.input, i.output): i for i in instances}.values())


def instance_rejection(instance: Instance) -> str | None:
    """Why the paper's heuristics drop this instance (a snake_case reason), or None to keep it:
    an empty output, an output that only repeats the input, or text cut off after a colon; and ours,
    an output copied from a demonstration of the prompt."""
    given, output = instance.input.strip(), instance.output.strip()
    if not output:
        return "empty_output"
    if output in _DEMONSTRATED_OUTPUTS or (given, output) in _DEMONSTRATED_PAIRS:
        return "copied_demonstration"
    if given == output:
        return "input_equals_output"
    if given.endswith(":") or output.endswith(":"):
        return "ends_with_colon"
    return None


def _demonstrated() -> tuple[set[str], set[tuple[str, str]]]:
    """The demonstrations' free-text outputs, and every demonstrated (input, output) pair: a class label
    alone may well recur in a real task, a label with the demonstration's input may not."""
    outputs = {i.output for _, answer in _INPUT_FIRST_DEMOS for i in parse_instances(answer, False)}
    pairs = {(i.input, i.output) for _, answer in _INPUT_FIRST_DEMOS for i in parse_instances(answer, False)}
    pairs |= {(i.input, i.output) for _, answer in _OUTPUT_FIRST_DEMOS for i in parse_instances(answer, True)}
    return outputs, pairs


_DEMONSTRATED_OUTPUTS, _DEMONSTRATED_PAIRS = _demonstrated()


def to_messages(instruction: str, instance: Instance) -> list[dict]:
    """One SFT example as chat messages: the instruction (and the input, after a blank line) from the
    user, the output from the assistant."""
    prompt = instruction.strip() + (f"\n\n{instance.input.strip()}" if instance.input.strip() else "")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": instance.output.strip()}]
