"""The schedule document (`.duragent/schedules/<id>.yaml`) and when it fires.

A schedule has exactly one timing (`at` a moment, `every` a duration anchored at its creation,
or a `cron` expression read in `timezone`) and exactly one payload (`message`, delivered as
is, or `task`, a turn of the agent). Firing times are computed here, as pure functions of the
document and a moment, so every worker computes the same slots.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from duragent.durations import Duration, format_duration
from duragent.ids import new_id

ScheduleStatus = Literal["active", "paused", "completed", "cancelled"]
#: Statuses of a schedule that will not fire again.
FINISHED = frozenset({"completed", "cancelled"})
_ID = re.compile(r"sch_[A-Za-z0-9]{1,64}")
#: How a scheduled task's message starts; the `schedule` tool reads it to refuse nested schedules.
TASK_MARKER = "[scheduled task {id}]"
_TASK_MARKER = re.compile(r"^\[scheduled task (sch_[A-Za-z0-9]+)\]")
#: Longest `in`, `every` or retry wait accepted (beyond it, dates overflow).
MAX_SPAN = timedelta(days=3660)
#: Shortest `every` accepted: a tighter loop is a mistake, not a schedule.
MIN_EVERY = timedelta(seconds=1)
#: croniter's random field (`R`, `R(0-29)`, `r`), as opposed to the R of a name such as MAR or FRI.
_RANDOM_FIELD = re.compile(r"(?<![A-Za-z])[Rr](?![A-Za-z])")


def new_schedule_id() -> str:
    """A fresh schedule id, `sch_<ULID>`."""
    return new_id("sch")


def scheduled_task_of(content: str) -> str | None:
    """The schedule id when a user message is a scheduled task's, else None."""
    match = _TASK_MARKER.match(content)
    return match.group(1) if match else None


def is_schedule_id(value: str) -> bool:
    """True when `value` has the form of a schedule id (safe as a file name)."""
    return bool(_ID.fullmatch(value))


class RetryPolicy(BaseModel):
    """How a failed run is tried again: up to `max_retries` more times, waits doubling up to `max_delay`."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    max_retries: int = Field(3, ge=0, le=20, description="Further attempts after a failed one.")
    delay: Duration = Field(timedelta(seconds=1), description="Wait before the first retry.")
    max_delay: Duration = Field(timedelta(minutes=5), description="Longest wait between attempts.")

    @field_validator("delay", "max_delay")
    @classmethod
    def _not_too_long(cls, value: timedelta) -> timedelta:
        return _bounded(value) or value

    def wait_before(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based), without jitter."""
        seconds = self.delay.total_seconds() * (2 ** (retry - 1))
        return float(min(seconds, self.max_delay.total_seconds()))


