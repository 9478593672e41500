"""Self-Instruct's pure side: the seed file, the paper's filters, the parsers, and a novelty filter
that scores exactly as Google's rouge-score does."""

from __future__ import annotations

import json
import random

import pytest
from rouge_score import rouge_scorer

from pipelines.common.errors import UserError
from pipelines.synthetic.self_instruct import (
    NO_INPUT,
    PROMPT_VERSION,
    SEED_TASKS,
    Instance,
    NoveltyFilter,
    SeedFileError,
    classification_messages,
    instance_messages,
    instance_rejection,
    instruction_messages,
    instruction_rejection,
    load_seed_tasks,
    parse_instances,
    parse_instructions,
    parse_is_classification,
    sample_in_context,
    to_messages,
)

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(candidate: str, pool_item: str) -> float:
    return SCORER.score(candidate, pool_item)["rougeL"].fmeasure


def task_line(**fields) -> str:
    task = {"id": "t1", "name": "n", "instruction": "Do a thing well.", "instances": [{"input": "", "output": "x"}]}
    return json.dumps({**task, "is_classification": False, **fields})


# --- seed file -----------------------------------------------------------------------------------


def test_shipped_seed_file_has_enough_diverse_tasks_that_pass_the_filters():
    tasks = load_seed_tasks(SEED_TASKS)
    assert len(tasks) >= 30
    assert sum(t.is_classification for t in tasks) >= 6
    assert [t.id for t in tasks] == [f"seed_task_{i}" for i in range(len(tasks))]
    assert len({t.name for t in tasks}) == len(tasks)
    for task in tasks:
        assert 1 <= len(task.instances) <= 2, task.id
        assert instruction_rejection(task.instruction) is None, task.instruction
        assert all(instance_rejection(i) is None for i in task.instances), task.id
    novelty = NoveltyFilter()
    assert all(novelty.accept(t.instruction)[0] for t in tasks)  # the seeds are not near-copies of each other


