"""Properties of the payment saga over random message sequences, checked after every step.

Each example drives one payment with a random mix of commands, processor outcomes (for open
operations, settled ones and ones that do not exist), timer firings (due and stale), operator
actions and exact repeats of earlier messages, on a clock that only moves forward. Between
steps the runner plays the store: it keeps the decided payment and bumps its version.

A step is drawn as two numbers, which ``Driver`` reads as a message for the payment as it
stands (see ``Dice``): generation stays cheap and a failing example shrinks fast, towards
steps that change nothing. A failing check prints the messages up to where it failed.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, TypeVar, get_args

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from sagas.decision import Decision, derive_state
from sagas.machine import decide
from sagas.messages import (
    ActionNeeded,
    Authorize,
    Cancel,
    Capture,
    Declined,
    InDoubt,
    Message,
    NotReceived,
    OperatorResolved,
    Refund,
    RetryCompensation,
    Succeeded,
    TimerFired,
    Unresolved,
    Void,
)
from sagas.model import (
    FINAL,
    ExpiryPolicy,
    OperationKind,
    OperationStatus,
    Payment,
    SagaPolicy,
    Timer,
    TimerKind,
)
from sagas.states import TERMINAL_STATES, PaymentState
from sagas.timing import REDRIVE_AFTER
from schemas.commands import (
    AuthorizePayment,
    CancelPayment,
    CapturePayment,
    PaymentMethod,
    RefundPayment,
    VoidPayment,
)
from schemas.events import (
    FailureCode,
    PaymentAuthorizationFailed,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentCaptureFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentVoided,
    PaymentVoidFailed,
)
from schemas.money import Money
from schemas.processors import Processor

T = TypeVar("T")

PAYMENT_ID: Final = "pay_saga_props"
START: Final = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OUTCOME_TYPES: Final = (Succeeded, ActionNeeded, Declined, InDoubt, Unresolved, NotReceived)
OUTCOME_EVENTS: Final[dict[type[BaseModel], OperationKind]] = {
    PaymentAuthorized: OperationKind.AUTHORIZE,
    PaymentAuthorizationFailed: OperationKind.AUTHORIZE,
    PaymentCaptured: OperationKind.CAPTURE,
    PaymentCaptureFailed: OperationKind.CAPTURE,
    PaymentVoided: OperationKind.VOID,
    PaymentVoidFailed: OperationKind.VOID,
    PaymentRefunded: OperationKind.REFUND,
    PaymentRefundFailed: OperationKind.REFUND,
}
"""The events that announce an operation's outcome, by the kind of operation they settle."""

SAGA_SETTINGS: Final = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
"""200 runs per property; no ``explain`` phase, which re-runs a failure at length for little."""

# What a run is made of. The first option of every choice is the simplest.

