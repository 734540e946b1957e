"""The practice block: repeated until every trial of a round is right (IMI's only
comprehension check), recorded on the session so the exclusion rule can fire.

After the last response of a round the session records the rounds done
(`practice_attempts`) and whether this round was all right (`practice_passed`, with
`practice_passed_at`). A round with an error is followed by another one, up to the
study's `practice.max_attempts` rounds; after that many failed rounds the participant
needs more than allowed, and the study chooses (`practice.on_fail`):

- `flag` (default): the main trials start; `practice_passed` stays false and the
  `max_practice_attempts` rule excludes the participant in the analysis (more practice
  could not change that, and the participant still finishes and is paid);
- `stop`: the session ends as `screened_out` (its place is released for someone else)
  and the page thanks the participant and explains, without blame.

Runs inside the response's transaction (server.studies.responses), on its connection.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from server.db.models import Assignment, ParticipantSession, Response, Trial, utcnow
from server.db.prepared import Prepared
from server.studies.assignment import plan_practice, practice_for
from server.studies.schema import StudyConfig
from server.studies.sessions import cached_design, insert_assignments

STOPPED_MESSAGE = (
    "Thank you for your time. The practice trials were not all answered correctly after "
    "{rounds} rounds, so the study ends here for you."
)

_ROUND_STATEMENT = (
    select(func.count(Response.id), func.count(Response.id).filter(Response.correct.is_(False)))
    .join(Assignment, Assignment.id == Response.assignment_id)
    .join(Trial, Trial.id == Response.trial_id)
    .where(
        Assignment.session_id == bindparam("session_id"),
        Assignment.attempt == bindparam("attempt"),
        Trial.kind == "practice",
    )
)
_ROUND = Prepared(_ROUND_STATEMENT)


_ATTEMPT_OF = (
    select(Assignment.attempt)
    .join(Response, Response.assignment_id == Assignment.id)
    .where(Response.id == bindparam("response_id"))
)


def _outcome(config: StudyConfig, rounds: int, passed: bool) -> dict[str, Any]:
    """What follows a finished round: a function of the round alone, so a replayed
    response (same idempotency key) gets the same body as the first time."""
    practice = config.trials.practice
    repeat = not passed and rounds < practice.max_attempts
    stopped = not passed and not repeat and practice.on_fail == "stop"
    outcome: dict[str, Any] = {"round": rounds, "passed": passed, "repeat": repeat}
    outcome["stopped"] = stopped
    if stopped:
        outcome["message"] = STOPPED_MESSAGE.format(rounds=rounds)
    return outcome


def replayed_practice_outcome(
    conn: Connection, config: StudyConfig, session_id: str, response_id: int
) -> dict[str, Any] | None:
    """The outcome first sent with practice response `response_id`, if it ended a round."""
    attempt = conn.execute(_ATTEMPT_OF, {"response_id": response_id}).scalar_one()
    done, wrong = conn.execute(
        _ROUND_STATEMENT.where(Response.id <= bindparam("response_id")),
        {"session_id": session_id, "attempt": attempt, "response_id": response_id},
    ).one()
    if done < config.trials.practice.count:
        return None
    return _outcome(config, attempt + 1, wrong == 0)


def finish_practice_response(
    conn: Connection,
    config: StudyConfig,
    design_key: tuple[int, str, str | None],
    session_id: str,
    seed: int,
    attempt: int,
) -> dict[str, Any] | None:
    """After a practice response: None mid-round; at a round's end, what happens next
    (`passed`, `round`, `repeat`, `stopped`, `message`), recorded on the session."""
    practice = config.trials.practice
    done, wrong = _ROUND.first(conn, {"session_id": session_id, "attempt": attempt})
    if done < practice.count:
        return None
    rounds = attempt + 1
    outcome = _outcome(config, rounds, passed=wrong == 0)
    values: dict[str, Any] = {"practice_attempts": rounds, "practice_passed": outcome["passed"]}
    if outcome["passed"]:
        values["practice_passed_at"] = utcnow()
    elif outcome["repeat"]:
        design = cached_design(conn, *design_key)
        # Between participants each condition has its own practice (issue 20).
        condition = conn.scalar(
            select(ParticipantSession.condition).where(ParticipantSession.id == session_id)
        )
        practice_slots = practice_for(design.practice, [condition])
        insert_assignments(conn, session_id, plan_practice(practice_slots, rounds, seed))
    elif outcome["stopped"]:
        values |= {"status": "screened_out", "design_claim": None}
    conn.execute(
        update(ParticipantSession).where(ParticipantSession.id == session_id).values(**values)
    )
    return outcome
