"""Training prompts from a row: the caption, the caption plus the paper's emotion sentence, or a template."""

from __future__ import annotations

from emovid_datasets.taxonomy import emotion_prompt

PROMPT_PRESETS: tuple[str, ...] = ("caption+emotion", "caption")
TEMPLATE_FIELDS: tuple[str, ...] = ("caption", "emotion", "valence", "source", "clip_id")


def check_prompt(prompt: str) -> str:
    """Return ``prompt`` if it is a preset or a format string using only the TEMPLATE_FIELDS, e.g. "{caption}"."""
    if prompt in PROMPT_PRESETS:
        return prompt
    if "{" not in prompt:
        raise ValueError(f"prompt must be one of {', '.join(PROMPT_PRESETS)} or a format string such as "
                         f"'{{caption}} ({{emotion}})', got {prompt!r}")
    try:
        prompt.format(**{name: "" for name in TEMPLATE_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        fields = ", ".join("{" + name + "}" for name in TEMPLATE_FIELDS)
        raise ValueError(f"prompt template {prompt!r} may only use {fields} ({exc!r})") from exc
    return prompt


def format_prompt(prompt: str, *, caption: str, emotion: str, **names: str) -> str:
    """The prompt for one clip; "caption+emotion" appends ` The video is in the "<emotion>" emotion.`."""
    caption = (caption or "").strip()
    if prompt == "caption+emotion":
        return emotion_prompt(caption, emotion)
    if prompt == "caption":
        return caption
    return prompt.format(caption=caption, emotion=emotion, **names)
