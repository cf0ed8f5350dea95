"""Scripted teacher models for the local OpenAI-compatible test servers (`tests/fake_openai.py`): what a provider
answers, read from the prompts srl-forge sends, as a real model reads them.

- `good`: a careful model. Its loremaster cites every entry, its designer proposes playable encounters, its writer
  takes the brief's best action and keeps the dialogue constraints, its reviewers check their aspect against
  the brief (the action among the acceptable ones, the recalled lore in the dossier, the line in the voice), and
  its director keeps the first proposal with no issue.
- `lazy`: writes well-formed trajectories that always answer `observe`, and approves whatever it reviews.
- `OneTrajectoryScript`: whatever the encounter, the writer answers the vampire's threshold trajectory (with the
  action asked for), the reviewers approve and the director keeps the first proposal.
"""

import json
import re

from tests.helpers import make_encounter

STEP = re.compile(r"^\d+\. \*\*([A-Z ]+)\*\* (.*)$", re.MULTILINE)
DOSSIER_LINE = re.compile(r"^- \[\w+\] (\S+): (.*)$", re.MULTILINE)
RULE_LINE = re.compile(r"^- (\S+) \(priority (\d+), (\w+)\): (.*?) — ", re.MULTILINE)
SECTIONS = ("traits", "weaknesses", "speech_style", "taboos", "facts")


def _system(request) -> str:
    return request["messages"][0]["content"]


def _user(request) -> str:
    return request["messages"][-1]["content"]


def acceptable(prompt: str) -> list[str]:
    found = re.search(r"^Acceptable actions, best first: (.*)$", prompt, re.MULTILINE)
    return [] if not found or found.group(1) == "none" else [a.strip() for a in found.group(1).split(",")]


def dialogue(prompt: str) -> tuple[list[list[str]], list[str], int | None]:
    """The brief's dialogue constraints: marker groups (one of each needed), banned words, word limit."""
    found = re.search(r"^The spoken line must: (.*)\.$", prompt, re.MULTILINE)
    if not found:
        return [], [], None
    groups, banned, limit = [], [], None
    for part in found.group(1).split("; "):
        quoted = re.findall(r"'([^']*)'", part)
        if part.startswith("use one of"):
            groups.append(quoted)
        elif part.startswith("never the words"):
            banned += quoted
        elif part.startswith("at most"):
            limit = int(part.split()[2])
    return groups, banned, limit


def line_problems(line: str, prompt: str) -> list[str]:
    groups, banned, limit = dialogue(prompt)
    lowered = line.lower()
    problems = [f"lacks one of {g}" for g in groups if not any(m.lower() in lowered for m in g)]
    problems += [f"uses {w!r}" for w in banned if re.search(rf"\b{re.escape(w.lower())}\b", lowered)]
    if limit is not None and len(re.findall(r"[a-z']+", lowered)) > limit:
        problems.append("too long")
    return problems


def trajectory(prompt: str, action: str) -> str:
    lore = DOSSIER_LINE.search(prompt)
    rule = RULE_LINE.search(prompt)
    groups, _, _ = dialogue(prompt)
    markers = " ".join(g[0] for g in groups)
    line = f"Good evening, {markers}; be welcome, and be still." if markers else "Good evening; be still."
    steps = [
        {"title": "ASSESS", "thought": "Who stands before me?", "action": "A mortal before me, in the night."},
        {"title": "RECALL LORE", "thought": "What my kind knows.", "action": f"{lore.group(1)}: {lore.group(2)}"},
        {
            "title": "APPLY RULE",
            "thought": "What binds me.",
            "action": f"{rule.group(1)} (priority {rule.group(2)}): {rule.group(4)}." if rule else "No rule binds me.",
        },
        {"title": "DECIDE", "thought": f"I choose {action}.", "action": f"ACTION: {action}"},
        {"title": "SPEAK", "thought": "In the voice of my kind.", "action": f'SAY: "{line}"'},
    ]
    return json.dumps({"steps": steps, "citations": [lore.group(1)], "rule_ids": [rule.group(1)] if rule else []})


