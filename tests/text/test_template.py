"""Tests for diffa.text.template: the authors' prompt layout, prompt_len and audio_pos."""
import pytest

from diffa.text.template import (
    SYSTEM_PROMPT,
    SYSTEM_PROMPT_DIFFA2,
    encode_example,
    prompt_text,
)

# The authors' template (DIFFA's released code), written out literally.
EXPECTED_PROMPT = (
    "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\n"
    "You are a helpful voice assistant.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n"
    "This is the audio: <audio>. What is the speaker saying?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
PREFIX = ("<|startoftext|><|start_header_id|>system<|end_header_id|>\n\n"
          "You are a helpful voice assistant.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nThis is the audio: ")


def test_prompt_text_is_exactly_the_spec_layout():
    assert prompt_text("What is the speaker saying?") == EXPECTED_PROMPT


def test_system_prompts():
    assert SYSTEM_PROMPT == "You are a helpful voice assistant."
    assert SYSTEM_PROMPT_DIFFA2 == (
        "You are a helpful voice assistant. Imagine you can hear the audio clips. "
        "Focus on the audios and respond directly to the prompts.")
    custom = prompt_text("Q?", system=SYSTEM_PROMPT_DIFFA2)
    assert custom.startswith(
        "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\n" + SYSTEM_PROMPT_DIFFA2
        + "<|eot_id|>")


def test_encode_example_round_trip(tok):
    ex = encode_example(tok, "What is the speaker saying?", answer="A calm woman.")
    assert ex.prompt_len == len(tok.encode(EXPECTED_PROMPT))
    assert tok.decode(ex.input_ids[:ex.prompt_len], skip_special_tokens=False) == EXPECTED_PROMPT
    assert tok.decode(ex.input_ids, skip_special_tokens=False) == (
        EXPECTED_PROMPT + "A calm woman.<|eot_id|>")
    assert ex.input_ids[ex.prompt_len:] == tok.encode("A calm woman.") + [tok.eot_id]
    assert ex.input_ids[0] == tok.bos_id and ex.input_ids.count(tok.bos_id) == 1


def test_audio_pos_follows_the_split_rule(tok):
    ex = encode_example(tok, "What is the speaker saying?")
    assert ex.audio_pos == len(tok.encode(PREFIX)) - 1
    assert 0 < ex.audio_pos < ex.prompt_len
    before = tok.decode(ex.input_ids[:ex.audio_pos], skip_special_tokens=False)
    after = tok.decode(ex.input_ids[ex.audio_pos:], skip_special_tokens=False)
    assert before.endswith("\n\nThis is the audio:")
    assert after.startswith(" <audio>. What is the speaker saying?")


def test_inference_prompt_has_no_answer(tok):
    ex = encode_example(tok, "Transcribe the audio.", system=SYSTEM_PROMPT_DIFFA2)
    assert len(ex.input_ids) == ex.prompt_len
    assert ex.input_ids[-1] != tok.eot_id  # ends with the assistant header and "\n\n"
    assert tok.decode(ex.input_ids, skip_special_tokens=False).endswith(
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_empty_answer_is_just_eot(tok):
    ex = encode_example(tok, "Say nothing.", answer="")
    assert ex.input_ids[ex.prompt_len:] == [tok.eot_id]


def test_audio_pos_moves_with_the_system_prompt(tok):
    short = encode_example(tok, "Q?", system="Hi.")
    long = encode_example(tok, "Q?")
    assert long.audio_pos - short.audio_pos == (
        len(tok.encode(SYSTEM_PROMPT)) - len(tok.encode("Hi.")))


@pytest.mark.parametrize("kwargs,match", [
    (dict(instruction=None), "instruction"),
    (dict(instruction="Q?", answer=3), "answer"),
])
def test_bad_arguments(tok, kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode_example(tok, **kwargs)
