"""An optional judge of spoken lines: any OpenAI-compatible endpoint scores a line for character and
relevance on a rubric, through instructor. Off by default; cached by the role client; reported next
to the verifiable metrics in evaluation and never used as a training reward (an LLM's opinion is
not something the rules engine can verify, and a policy would learn to please it)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, Field

from srl_forge.teachers.openai_compatible import RoleClient

RUBRIC = """Score the monster's line on two 1-5 scales.
character: 5 = unmistakably this species' voice and manner; 3 = generic dark fantasy; 1 = out of character
(modern, polite assistant talk, another species' voice).
relevance: 5 = answers this very encounter (what the player did, said, carries; the place; the hour);
3 = fits any encounter of this kind; 1 = unrelated or nonsensical.
Judge only the line; the decision is verified elsewhere."""


class LineVerdict(BaseModel):
    character: int = Field(ge=1, le=5)
    relevance: int = Field(ge=1, le=5)
    reason: str = Field(default="", max_length=300)


class LineJudge:
    def __init__(self, client: RoleClient, concurrency: int = 4):
        self.client = client
        self.concurrency = concurrency

    def judge(self, species: str, encounter_description: str, line: str) -> LineVerdict:
        return self.client.complete(
            [
                {
                    "role": "system",
                    "content": f"You judge lines spoken by NPC monsters in a dark-fantasy game.\n{RUBRIC}",
                },
                {
                    "role": "user",
                    "content": f'Species: {species}\nEncounter:\n{encounter_description}\n\nLine: "{line}"',
                },
            ],
            LineVerdict,
        )

    def judge_many(self, species: str, items: Sequence[tuple[str, str]]) -> list[LineVerdict]:
        """Verdicts for (encounter description, line) pairs, in order."""
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(lambda item: self.judge(species, *item), items))