def test_a_broken_json_line_is_named_by_file_and_line_number(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text(task_line() + "\n\n" + '{"id": "t2", "name": \n')
    with pytest.raises(SeedFileError, match=r"seeds\.jsonl:3: not valid JSON"):
        load_seed_tasks(path)


def test_a_missing_or_invalid_field_names_the_line_and_the_field(tmp_path):
    path = tmp_path / "seeds.jsonl"
    broken = json.loads(task_line(id="t2"))
    del broken["instances"][0]["output"]
    path.write_text(task_line() + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(SeedFileError, match=r"seeds\.jsonl:2: .*instances\.0\.output: Field required"):
        load_seed_tasks(path)
    path.write_text(task_line(is_classification="maybe") + "\n")
    with pytest.raises(SeedFileError, match=r":1: .*is_classification"):
        load_seed_tasks(path)
    path.write_text(task_line(instances=[]) + "\n")
    with pytest.raises(SeedFileError, match=r":1: .*instances"):
        load_seed_tasks(path)


def test_empty_missing_and_duplicate_id_seed_files_are_user_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(SeedFileError, match="no tasks"):
        load_seed_tasks(empty)
    with pytest.raises(UserError, match="not found"):
        load_seed_tasks(tmp_path / "absent.jsonl")
    twice = tmp_path / "twice.jsonl"
    twice.write_text(task_line() + "\n" + task_line(name="other") + "\n")
    with pytest.raises(SeedFileError, match=r"twice\.jsonl:2: id 't1' already used on line 1"):
        load_seed_tasks(twice)


def test_the_papers_seed_format_loads_with_defaults(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text(task_line(instances=[{"output": "only an output"}]) + "\n")
    (task,) = load_seed_tasks(path)
    assert task.instances == [Instance(input="", output="only an output")] and PROMPT_VERSION == "self-instruct-v1"


# --- in-context sampling and the instruction prompt ----------------------------------------------


def test_sample_in_context_takes_six_seeds_and_two_generated_and_fills_from_seeds():
    seed = [f"seed {i}" for i in range(20)]
    generated = [f"generated {i}" for i in range(5)]
    chosen = sample_in_context(seed, generated, random.Random(1))
    assert len(chosen) == len(set(chosen)) == 8
    assert sum(c.startswith("seed") for c in chosen) == 6
    assert chosen == sample_in_context(seed, generated, random.Random(1))  # reproducible from the rng
    assert sum(c.startswith("seed") for c in sample_in_context(seed, generated[:1], random.Random(1))) == 7
    assert sum(c.startswith("seed") for c in sample_in_context(seed, [], random.Random(1))) == 8
    with pytest.raises(ValueError, match="need 8 seed instructions"):
        sample_in_context(seed[:7], [], random.Random(1))


def test_instruction_prompt_is_a_numbered_list_ending_on_the_next_number():
    examples = [f"Example task number {i}." for i in range(1, 9)]
    (message,) = instruction_messages(examples)
    assert message["role"] == "user"
    assert "1. Example task number 1.\n" in message["content"] and message["content"].endswith("8. Example task number 8.\n9.")


def test_parse_instructions_reads_numbered_bulleted_and_markdown_lines_and_drops_chatter():
    answer = """Sure! Here are some more tasks:

9. Write a thank-you note to a neighbour who watered your plants.
10) Explain why leaves change colour in autumn.
**11.** Convert the recipe below to serve six people.
Task 12: Decide whether the sentence is sarcastic.
- Suggest three names for a cycling club.
10) Explain why leaves change colour in autumn.
Input: a recipe for four
13.
I hope these help!"""
    assert parse_instructions(answer) == [
        "Write a thank-you note to a neighbour who watered your plants.",
        "Explain why leaves change colour in autumn.",
        "Convert the recipe below to serve six people.",
        "Decide whether the sentence is sarcastic.",
        "Suggest three names for a cycling club.",
    ]


def test_parse_instructions_takes_an_unnumbered_first_line_as_the_continuation():
    answer = "Describe the smell of rain to someone who has never noticed it.\n10. List four uses for an old towel."
    assert parse_instructions(answer) == [
        "Describe the smell of rain to someone who has never noticed it.",
        "List four uses for an old towel.",
    ]
    assert parse_instructions("") == [] and parse_instructions("Here you go:\n\n") == []


# --- the paper's heuristic filters ---------------------------------------------------------------


@pytest.mark.parametrize(
    "instruction, reason",
    [
        ("Summarize it.", "too_short"),
        ("   ", "too_short"),
        ("Describe " + "the very long thing " * 40, "too_long"),
        ("Describe the image of a cat in detail.", "blacklisted_keyword"),
        ("Create a FLOWCHART of the process below.", "blacklisted_keyword"),
        ("Go  to the nearest shop and buy milk.", "blacklisted_keyword"),
        ("Plot the temperatures from last week.", "blacklisted_keyword"),
        ("Write a program that sorts a list of names.", "write_a_program"),
        ("write a program to add two numbers", "write_a_program"),
        ('"Summarize the article in three sentences."', "leading_punctuation"),
        ("- Summarize the article in three sentences.", "leading_punctuation"),
        ("Éxplain the rules of chess briefly.", "non_ascii_start"),
        ("Update the user profile description to sound friendlier.", None),  # "profile" is not "file"
        ("Explain what a mapping between two sets is.", None),  # nor "mapping" "map"
        ("Write a poem about the first snow of winter.", None),
    ],
)
def test_instruction_rejection_applies_each_rule(instruction, reason):
    assert instruction_rejection(instruction) == reason


@pytest.mark.parametrize(
    "instance, reason",
    [
        (Instance(input="hello", output="  "), "empty_output"),
        (Instance(input="Paris", output="Paris "), "input_equals_output"),
        (Instance(input="Here is the list:", output="apples"), "ends_with_colon"),
        (Instance(input="", output="The steps are as follows:"), "ends_with_colon"),
        (Instance(input="", output="A fine answer."), None),
    ],
)
def test_instance_rejection_applies_each_rule(instance, reason):
    assert instance_rejection(instance) == reason


# --- classification and instances ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, expected",
    [("Yes", True), (" no.", False), ("Answer: Yes.", True), ("**No**, it asks for an essay.", False),
     ("I think the answer is yes", True), ("It depends.", None), ("", None), ("maybe yes, maybe no", None)],
)  # fmt: skip
def test_parse_is_classification_reads_yes_and_no(answer, expected):
    assert parse_is_classification(answer) is expected


def test_classification_prompt_ends_on_the_task_to_judge():
    (message,) = classification_messages("  Is this email spam?  ")
    assert message["content"].endswith("Task: Is this email spam?\nAnswer:")


def test_instance_prompts_are_input_first_or_label_first_and_their_demonstrations_parse():
    ordinary = instance_messages("Translate the word into French.", is_classification=False)
    labelled = instance_messages("Is the number odd or even?", is_classification=True)
    assert [m["role"] for m in ordinary] == ["user", "assistant", "user", "assistant", "user"]
    assert ordinary[-1]["content"].endswith("Task: Translate the word into French.")
    assert labelled[-1]["content"].index("Class label:") < labelled[-1]["content"].index("Input:")
    demos = "\n\n".join(m["content"] for m in ordinary if m["role"] == "assistant")
    assert (
        parse_instances(demos, False)
        == [
            Instance(input="25 °C", output="77 °F"),
            Instance(input="", output="The Patient Loaf"),
            Instance(input="-10 °C", output="14 °F"),
        ]
        or len(parse_instances(demos, False)) == 3
    )
    assert NO_INPUT in ordinary[-1]["content"]
    assert parse_instances(labelled[1]["content"], True) == [
        Instance(input="dolphin", output="mammal"),
        Instance(input="penguin", output="bird"),
    ]
    # a small model that copies a demonstration gets that instance set aside
    assert instance_rejection(Instance(input="", output="The Patient Loaf")) == "copied_demonstration"
    assert instance_rejection(Instance(input="dolphin", output="mammal")) == "copied_demonstration"
    assert instance_rejection(Instance(input="a whale", output="mammal")) is None  # a label alone recurs in real tasks


def test_parse_instances_reads_a_realistic_answer_and_ignores_junk():
    answer = """Sure, here are two examples.

**Input:** A train travels 120 km in 2 hours.
**Output:** Its average speed is 60 km/h:
- distance 120 km
- time 2 h

Example 2
Input: none
Output: Drink water before you feel thirsty.
Note: both answers are short.
Output: a stray output with no input"""
    assert parse_instances(answer, False) == [
        Instance(
            input="A train travels 120 km in 2 hours.",
            output="Its average speed is 60 km/h:\n- distance 120 km\n- time 2 h",
        ),
        Instance(input="", output="Drink water before you feel thirsty."),
        Instance(input="", output="a stray output with no input"),
    ]
    assert parse_instances("Input: 3 apples and 3 more Output: 6 apples", False) == [
        Instance(input="3 apples and 3 more", output="6 apples")
    ]
    assert parse_instances("I cannot help with that.", False) == []


def test_parse_instances_pairs_labels_with_inputs_for_classification():
    answer = """Class label: positive
Input: The soup was delicious and the staff were lovely.

Class label: negative
Input: We waited an hour and the food was cold.

Class label: neutral
Input: The restaurant opens at noon.
Class label: mixed"""
    assert parse_instances(answer, True) == [
        Instance(input="The soup was delicious and the staff were lovely.", output="positive"),
        Instance(input="We waited an hour and the food was cold.", output="negative"),
        Instance(input="The restaurant opens at noon.", output="neutral"),
    ]  # the label with no input is dropped
    input_first = "Input: 7\nOutput: odd\n\nInput: 10\nOutput: even"
    assert parse_instances(input_first, True) == [Instance(input="7", output="odd"), Instance(input="10", output="even")]


def test_to_messages_puts_the_input_after_the_instruction():
    assert to_messages("Add the numbers.", Instance(input="2 and 3", output="5")) == [
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert to_messages("Tell a joke.", Instance(output="Why did the chicken…"))[0] == {"role": "user", "content": "Tell a joke."}


# --- the novelty filter --------------------------------------------------------------------------

WORDS = (
    "write explain the a of to and short poem story about summarize list three reasons why sentence "
    "rewrite formal friendly email customer river mountain city night ocean apple budget plan weekly "
    "describe compare two ideas simple words child teacher recipe soup"
).split()


def random_instruction(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(1, 18))
    if rng.random() < 0.2:  # punctuation, case and digits, which rouge-score's tokenizer folds or drops
        words[rng.randrange(len(words))] = rng.choice(["Don't", "3rd", "e-mail", "(ocean)", "naïve", "!!"])
    return " ".join(words)


def near_duplicate(text: str, rng: random.Random) -> str:
    words = text.split() or ["poem"]
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(words))
        edit = rng.randrange(3)
        if edit == 0:
            words[at] = rng.choice(WORDS)
        elif edit == 1 and len(words) > 1:
            del words[at]
        else:
            words.insert(at, rng.choice(WORDS))
    return " ".join(words)


def test_novelty_filter_scores_equal_rouge_score_pair_by_pair():
    rng = random.Random(7)
    pairs = []
    for _ in range(300):
        a = random_instruction(rng)
        pairs.append((a, near_duplicate(a, rng) if rng.random() < 0.5 else random_instruction(rng)))
    pairs += [("", "write a poem"), ("!!!", "write a poem"), ("poem poem poem", "poem"), ("Write a POEM.", "write a poem")]
    for candidate, pool_item in pairs:
        novelty = NoveltyFilter()
        novelty.add(pool_item)
        score, most_similar = novelty.max_rouge_l(candidate)
        expected = rouge_l(candidate, pool_item)
        assert score == expected, (candidate, pool_item)
        assert most_similar == (pool_item if expected > 0 else None)
    assert sum(rouge_l(a, b) >= 0.7 for a, b in pairs) > 30  # the pairs cross the threshold both ways


def test_novelty_filter_max_over_a_pool_equals_the_naive_loop_below_and_above_the_threshold():
    rng = random.Random(11)
    pool = [random_instruction(rng) for _ in range(150)]
    novelty = NoveltyFilter()
    for item in pool:
        novelty.add(item)
    candidates = [near_duplicate(rng.choice(pool), rng) for _ in range(60)] + [random_instruction(rng) for _ in range(60)]
    above = 0
    for candidate in candidates:
        scores = [rouge_l(candidate, item) for item in pool]
        best = max(scores)
        assert novelty.max_rouge_l(candidate) == (best, pool[scores.index(best)] if best > 0 else None)
        above += best >= 0.7
    assert 10 < above < len(candidates) - 10
    assert len(novelty) == len(pool)  # scoring leaves the pool as it was


def test_novelty_filter_rejects_a_near_duplicate_and_keeps_a_new_task():
    novelty = NoveltyFilter(threshold=0.7)
    novelty.add("Write a short poem about the ocean at night.")
    duplicate = "Write a short poem about the sea at night."
    accepted, score = novelty.accept(duplicate)
    assert not accepted and score == rouge_l(duplicate, "Write a short poem about the ocean at night.") >= 0.7
    assert len(novelty) == 1
    new = "Explain how a bill becomes law in three steps."
    accepted, score = novelty.accept(new)
    assert accepted and score == rouge_l(new, "Write a short poem about the ocean at night.")
    assert len(novelty) == 2
    assert novelty.accept("Explain how a bill becomes a law in three short steps.")[0] is False  # now in the pool


def test_novelty_filter_threshold_is_inclusive_and_validated():
    a, b = "one two three four five six seven eight nine ten", "one two three four five six seven x y z"
    exact = rouge_l(a, b)
    assert abs(exact - 0.7) < 1e-12
    novelty = NoveltyFilter(threshold=exact)
    novelty.add(b)
    assert novelty.accept(a) == (False, exact)  # at the threshold is too similar, as in the paper (keep only < 0.7)
    with pytest.raises(ValueError):
        NoveltyFilter(threshold=0)