def review(request) -> str:
    aspect = re.search(r"aspect '(\w+)'", _system(request)).group(1)
    prompt = _user(request)
    steps = STEP.findall(prompt.split("Trajectory:\n", 1)[1])
    issues = []
    if aspect == "rules":
        decided = [a.removeprefix("ACTION: ") for title, a in steps if title == "DECIDE"]
        issues = [f"{a} is not acceptable" for a in decided if a not in acceptable(prompt)]
    elif aspect == "lore":
        known = {f"{source}: {text}" for source, text in DOSSIER_LINE.findall(prompt)}
        issues = [f"not in the dossier: {a}" for title, a in steps if title == "RECALL LORE" and a not in known]
    else:
        said = [a.removeprefix('SAY: "').removesuffix('"') for title, a in steps if title == "SPEAK"]
        issues = [p for line in said for p in line_problems(line, prompt)] or ([] if said else ["no line"])
    return json.dumps({"aspect": aspect, "approved": not issues, "issues": issues})


def consolidate(request) -> str:
    draft = {name: [] for name in SECTIONS}
    document = None
    section = "facts"
    for line in _user(request).splitlines():
        if line.startswith("## ") and " — " in line:
            document, section = line[3:].split(" — ")[0], "facts"
        elif line.startswith("## "):
            name = line[3:].strip().lower().replace(" ", "_")
            section = name if name in SECTIONS else "facts"
        elif line.startswith("- ") and document:
            draft[section].append({"text": line[2:].strip(), "source": document})
    return json.dumps(draft)


def design(request) -> str:
    species = re.search(r"^Species: (\w+)", _user(request), re.MULTILINE).group(1)
    proposals = [
        make_encounter(species, player={"action": "talk", "utterance": "Good evening."}),
        make_encounter(species, player={"party_size": 4, "faction": "hunters", "action": "attack"}),
        make_encounter(species, game={"time_of_day": "dusk"}, location={"kind": "forest"}),
    ]
    return json.dumps({"encounters": [json.loads(e.model_dump_json()) for e in proposals]})


def direct(request) -> str:
    listing = _user(request).split("### Proposal ")[1:]
    votes = [block.split("Reviews: ")[-1].strip().split("; ") for block in listing]
    clean = [i for i, reviews in enumerate(votes) if all(r.endswith(": ok") for r in reviews)]
    return json.dumps({"chosen": clean[0] if clean else 0, "steps": None})


def good(request) -> str:
    system = _system(request)
    if "loremaster" in system:
        return consolidate(request)
    if "game designer" in system:
        return design(request)
    if "trajectory writer" in system:
        best = acceptable(_user(request))
        return trajectory(_user(request), best[0] if best else "observe")
    if "strict reviewer" in system:
        return review(request)
    if "director" in system:
        return direct(request)
    raise AssertionError(f"unexpected role: {system[:60]}")


def lazy(request) -> str:
    system = _system(request)
    if "trajectory writer" in system:
        return trajectory(_user(request), "observe")
    if "strict reviewer" in system:
        aspect = re.search(r"aspect '(\w+)'", system).group(1)
        return json.dumps({"aspect": aspect, "approved": True, "issues": []})
    return good(request)


class OneTrajectoryScript:
    """What the fake endpoint answers, per role (read from the system prompt): one fixed trajectory."""

    def __init__(self, writer_action: str = "request_invitation"):
        self.writer_action = writer_action

    def __call__(self, request) -> str:
        system = _system(request)
        if "trajectory writer" in system:
            line = "Will you not invite me in, my dear? The night is so cold."
            return json.dumps(
                {
                    "steps": [
                        {
                            "title": "ASSESS",
                            "thought": "A door between us.",
                            "action": "Night; a mortal talks behind a door.",
                        },
                        {
                            "title": "RECALL LORE",
                            "thought": "Thresholds.",
                            "action": "vampire/weaknesses: Thresholds: cannot enter a dwelling uninvited.",
                        },
                        {
                            "title": "APPLY RULE",
                            "thought": "I may not cross.",
                            "action": "vampire.threshold (priority 85): forbid attack, feed.",
                        },
                        {"title": "DECIDE", "thought": "Ask.", "action": f"ACTION: {self.writer_action}"},
                        {"title": "SPEAK", "thought": "Courtly.", "action": f'SAY: "{line}"'},
                    ],
                    "citations": ["vampire/weaknesses"],
                    "rule_ids": ["vampire.threshold"],
                }
            )
        if "strict reviewer" in system:
            return json.dumps({"aspect": "rules", "approved": True, "issues": []})
        if "director" in system:
            return json.dumps({"chosen": 0, "steps": None})
        raise AssertionError(f"unexpected role: {system[:60]}")
