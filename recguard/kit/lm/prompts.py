"""Prompt templates shipped by LLM plugins as package data."""

from __future__ import annotations

from recguard.errors import RecguardError


def load_prompt(package: str, file_name: str) -> str:
    """The text of the prompt template ``file_name`` that the plugin ``package`` ships in
    its ``prompts/`` folder, as package data: there in a wheel install as in a checkout."""
    from importlib import resources

    try:
        return (resources.files(package) / "prompts" / file_name).read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as exc:
        raise RecguardError(f"prompt template {file_name} of {package} cannot be read ({exc}); "
                            f"reinstall {package.replace('_', '-')}") from exc
