"""The answer rule: a person answers every call within ten rings.

Pure functions of plain values (see DESIGN.md, "Answer within ten rings").
"""
from __future__ import annotations

from dataclasses import dataclass

# Outcomes in which the caller never reached a person.
UNANSWERED = ("abandoned", "no_answer", "voicemail", "failed")


def microseconds(seconds: float) -> int:
    """Seconds as whole microseconds, the resolution of the times they come from, so a boundary
    compares exactly: in floating point, 2.4 / 0.8 is 2.9999999999999996 (ring 3, not 4), and
    3 × 0.6 is 1.7999999999999998 (so 1.8 s would miss a 1.8 s target)."""
    return round(seconds * 1_000_000)


def rings_for(answer_seconds: float, ring_period_seconds: float) -> int:
    """The ring during which the call was answered: 0 s to <3 s is ring 1."""
    return max(microseconds(answer_seconds), 0) // microseconds(ring_period_seconds) + 1


@dataclass(frozen=True)
class AnswerJudgement:
    countable: bool
    result: str | None  # "met", "breached", or None (not counted, or not decided yet)
    reason: str


def judge_answer(
    *,
    outcome: str,
    in_hours: bool,
    answer_seconds: float | None,
    waited_seconds: float | None,
    target_seconds: float,
) -> AnswerJudgement:
    """Whether a call counts for the rule, and whether it met it.

    `waited_seconds` is how long the caller had waited when the wait ended without an
    answer (hung up, went to voicemail) or, for a call still waiting, until now.
    """
    if not in_hours:
        return AnswerJudgement(False, None, "offered outside opening hours")
    target = microseconds(target_seconds)
    if outcome == "answered" and answer_seconds is not None:
        if microseconds(answer_seconds) <= target:
            return AnswerJudgement(True, "met", "answered within the target")
        return AnswerJudgement(True, "breached", "answered after the target")
    waited = microseconds(waited_seconds) if waited_seconds is not None else 0
    if outcome == "abandoned":
        if waited <= target:
            return AnswerJudgement(False, None, "caller hung up before the target")
        return AnswerJudgement(True, "breached", "caller hung up after the target")
    if outcome in UNANSWERED:
        return AnswerJudgement(True, "breached", "not answered by a person")
    # Still waiting: a breach as soon as the target has passed, undecided before.
    if waited > target:
        return AnswerJudgement(True, "breached", "still waiting after the target")
    return AnswerJudgement(False, None, "still waiting")