class Destination(BaseModel):
    """Where a run lands: a session and, when that session is a gateway chat's, the chat."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    session_id: str | None = Field(
        None, description="The session that gets the message or runs the task (made at first run if absent)."
    )
    gateway: str | None = Field(None, description="The chat gateway (`telegram`) the session talks through.")
    chat_id: str | None = Field(None, description="The chat on that gateway.")

    @model_validator(mode="after")
    def _chat_needs_gateway(self) -> Destination:
        if (self.gateway is None) != (self.chat_id is None):
            raise ValueError("gateway and chat_id go together: give both or neither")
        return self


class Schedule(BaseModel):
    """One schedule file."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    id: str = Field(description="`sch_<ULID>`, also the file name.")
    agent: str = Field(min_length=1, description="The agent whose session runs it.")
    status: ScheduleStatus = "active"
    label: str | None = Field(None, max_length=200, description="A short name people read in lists.")
    created_at: datetime = Field(description="When it was made (RFC 3339); `every` counts from here.")
    created_by: str = Field("", description="Who made it: `session <id>`, `cli`, `http`.")
    destination: Destination = Field(default_factory=Destination)
    at: datetime | None = Field(None, description="One run at this moment (RFC 3339 with an offset).")
    every: Duration | None = Field(None, description="A run every this long, counted from created_at.")
    cron: str | None = Field(None, description="A cron expression: 5 fields, or 6 with seconds first.")
    timezone: str | None = Field(None, description="IANA time zone the cron expression is read in (UTC).")
    message: str | None = Field(None, min_length=1, description="Text delivered as is (no model call).")
    task: str | None = Field(None, min_length=1, description="Instructions the agent carries out in a turn.")
    retry: RetryPolicy | None = Field(None, description="Try a failed run again (no retries without it).")
    misfire_grace: Duration | None = Field(
        None, description="How late a run missed while the server was down may still run (default 1h)."
    )
    until_process: str | None = Field(
        None, description="A background process (proc_...): the schedule is cancelled when it ends."
    )

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not is_schedule_id(value):
            raise ValueError(f"a schedule id looks like sch_01J..., got {value!r}")
        return value

    @field_validator("created_at", "at")
    @classmethod
    def _aware(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("give a time zone offset (2026-12-02T09:00:00Z or +01:00)")
        # Whole seconds, as the run history records slots: a slot that differed from its record by
        # a fraction would not be recognised as run (and would run again after a restart). `at`
        # rounds up (`in: 2s` never fires early), the `every` anchor down.
        try:
            if value.microsecond and info.field_name == "at":
                value = value.replace(microsecond=0) + timedelta(seconds=1)
            # Every slot is compared and recorded in UTC: a moment with no UTC form (year 1 at
            # +05:00, 9999-12-31 at -05:00) would fail each time it is shown.
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()} is out of range (years 1 to 9999 in UTC)") from None
        return value.replace(microsecond=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone_info(value)
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            check_cron(value)
        return value

    @field_validator("every")
    @classmethod
    def _long_enough(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < MIN_EVERY:
            raise ValueError("every must be at least 1s")
        if value is not None and value.microseconds:
            raise ValueError(f"every must be whole seconds, got {format_duration(value)}")
        return _bounded(value)

    @model_validator(mode="after")
    def _one_timing_one_payload(self) -> Schedule:
        timings = [name for name in ("at", "every", "cron") if getattr(self, name) is not None]
        if len(timings) != 1:
            raise ValueError(f"give exactly one of at, every or cron (found {', '.join(timings) or 'none'})")
        payloads = [name for name in ("message", "task") if getattr(self, name) is not None]
        if len(payloads) != 1:
            raise ValueError(f"give exactly one of message or task (found {', '.join(payloads) or 'none'})")
        if self.timezone is not None and self.cron is None:
            raise ValueError(
                "timezone: applies to cron only (at carries its own offset; every has no time of day)"
            )
        return self

    # --- reading it -------------------------------------------------------------------------

    @property
    def recurring(self) -> bool:
        """True for `every` and `cron` schedules."""
        return self.at is None

    @property
    def payload_kind(self) -> Literal["message", "task"]:
        """ "message" or "task"."""
        return "message" if self.message is not None else "task"

    @property
    def payload_text(self) -> str:
        """The message or the task."""
        return self.message if self.message is not None else str(self.task)

    def timing_text(self) -> str:
        """The timing as people write it: `at 2026-12-02T09:00:00Z`, `every 1h`, `cron 0 9 * * *`."""
        if self.at is not None:
            return f"at {format_time(self.at)}"
        if self.every is not None:
            return f"every {format_duration(self.every)}"
        return f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone else "")

    def to_document(self) -> dict[str, Any]:
        """The YAML/JSON form: only the keys that are set, in a readable order."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _bounded(value: timedelta | None) -> timedelta | None:
    if value is not None and value > MAX_SPAN:
        raise ValueError("at most 3660d (ten years)")
    return value


def zone_info(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError names it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like Europe/Paris or UTC)") from None


def check_cron(expression: str) -> None:
    """ValueError when `expression` is not a 5-field (or 6-field, seconds first) cron expression."""
    # imported when a cron schedule is read: it costs start-up time
    from croniter import CroniterBadDateError, croniter

    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day month weekday) or 6 with seconds first, "
            f"got {len(fields)} in {expression!r}"
        )
    six = len(fields) == 6
    if any(_RANDOM_FIELD.search(part) for part in fields):
        # croniter draws R again at every reading: each restart and each worker would fire at
        # other moments (and a cluster's workers would each claim their own slot: twice)
        raise ValueError(
            f"cron expression {expression!r} has a random field (R); name the minute or hour instead"
        )
    if not croniter.is_valid(expression, second_at_beginning=six):
        raise ValueError(f"invalid cron expression {expression!r}{_bad_field(fields)}")
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=six).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron expression {expression!r} never fires (no month has that day)") from None


#: Each cron field's name and the values it takes, in the order of a 6-field expression.
_CRON_FIELDS = (
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day of week", "0-7 or SUN-SAT"),
)


def _bad_field(fields: list[str]) -> str:
    """`: hour '25' is not valid (0-23)` for the first field wrong on its own, else ``."""
    from croniter import croniter

    six = len(fields) == 6
    names = _CRON_FIELDS if six else _CRON_FIELDS[1:]
    for index, (part, (name, values)) in enumerate(zip(fields, names, strict=True)):
        # the field alone, every other one `*`: a person learns which of the five to fix
        alone = " ".join(part if i == index else "*" for i in range(len(fields)))
        if not croniter.is_valid(alone, second_at_beginning=six):
            return f": {name} {part!r} is not valid ({values})"
    return ""


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def next_slot(schedule: Schedule, after: datetime) -> datetime | None:
    """The first firing time strictly after `after` (None when a one-shot's moment has passed)."""
    if schedule.at is not None:
        return schedule.at if schedule.at > after else None
    if schedule.every is not None:
        anchor = schedule.created_at
        if after < anchor:
            return anchor + schedule.every
        elapsed = (after - anchor) // schedule.every
        return anchor + (elapsed + 1) * schedule.every
    return _cron_slot(schedule, after, forward=True)


def last_slot(schedule: Schedule, until: datetime) -> datetime | None:
    """The latest firing time at or before `until` (None when there is none)."""
    if schedule.at is not None:
        return schedule.at if schedule.at <= until else None
    if schedule.every is not None:
        if until < schedule.created_at + schedule.every:
            return None
        return schedule.created_at + ((until - schedule.created_at) // schedule.every) * schedule.every
    return _cron_slot(schedule, until + timedelta(microseconds=1), forward=False)


def _cron_slot(schedule: Schedule, start: datetime, *, forward: bool) -> datetime | None:
    """The cron schedule's next slot after `start` (or last before it), in UTC.

    Read in the schedule's time zone. When clocks go back, a wall-clock time in the repeated hour
    happens twice: an expression naming its hours fires at the first only, as cron does (a daily
    02:30 backup runs once), while one running every hour fires in both. A time the clocks skip
    in spring fires at the first moment after the gap (02:30 on the night of the change: 03:00).
    """
    assert schedule.cron is not None  # one timing is guaranteed by validation
    from croniter import CroniterBadDateError, croniter

    fields = schedule.cron.split()
    six = len(fields) == 6
    hours = fields[2] if six else fields[1]
    named_hours = not hours.startswith("*")
    slots = croniter(
        schedule.cron, start.astimezone(zone_info(schedule.timezone or "UTC")), second_at_beginning=six
    )
    try:
        while True:
            slot: datetime = slots.get_next(datetime) if forward else slots.get_prev(datetime)
            if not (named_hours and _repeated(slot)):
                return slot.astimezone(UTC)
    except CroniterBadDateError:  # (a file written before such expressions were refused)
        return None


def _repeated(moment: datetime) -> bool:
    """True when `moment` is the second time its wall-clock time happens (clocks went back)."""
    return moment.utcoffset() != moment.replace(fold=0).utcoffset()


class ScheduleRequest(BaseModel):
    """What a person or an agent asks for when making a schedule (tool, HTTP body, command line).

    `in` (a duration from now) is a shorthand for `at`; retries are on when `max_retries` is given.
    """

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True, populate_by_name=True)

    at: datetime | None = Field(
        None, description="Run once at this moment (RFC 3339, e.g. 2026-12-02T09:00:00Z)."
    )
    in_: Duration | None = Field(None, alias="in", description="Run once after this long (20m, 2h).")
    every: Duration | None = Field(None, description="Run every this long (counted from now), e.g. 1h.")
    cron: str | None = Field(None, description="Cron expression: `m h dom mon dow`, or with seconds first.")
    timezone: str | None = Field(
        None, description="IANA time zone for cron (default UTC), e.g. Europe/Paris."
    )
    message: str | None = Field(None, description="Deliver this text as is (no model call).")
    task: str | None = Field(None, description="Instructions you carry out with your tools when it fires.")
    label: str | None = Field(None, max_length=200, description="A short name for lists.")
    max_retries: int | None = Field(None, ge=0, le=20, description="Retry a failed run this many times.")
    retry_delay: Duration | None = Field(None, description="First wait before a retry (doubles each time).")
    until_process: str | None = Field(
        None, description="Cancel this schedule when this background process (proc_...) ends."
    )

    @field_validator("in_", "every", "retry_delay")
    @classmethod
    def _not_too_long(cls, value: timedelta | None) -> timedelta | None:
        return _bounded(value)

    def build(self, agent: str, *, destination: Destination, created_by: str, now: datetime) -> Schedule:
        """The schedule document; ValueError says what is wrong with the request."""
        from pydantic import ValidationError

        at = self.at
        if self.in_ is not None:
            if at is not None:
                raise ValueError("give either at or in, not both")
            at = now + self.in_
        if at is not None and at.tzinfo is None:
            raise ValueError("at: give a time zone offset, e.g. 2026-12-02T09:00:00Z or +01:00")
        retry = None
        if self.max_retries is not None or self.retry_delay is not None:
            retry = RetryPolicy(
                max_retries=3 if self.max_retries is None else self.max_retries,
                delay=self.retry_delay or timedelta(seconds=1),
            )
        try:
            return Schedule(
                id=new_schedule_id(),
                agent=agent,
                label=self.label,
                created_at=now,
                created_by=created_by,
                destination=destination,
                at=at,
                every=self.every,
                cron=self.cron,
                timezone=self.timezone,
                message=self.message,
                task=self.task,
                retry=retry,
                until_process=self.until_process,
            )
        except ValidationError as exc:
            raise ValueError(describe_validation(exc)) from None


def describe_validation(exc: Any) -> str:
    """A pydantic ValidationError as one sentence naming each field."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
