"""The soak's figures, cut from its recorded calls, and whether the targets hold.

Targets (TradeGraph issue "Stays up under load and faults"): no mutation left without an answer,
no 500 outside the outage seconds, a p99 in every minute within twice the first minute's, and
each process's memory grown by under a fifth. A call is inside an outage when its time in
flight overlaps the seconds from a server's stop to the moment it served again.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.invariants import Violations, describe
from bench.private import Outage
from bench.soak_clients import TIMEOUT, Call

P99_FACTOR = 2.0
MEMORY_GROWTH = 0.20
# After an outage: how long its after-effects are shown separately (not excused: a 500 in
# them still counts against the target).
AFTERMATH = 60.0
EXAMPLES = 5


@dataclass
class Memory:
    """A process's resident memory: at the load's start, after the first minute, at the end.
    Growth is measured from the first minute: what the first requests build (pooled
    connections, caches filling to their bounds) is not a leak."""

    name: str
    pid: int
    at_start: int | None = None
    after_first_minute: int | None = None
    at_end: int | None = None
    exit_code: int | None = None  # set when the process ended by itself during the run
    exited_at: float | None = None  # time.monotonic() when that was seen
    error_lines: int = 0

    @property
    def growth(self) -> float | None:
        if not self.after_first_minute or self.at_end is None:
            return None
        return self.at_end / self.after_first_minute - 1


@dataclass
class Soak:
    clients: int
    users: int
    servers: int
    started: float  # time.monotonic() when the load began
    seconds: float
    calls: list[Call]
    outages: list[Outage]
    memory: list[Memory]
    client_cpu: float = 0.0
    # The machine's one-minute load average at the load's start and end: figures taken on a
    # machine busy with other work say more about it than about the service.
    load_average: tuple[float, float] = (0.0, 0.0)
    violations: Violations = field(default_factory=dict)
    deadlocks: int = 0
    # The orders that unanswered placements made after all, by status.
    placed_unanswered: Counter[str] = field(default_factory=Counter)

    def at(self, moment: float) -> str:
        """A moment as minutes:seconds into the load."""
        offset = max(0.0, moment - self.started)
        return f"{int(offset // 60)}:{offset % 60:04.1f}"

    def in_outage(self, call: Call) -> bool:
        return any(call.start <= o.end and call.end >= o.start for o in self.outages)


def p99(latencies: Sequence[float]) -> float:
    if len(latencies) < 2:
        return latencies[0] if latencies else 0.0
    return statistics.quantiles(latencies, n=100)[98]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _mib(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:,.0f} MiB"


def by_minute(soak: Soak) -> dict[int, list[Call]]:
    minutes: dict[int, list[Call]] = {}
    whole = max(1, round(soak.seconds / 60))
    for call in soak.calls:
        minute = min(int((call.end - soak.started) // 60), whole - 1)
        minutes.setdefault(minute, []).append(call)
    return dict(sorted(minutes.items()))


def minute_lines(soak: Soak) -> list[str]:
    lines = [
        "per minute (by answer time):",
        "  minute    calls   req/s       ok  refused   failed  no answer   500s       p50"
        "        p99",
    ]
    for minute, calls in by_minute(soak).items():
        latencies = [c.end - c.start for c in calls]
        ok = sum(c.outcome == "ok" for c in calls)
        failed = sum(c.failed for c in calls)
        lines.append(
            f"  {minute + 1:>6} {len(calls):>8} {len(calls) / 60:>7.1f} {ok:>8}"
            f" {len(calls) - ok - failed:>8} {failed:>8} {sum(not c.answered for c in calls):>10}"
            f" {sum(c.server_error for c in calls):>6} {_ms(statistics.median(latencies)):>9}"
            f" {_ms(p99(latencies)):>10}"
        )
    return lines


def error_lines(soak: Soak) -> list[str]:
    outcomes: Counter[str] = Counter()
    statuses: dict[str, Counter[int]] = {}
    kinds: dict[str, Counter[str]] = {}
    first: dict[str, str] = {}
    for call in soak.calls:
        if call.outcome != "ok":
            outcomes[call.outcome] += 1
            statuses.setdefault(call.outcome, Counter())[call.status] += 1
            kinds.setdefault(call.outcome, Counter())[call.kind] += 1
            first.setdefault(call.outcome, call.detail)
    lines = ["errors by code (extensions.code, else the HTTP status), with the first answer:"]
    for outcome, count in outcomes.most_common():
        status = ", ".join(f"HTTP {s or '-'} {n}" for s, n in statuses[outcome].most_common())
        top = ", ".join(f"{k} {n}" for k, n in kinds[outcome].most_common(3))
        lines.append(f"  {outcome:<28} {count:>7}   ({status}; {top})")
        if first[outcome]:
            lines.append(f"      {first[outcome][:200]}")
    return lines if outcomes else [*lines, "  none"]


def kind_lines(soak: Soak) -> list[str]:
    kinds: dict[str, list[Call]] = {}
    for call in soak.calls:
        kinds.setdefault(call.kind, []).append(call)
    lines = ["by operation:"]
    for kind, calls in sorted(kinds.items()):
        ok = sum(c.outcome == "ok" for c in calls)
        latency = p99([c.end - c.start for c in calls])
        lines.append(f"  {kind:<20} {len(calls):>8} calls  ok {ok:>8}   p99 {_ms(latency):>9}")
    return lines


def outage_lines(soak: Soak) -> list[str]:
    lines = [
        "outages (stop to serving again; failed: no answer, 5xx, INTERNAL_SERVER_ERROR or"
        " SERVICE_UNAVAILABLE):"
    ]
    failed = [c for c in soak.calls if c.failed]
    for n, outage in enumerate(soak.outages):
        during = [c for c in failed if c.start <= outage.end and c.end >= outage.start]
        # Until the next outage, if it comes sooner.
        until = min([outage.end + AFTERMATH] + [o.start for o in soak.outages[n + 1 :]])
        after = [c for c in failed if not soak.in_outage(c) and outage.end < c.start <= until]
        last = f", the last {max(c.end for c in after) - outage.end:.1f} s after" if after else ""
        lines.append(
            f"  {outage.name:<11} at {soak.at(outage.start)}: {outage.seconds:.1f} s;"
            f" {len(during)} calls failed in flight meanwhile; {len(after)} failed in the"
            f" {until - outage.end:.0f} s after{last}"
        )
        shown = Counter(c.outcome for c in after).most_common(4)
        if shown:
            lines.append("      after: " + ", ".join(f"{o} {count}" for o, count in shown))
    return lines


def _examples(soak: Soak, calls: list[Call]) -> list[str]:
    return [
        f"      {soak.at(c.start)} api-{c.server + 1} {c.kind}: {c.outcome} "
        f"({_ms(c.end - c.start)}) {c.detail[:160]}"
        for c in calls[:EXAMPLES]
    ]


def memory_lines(soak: Soak) -> list[str]:
    lines = ["memory (RSS): at the load's start, after its first minute, at its end:"]
    for m in soak.memory:
        growth = "-" if m.growth is None else f"{m.growth:+.1%}"
        exited = ""
        if m.exit_code is not None:
            when = "" if m.exited_at is None else f" at {soak.at(m.exited_at)}"
            exited = f"   EXITED with {m.exit_code}{when}"
        lines.append(
            f"  {m.name:<8} pid {m.pid:<7} {_mib(m.at_start):>9} {_mib(m.after_first_minute):>9}"
            f" {_mib(m.at_end):>9}   growth {growth:>7}   error log lines {m.error_lines}{exited}"
        )
    return lines


def targets(soak: Soak) -> list[tuple[str, bool, str]]:
    """(target, held, the figure)."""
    unanswered = [c for c in soak.calls if c.mutation and not c.answered]
    errors = [c for c in soak.calls if c.server_error and not soak.in_outage(c)]
    minutes = by_minute(soak)
    first = p99([c.end - c.start for c in next(iter(minutes.values()), [])])
    # A p99 at the clients' timeout is not a latency but calls cut off: not flat, whatever
    # the first minute's.
    ceiling = min(P99_FACTOR * first, 0.99 * TIMEOUT)
    slow = {
        m + 1: p99([c.end - c.start for c in calls])
        for m, calls in minutes.items()
        if p99([c.end - c.start for c in calls]) >= ceiling
    }
    # A process that ended early has no growth to measure: the next target fails for it.
    grown = [m for m in soak.memory if m.growth is not None and m.growth >= MEMORY_GROWTH]
    exited = [m.name for m in soak.memory if m.exit_code is not None]
    rows = sum(len(found) for found in soak.violations.values())
    worst = ", ".join(f"minute {m} {_ms(v)}" for m, v in slow.items())
    return [
        ("zero unanswered mutations", not unanswered, str(len(unanswered))),
        ("zero 500s outside the outage seconds", not errors, str(len(errors))),
        (
            f"p99 of every minute within {P99_FACTOR:g}x the first's ({_ms(first)})",
            not slow,
            worst or "all within",
        ),
        (
            f"memory growth under {MEMORY_GROWTH:.0%}",
            not grown,
            ", ".join(f"{m.name} {m.growth:+.1%}" for m in soak.memory if m.growth is not None),
        ),
        ("every process up to the end", not exited, ", ".join(exited) or "all up"),
        (
            "the books check",
            rows == 0 and soak.deadlocks == 0,
            f"{rows} violating rows, {soak.deadlocks} deadlocks",
        ),
    ]


def report(soak: Soak) -> list[str]:
    answered = [c for c in soak.calls if c.answered]
    unanswered = [c for c in soak.calls if c.mutation and not c.answered]
    unanswered_outside = [c for c in unanswered if not soak.in_outage(c)]
    errors = [c for c in soak.calls if c.server_error]
    outside = [c for c in errors if not soak.in_outage(c)]
    lines = [
        f"soak: {soak.clients} clients as {soak.users} users on {soak.servers} API processes and"
        f" a worker, {soak.seconds / 60:.1f} min: {len(soak.calls)} calls"
        f" ({len(soak.calls) / soak.seconds:.0f}/s), {len(answered)} answered"
        f" (the clients used {soak.client_cpu:.0%} of one core; the machine's load average"
        f" {soak.load_average[0]:.1f} at the start, {soak.load_average[1]:.1f} at the end, on"
        f" {os.cpu_count()} cores)",
        *minute_lines(soak),
        *kind_lines(soak),
        *error_lines(soak),
        *outage_lines(soak),
        f"unanswered mutations: {len(unanswered)}"
        f" ({sum(soak.in_outage(c) for c in unanswered)} of them in flight during an outage);"
        f" {sum(c.reference is not None for c in unanswered)} placements, of which"
        f" {soak.placed_unanswered.total()} made an order after all"
        f" ({', '.join(f'{s} {n}' for s, n in soak.placed_unanswered.most_common()) or 'none'})",
        *_examples(soak, unanswered_outside or unanswered),
        f"500s: {len(errors)}, {len(outside)} outside the outage seconds",
        *_examples(soak, outside or errors),
        *memory_lines(soak),
        f"books: {sum(len(r) for r in soak.violations.values())} violating rows,"
        f" {soak.deadlocks} deadlocks (PostgreSQL's count)",
        *describe({k: v for k, v in soak.violations.items() if v}),
        "targets:",
    ]
    for name, held, figure in targets(soak):
        lines.append(f"  [{'ok' if held else 'FAILED'}] {name}: {figure}")
    return lines