CURRENCIES: Final = ("USD", "JPY", "KWD")
CANDIDATES: Final[tuple[tuple[Processor, ...], ...]] = (
    (Processor.STRIPE,),
    (Processor.STRIPE, Processor.PAYPAL),
    (Processor.PAYPAL, Processor.STRIPE, Processor.HESABPAY),
    (Processor.PAYPAL,),
    (Processor.HESABPAY, Processor.STRIPE),
    (Processor.STRIPE, Processor.PAYPAL, Processor.HESABPAY),
    (Processor.PAYPAL, Processor.HESABPAY),
    (Processor.HESABPAY,),
    (),
)
GAPS: Final = (
    timedelta(0),
    timedelta(seconds=1),
    timedelta(seconds=1),
    timedelta(seconds=90),
    timedelta(minutes=10),
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=8),
)
StepKind = Literal["stale", "answer", "command", "due", "repeat", "operator"]
STEP_KINDS: Final[tuple[StepKind, ...]] = (
    "stale",
    *("answer",) * 6,
    *("command",) * 5,
    *("due",) * 2,
    "repeat",
    "operator",
)
"""What a step does, by weight; ``stale`` (a timer the payment never had) changes nothing."""
Target = Literal["open", "any", "missing", "doubt"]
TARGETS: Final[tuple[Target, ...]] = ("open", "open", "open", "open", "any", "missing")
OPERATOR_TARGETS: Final[tuple[Target, ...]] = ("doubt",) * 4 + ("open", "any", "missing")
AnswerKind = Literal["succeeded", "declined", "action", "in_doubt", "unresolved", "lost"]
ANSWER_KINDS: Final[tuple[AnswerKind, ...]] = (
    *("succeeded",) * 6,
    "declined",
    "action",
    "in_doubt",
    "unresolved",
    "lost",
)
ACTIONS: Final[tuple[Literal["redirect", "three_ds"], ...]] = ("redirect", "three_ds")
CommandKind = Literal["invited", "other", "capture", "refund", "void", "cancel", "authorize"]
"""``invited``/``other``: the first/second command the payment's state invites (INVITED)."""
COMMAND_KINDS: Final[tuple[CommandKind, ...]] = (
    "invited",
    "invited",
    "other",
    "capture",
    "refund",
    "void",
    "cancel",
    "authorize",
)
INVITED: Final[dict[PaymentState, tuple[CommandKind, CommandKind]]] = {
    PaymentState.AUTHORIZED: ("capture", "void"),
    PaymentState.PARTIALLY_CAPTURED: ("capture", "refund"),
    PaymentState.CAPTURED: ("refund", "cancel"),
    PaymentState.PARTIALLY_REFUNDED: ("refund", "cancel"),
    PaymentState.COMPENSATION_FAILED: ("refund", "cancel"),
    **dict.fromkeys(TERMINAL_STATES, ("cancel", "void")),
}
"""Commands a payment at rest invites, by state; one waiting for an outcome gets a capture
or a refund, which it mostly refuses."""
FAILURE_CODES: Final[tuple[FailureCode, ...]] = get_args(FailureCode)


def dice(size: int) -> st.SearchStrategy[int]:
    """A die for ``Dice``: ``size`` random bytes (spread more evenly than a big integer)."""
    return st.binary(min_size=size, max_size=size).map(int.from_bytes)


STEP: Final = st.tuples(st.integers(0, len(STEP_KINDS) - 1), dice(3))
RUNS: Final = st.tuples(
    dice(4), st.lists(st.tuples(STEP, STEP, STEP, STEP), min_size=1, max_size=10)
)
"""A run: how it starts, then its steps (what each does, and the dice for the details).

Steps come four at a time: runs are long enough to get somewhere, and a failing one still
shrinks fast (whole groups go, and the steps left over become ones that change nothing).
"""
Step = tuple[int, int]
Run = tuple[int, list[tuple[Step, Step, Step, Step]]]


class Dice:
    """Choices read one after another from a single integer; 0 picks every first option."""

    def __init__(self, value: int) -> None:
        """Read choices from ``value``."""
        self.value = value

    def pick(self, options: Sequence[T]) -> T:
        """One of ``options``."""
        self.value, index = divmod(self.value, len(options))
        return options[index]

    def number(self, low: int, high: int) -> int:
        """A number from ``low`` to ``high``."""
        return low + self.pick(range(high - low + 1))

    def chance(self, one_in: int) -> bool:
        """True about once in ``one_in``; a 0 die says False unless ``one_in`` is 1."""
        return self.pick(range(one_in)) == one_in - 1


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of a run: the payment fed in, the message, the decision, what was stored."""

    before: Payment | None
    message: Message
    decision: Decision
    after: Payment | None
    replayed: Decision | None = None
    """The decision for the same outcome delivered a second time, when replays are on."""


@dataclass
class Driver:
    """Reads each step of a run as a message for the payment as it stands."""

    start: Dice
    now: datetime = START
    payment: Payment | None = None
    sent: list[Message] = field(default_factory=list)
    keys: int = 0
    authorization: Authorize = field(init=False)
    """The authorize command that opens the run."""
    early: int = field(init=False)
    """How many steps come before it."""
    patience: int = field(init=False)
    """A payment at rest sees its next timer before any command about once in this many steps."""

    def __post_init__(self) -> None:
        """Roll the run's authorize command."""
        dice = self.start
        currency = dice.pick(CURRENCIES)
        command = AuthorizePayment(
            payment_id=PAYMENT_ID,
            idempotency_key="auth",
            amount=Money(minor=dice.number(1, 5_000), currency=currency),
            payment_method=PaymentMethod(type="card", token="pm_card_visa"),
            capture=dice.pick(("manual", "manual", "automatic")),
            booking_reference="BK-PROP",
        )
        policy = SagaPolicy(
            expiry=dice.pick(list(ExpiryPolicy)),
            action_timeout=dice.pick((timedelta(hours=1), timedelta(minutes=15))),
        )
        self.authorization = Authorize(command, dice.pick(CANDIDATES), policy)
        self.early = dice.pick((0, 0, 0, 0, 0, 0, 0, 0, 1, 2))
        self.patience = dice.pick((1, 3, 6))

    def message(self, kind: StepKind, dice: Dice) -> Message:
        """The message a step of ``kind`` stands for, now; the clock moves first."""
        self.now += dice.pick(GAPS)
        message: Message
        match kind:
            case "stale":
                due_at = dice.pick((None, START, START + REDRIVE_AFTER))
                message = TimerFired(dice.pick(list(TimerKind)), dice.number(0, 9), due_at)
            case "answer":
                message = self.answer(dice)
            case "command":
                message = self.command(dice.pick(COMMAND_KINDS), dice)
            case "due" if self.payment is not None and not self.payment.in_flight():
                message = self.meanwhile(dice)
            case "due":
                message = self.due_timer(dice.pick((0, 0, 0, 1, 2)))
            case "repeat":
                message = dice.pick(self.sent) if self.sent else self.authorize()
            case "operator":
                message = self.operator(dice)
        self.sent.append(message)
        return message

    def authorize(self) -> Authorize:
        """The run's authorize command, under a fresh key."""
        self.keys += 1
        command = self.authorization.command.model_copy(
            update={"idempotency_key": f"auth-{self.keys}"}
        )
        return replace(self.authorization, command=command)

    def command(self, kind: CommandKind, dice: Dice) -> Message:
        """A command, often one that makes no sense for the payment as it stands."""
        if kind in {"invited", "other"}:
            state = self.payment.state if self.payment is not None else PaymentState.REQUESTED
            kind = INVITED.get(state, ("capture", "refund"))[1 if kind == "other" else 0]
        self.keys += 1
        ids = {"payment_id": PAYMENT_ID, "idempotency_key": f"cmd-{self.keys}"}
        match kind:
            case "capture":
                amount = self.amount(self.payment.capturable if self.payment else 0, dice)
                return Capture(CapturePayment(**ids, amount=amount, final=dice.chance(2)))
            case "refund":
                amount = self.amount(self.payment.refundable if self.payment else 0, dice)
                return Refund(RefundPayment(**ids, amount=amount))
            case "void":
                return Void(VoidPayment(**ids, reason="requested_by_customer"))
            case "cancel":
                return Cancel(CancelPayment(**ids, reason="booking cancelled"))
            case _:
                return self.authorize()

    def amount(self, limit: int, dice: Dice) -> Money | None:
        """None (all of it), or a share of ``limit``: at times a little over, or foreign."""
        share = dice.pick((None, 1, 2, 3, 4))
        if share is None:
            return None
        currency = self.authorization.command.amount.currency
        minor = max(1, limit * share // 4)
        match dice.pick(("exact",) * 6 + ("over", "foreign")):
            case "over":
                minor += 2
            case "foreign":
                currency = next(c for c in CURRENCIES if c != currency)
        return Money(minor=minor, currency=currency)

    def seq(self, target: Target, pick: int) -> int:
        """The operation a message names."""
        ops = self.payment.operations if self.payment is not None else ()
        doubtful = [op.seq for op in ops if op.status is OperationStatus.IN_DOUBT]
        if target == "doubt" and doubtful:
            return doubtful[pick % len(doubtful)]
        open_seqs = [op.seq for op in ops if op.in_flight]
        if target == "open" and open_seqs:
            return open_seqs[pick % len(open_seqs)]
        if target in {"open", "any"} and ops:
            return ops[pick % len(ops)].seq
        return (0, len(ops) + 1, len(ops) + 3)[pick % 3]

    def answer(self, dice: Dice) -> Message:
        """A processor's answer or an inquiry's finding about an operation.

        Aimed at an open operation when none is open, the step is what happens meanwhile.
        """
        target = dice.pick(TARGETS)
        pick = dice.number(0, 5)
        if target == "open" and self.payment is not None and not self.payment.in_flight():
            return self.meanwhile(dice)
        return self.outcome(self.seq(target, pick), dice)

    def meanwhile(self, dice: Dice) -> Message:
        """What a payment with nothing in flight sees: a command, or (at times) its next timer.

        Its timers are days away (authorization expiry); how often the booking service lets
        them come first varies from run to run (``patience``).
        """
        if self.payment is not None and self.payment.timers and dice.chance(self.patience):
            return self.due_timer(0)
        return self.command(dice.pick(("invited", "invited", "other")), dice)

    def outcome(self, seq: int, dice: Dice) -> Message:
        """One of the answers a processor or an inquiry can give about operation ``seq``."""
        message: Message
        match dice.pick(ANSWER_KINDS):
            case "succeeded":
                op = self.payment.operation(seq) if self.payment is not None else None
                amount = (op.amount if op is not None else 1) + dice.pick((0,) * 12 + (-1, 1, 9))
                lifetime = dice.pick((None, None, timedelta(hours=1), timedelta(days=2)))
                message = Succeeded(
                    seq,
                    dice.pick(("ref_a", "ref_b")),
                    max(0, amount),
                    expires_at=None if lifetime is None else self.now + lifetime,
                    captured=dice.chance(4),
                )
            case "declined":
                code = dice.pick(FAILURE_CODES)
                message = Declined(seq, code, "refused", dice.chance(2), dice.chance(2))
            case "action":
                action = dice.pick(ACTIONS)
                message = ActionNeeded(seq, "act_1", "https://bank.example.com/3ds", action)
            case "in_doubt":
                message = InDoubt(seq)
            case "unresolved":
                message = Unresolved(seq)
            case "lost":
                message = NotReceived(seq)
        return message

    def due_timer(self, pick: int) -> TimerFired:
        """The payment's ``pick``-th timer in due order fires, when due (the clock runs to it)."""
        timers = sorted(self.payment.timers if self.payment is not None else (), key=_due)
        if not timers:
            return TimerFired(TimerKind.REDRIVE, 0)
        timer = timers[pick % len(timers)]
        self.now = max(self.now, timer.due_at)
        return TimerFired(timer.kind, timer.seq, timer.due_at)

    def operator(self, dice: Dice) -> Message:
        """An operator settling an operation (mostly one in doubt), or retrying a cancellation."""
        if dice.chance(3):
            return RetryCompensation("retry after checking the vendor")
        target = dice.pick(OPERATOR_TARGETS)
        seq = self.seq(target, dice.number(0, 5))
        reference = None if dice.chance(4) else f"op_{seq}"
        return OperatorResolved(seq, not dice.chance(3), reference, "checked on the dashboard")


def _due(timer: Timer) -> datetime:
    """When ``timer`` is due."""
    return timer.due_at


def run(plan: Run, *, replay: bool = False) -> list[Transition]:
    """Drive one payment through ``plan``; with ``replay``, deliver each outcome twice."""
    start, groups = plan
    driver = Driver(Dice(start))
    steps: list[tuple[StepKind, Dice] | None] = [
        (STEP_KINDS[kind], Dice(rolled)) for group in groups for kind, rolled in group
    ]
    steps.insert(min(driver.early, len(steps)), None)
    trace: list[Transition] = []
    for step in steps:
        if step is None:
            message: Message = driver.authorization
            driver.sent.append(message)
        else:
            message = driver.message(*step)
        before = driver.payment
        decision = decide(before, message, driver.now)
        decided = decision.payment
        replayed = None
        if replay and decided is not None and isinstance(message, OUTCOME_TYPES):
            replayed = decide(decided, message, driver.now)
        after = before
        if decided is not None and decided is not before:
            after = replace(decided, version=decided.version + 1)
        driver.payment = after
        trace.append(Transition(before, message, decision, after, replayed))
    return trace


def story(trace: Sequence[Transition], upto: Transition, finding: object) -> str:
    """What went wrong, after the messages of ``trace`` up to ``upto`` and where each left it."""
    lines = []
    for index, t in enumerate(trace):
        state = t.after.state if t.after is not None else None
        lines.append(f"{index}: {t.message!r} -> {state} ({t.decision.cause})")
        if t is upto:
            break
    return "\n".join([*lines, f"finding: {finding!r}"])


def stored(trace: Sequence[Transition]) -> list[tuple[Transition, Payment]]:
    """The steps that leave a payment, with the payment the machine decided."""
    return [(t, t.decision.payment) for t in trace if t.decision.payment is not None]


@SAGA_SETTINGS
@given(RUNS)
def test_amounts_stay_ordered(plan: Run) -> None:
    """0 <= refunded <= captured <= authorized <= amount, and open refunds fit in what is left."""
    trace = run(plan)
    for t, p in stored(trace):
        amounts = (p.refunded, p.captured, p.authorized, p.amount)
        open_refunds = sum(op.amount for op in p.in_flight(OperationKind.REFUND))
        assert 0 <= p.refunded <= p.captured <= p.authorized <= p.amount, story(trace, t, amounts)
        assert p.refunded + open_refunds <= p.captured, story(trace, t, (open_refunds, amounts))


@SAGA_SETTINGS
@given(RUNS)
def test_the_state_is_derived_from_the_parts(plan: Run) -> None:
    """Every decided payment's state is what its amounts, operations and flags add up to."""
    trace = run(plan)
    for t, payment in stored(trace):
        derived = derive_state(payment)
        assert payment.state is derived, story(trace, t, derived)


@SAGA_SETTINGS
@given(RUNS)
def test_terminal_states_are_never_left(plan: Run) -> None:
    """Once a payment is voided, refunded, failed or expired, no message changes its state."""
    trace = run(plan)
    for t, payment in stored(trace):
        if t.before is not None and t.before.state in TERMINAL_STATES:
            assert payment.state is t.before.state, story(trace, t, payment.state)


@SAGA_SETTINGS
@given(RUNS)
def test_settled_operations_never_change(plan: Run) -> None:
    """An operation that succeeded or failed keeps its status, amount and reference for good."""
    trace = run(plan)
    for t, payment in stored(trace):
        for old in t.before.operations if t.before is not None else ():
            new = payment.operation(old.seq)
            assert new is not None, story(trace, t, f"operation #{old.seq} disappeared")
            if old.status in FINAL:
                kept = (new.status, new.amount, new.reference)
                assert kept == (old.status, old.amount, old.reference), story(trace, t, new)


@SAGA_SETTINGS
@given(RUNS)
def test_each_operation_is_announced_at_most_once(plan: Run) -> None:
    """Each operation's outcome event is emitted at most once over the whole run."""
    trace = run(plan)
    announced: Counter[tuple[int, OperationKind]] = Counter()
    for t, payment in stored(trace):
        settled = [
            op
            for op in payment.operations
            if op.status in FINAL and (t.before is None or _was_open(t.before, op.seq))
        ]
        emitted = Counter(
            OUTCOME_EVENTS[type(e.event)]
            for e in t.decision.events
            if type(e.event) in OUTCOME_EVENTS
        )
        for kind, count in emitted.items():
            targets = [op for op in settled if op.kind is kind]
            if kind is OperationKind.CAPTURE and not targets:
                # An authorization the processor captured in the same step.
                targets = [op for op in settled if op.kind is OperationKind.AUTHORIZE]
            if kind is OperationKind.AUTHORIZE and not payment.operations:
                continue  # no processor to send to: the payment failed before any operation
            assert count <= len(targets), story(trace, t, t.decision.events)
            for op in targets[:count]:
                announced[op.seq, kind] += 1
                assert announced[op.seq, kind] == 1, story(trace, t, op)


def _was_open(payment: Payment, seq: int) -> bool:
    """Whether ``payment`` had no operation ``seq`` yet, or had it with an open outcome."""
    op = payment.operation(seq)
    return op is None or op.in_flight


@SAGA_SETTINGS
@given(RUNS)
def test_only_pending_operations_are_sent(plan: Run) -> None:
    """Every seq a decision asks to send is a pending operation of the payment it decides."""
    trace = run(plan)
    for t in trace:
        payment = t.decision.payment
        for seq in t.decision.execute:
            op = payment.operation(seq) if payment is not None else None
            sent = op is not None and op.status is OperationStatus.PENDING
            assert sent, story(trace, t, (seq, op))


@SAGA_SETTINGS
@given(RUNS)
def test_one_authorize_capture_or_void_at_a_time(plan: Run) -> None:
    """At most one authorization, capture or void has an open outcome at any time."""
    trace = run(plan)
    for t, payment in stored(trace):
        kinds = (OperationKind.AUTHORIZE, OperationKind.CAPTURE, OperationKind.VOID)
        open_ops = payment.in_flight(*kinds)
        assert len(open_ops) <= 1, story(trace, t, open_ops)


@SAGA_SETTINGS
@given(RUNS)
def test_versions_are_kept_and_rejections_change_nothing(plan: Run) -> None:
    """The machine keeps the stored version, and a refused command leaves the payment as it was."""
    trace = run(plan)
    for t in trace:
        decided = t.decision.payment
        if decided is not None:
            version = 0 if t.before is None else t.before.version
            assert decided.version == version, story(trace, t, decided.version)
        if t.decision.rejection is not None:
            untouched = decided is t.before and not t.decision.events and not t.decision.execute
            assert untouched, story(trace, t, t.decision)


@SAGA_SETTINGS
@given(RUNS)
def test_an_in_doubt_authorization_is_never_failed_over(plan: Run) -> None:
    """While an authorization is in doubt no authorization exists at another processor after it."""
    trace = run(plan)
    for t, payment in stored(trace):
        authorizations = [op for op in payment.operations if op.kind is OperationKind.AUTHORIZE]
        for op in authorizations:
            if op.status is OperationStatus.IN_DOUBT:
                moved = [
                    o for o in authorizations if o.seq > op.seq and o.processor != op.processor
                ]
                assert not moved, story(trace, t, moved)


@SAGA_SETTINGS
@given(RUNS)
def test_events_are_about_this_payment_in_its_currency(plan: Run) -> None:
    """Every event names the payment, and every amount in it is in the payment's currency."""
    trace = run(plan)
    for t, payment in stored(trace):
        for emitted in t.decision.events:
            fields = dict(emitted.event)
            assert fields["payment_id"] == payment.payment_id, story(trace, t, emitted)
            for value in fields.values():
                if isinstance(value, Money):
                    assert value.currency == payment.currency, story(trace, t, emitted)


@SAGA_SETTINGS
@given(RUNS)
def test_a_replayed_outcome_emits_nothing(plan: Run) -> None:
    """Delivering the exact same outcome twice in a row emits nothing the second time."""
    trace = run(plan, replay=True)
    for t in trace:
        if t.replayed is not None:
            assert t.replayed.events == (), story(trace, t, t.replayed.events)
