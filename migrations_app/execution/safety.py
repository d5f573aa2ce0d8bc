"""What to do after a move failed, or when nobody watched it: one decision table for every
driver and for the reconciler, so they cannot drift.

Input is what the hypervisors say now (`Situation`: each side's domain state and its
reason, persistence, autostart, whether Ferry's migration job still runs), plus what the
database knows (post-copy began, the migrate call's result, the autostart recorded before
the transfer). Output is a `Decision`: where the VM is (`verdict`), why, and the actions
that make both hosts safe, in order. The table never destroys a running guest, never
resumes a source whose memory may already be on the destination, and never leaves a
definition that could autostart on a host the VM left.

Rules (the reasons are in the code below):
- Ferry's migration job still runs: follow it (`in_flight`); abort it only before post-copy.
- A host cannot be asked: nothing is resumed or destroyed; the source's autostart is turned
  off if the source answers; an operator decides.
- Both copies run: the one that is not the move's outcome is paused (the source when the
  migrate call succeeded, the destination when it failed, both when Ferry cannot tell).
- Post-copy began: the source is never resumed; running on the destination only is the
  outcome; anything else waits for post-copy recovery or an operator.
- Running on the destination only: the move happened; the source must not autostart.
- Running on the source only: the move did not happen; an incoming copy left paused on the
  destination is destroyed (libvirt's own cleanup), a leftover inactive definition there is
  removed (it would block the next attempt and could be started by hand), and the source's
  autostart is put back as it was.
- The source paused by the migration itself (or by Ferry's force-complete) with nothing on
  the destination: resumed, as libvirt does after a failed pre-copy.
- Any other pause (I/O error, a person) is left as it is for an operator.
"""

from dataclasses import dataclass, field

# verdicts
IN_FLIGHT = "in_flight"
ON_SOURCE = "on_source"
ON_DESTINATION = "on_destination"
NEEDS_ATTENTION = "needs_attention"

# actions, in the order a decision lists them
ABORT_JOB = "abort_job"
PAUSE_SOURCE = "pause_source"
PAUSE_DESTINATION = "pause_destination"
DESTROY_INCOMING = "destroy_incoming"
UNDEFINE_DESTINATION_LEFTOVER = "undefine_destination_leftover"
RESUME_SOURCE = "resume_source"
RESTORE_SOURCE_AUTOSTART = "restore_source_autostart"
DISABLE_SOURCE_AUTOSTART = "disable_source_autostart"

# migrate call outcomes
CALL_SUCCEEDED = "succeeded"
CALL_FAILED = "failed"
CALL_UNKNOWN = "unknown"  # reattached, or the call has not returned
CALL_NOT_MADE = "not_made"

# pause reasons that a migration itself causes (libvirt resumes the source after them)
MIGRATION_PAUSES = frozenset({"migration"})
POSTCOPY_REASONS = frozenset({"postcopy", "postcopy_failed"})


@dataclass(frozen=True)
class Side:
    """One host's view of the VM: its domain (or none) and what libvirt says about it."""

    state: str | None = None  # running / paused / shutoff / crashed / …; None: no domain
    reason: str = ""  # libvirt's state reason, e.g. migration, postcopy, user, ioerror
    persistent: bool = False
    autostart: bool = False
    migration_job: bool = False  # Ferry's MIGRATION_OUT job runs (source side only)
    reachable: bool = True
    error: str = ""

    @property
    def running(self) -> bool:
        # A destination whose post-copy failed has running vCPUs that wait for pages which
        # will never come: it is not a guest that runs.
        return self.state == "running" and self.reason != "postcopy_failed"

    @property
    def absent(self) -> bool:
        return self.reachable and self.state is None


@dataclass(frozen=True)
class Situation:
    """Everything the table needs for one live move."""

    source: Side
    destination: Side
    postcopy_recorded: bool = False
    call: str = CALL_UNKNOWN
    ferry_paused_source: bool = False  # force-complete paused the guest on purpose
    source_autostart: bool | None = None  # recorded before the transfer; None: unknown

    @property
    def postcopy(self) -> bool:
        return (
            self.postcopy_recorded
            or self.source.reason in POSTCOPY_REASONS
            or self.destination.reason in POSTCOPY_REASONS
        )


@dataclass
class Decision:
    """Where the VM is, why, and what to do so that both hosts are safe."""

    verdict: str
    reason: str
    actions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "reason": self.reason, "actions": list(self.actions)}


def decide(s: Situation) -> Decision:
    """The decision for a live move (live or live_copy) in situation `s`."""
    src, dst = s.source, s.destination
    if src.migration_job:
        # The job is alive: follow it. Aborting is the caller's choice, allowed before
        # post-copy only (see abort_allowed).
        return Decision(IN_FLIGHT, "Ferry's migration job still runs on the source.")
    if not src.reachable or not dst.reachable:
        down = ", ".join(
            name for name, side in (("source", src), ("destination", dst)) if not side.reachable
        )
        actions = [DISABLE_SOURCE_AUTOSTART] if src.reachable and src.persistent else []
        return Decision(
            NEEDS_ATTENTION,
            f"The {down} host cannot be asked; Ferry neither resumes nor destroys a copy it "
            "cannot compare with the other side.",
            actions,
        )
    if src.running and dst.running:
        if s.call == CALL_SUCCEEDED or s.postcopy:
            return Decision(
                NEEDS_ATTENTION,
                "Both copies ran; the move had switched over, so the source was paused.",
                [PAUSE_SOURCE, DISABLE_SOURCE_AUTOSTART],
            )
        if s.call in (CALL_FAILED, CALL_NOT_MADE):
            return Decision(
                NEEDS_ATTENTION,
                "Both copies ran; the move failed, so the destination's copy was paused.",
                [PAUSE_DESTINATION],
            )
        return Decision(
            NEEDS_ATTENTION,
            "Both copies ran and Ferry cannot tell which one is the move's outcome: both "
            "were paused.",
            [PAUSE_SOURCE, PAUSE_DESTINATION, DISABLE_SOURCE_AUTOSTART],
        )
    if dst.running:
        # Switched over (pre-copy completed, or post-copy finished): the destination owns it.
        return Decision(
            ON_DESTINATION, "The VM runs on the destination only.", [DISABLE_SOURCE_AUTOSTART]
        )
    # Ferry asked for post-copy, but the source still runs its guest and the destination is
    # no post-copy half: the switch never happened (a failed pre-copy, handled below). After
    # a real switch the source never runs again unless someone resumed it, and then the
    # destination is the post-copy half: that stays for an operator.
    never_switched = src.running and dst.reason not in POSTCOPY_REASONS
    if s.postcopy and not never_switched:
        return Decision(
            NEEDS_ATTENTION,
            "Post-copy began and the guest runs on neither side: its memory is split "
            f"between the hosts (source {src.state or 'absent'}/{src.reason or '-'}, "
            f"destination {dst.state or 'absent'}/{dst.reason or '-'}); the source is never "
            "resumed. Recover with post-copy resume when the hosts reach each other.",
            [DISABLE_SOURCE_AUTOSTART] if src.persistent else [],
        )
    leftovers = []
    if dst.state == "paused":
        leftovers.append(DESTROY_INCOMING)
    elif dst.state is not None and dst.persistent and not dst.running:
        leftovers.append(UNDEFINE_DESTINATION_LEFTOVER)
    restore = [RESTORE_SOURCE_AUTOSTART] if s.source_autostart else []
    if src.running:
        return Decision(ON_SOURCE, "The VM runs on its source only.", leftovers + restore)
    if src.state == "paused" and (src.reason in MIGRATION_PAUSES or s.ferry_paused_source):
        return Decision(
            ON_SOURCE,
            "The source was left paused by the migration and the destination has no running "
            "copy: it was resumed.",
            leftovers + [RESUME_SOURCE] + restore,
        )
    if src.state == "paused":
        return Decision(
            NEEDS_ATTENTION,
            f"The VM is paused on its source ({src.reason or 'unknown reason'}), not by the "
            "migration: left as it is.",
            leftovers,
        )
    return Decision(
        NEEDS_ATTENTION,
        f"The VM runs nowhere (source {src.state or 'absent'}/{src.reason or '-'}, "
        f"destination {dst.state or 'absent'}/{dst.reason or '-'}); Ferry starts nothing by "
        "itself.",
        [DISABLE_SOURCE_AUTOSTART] if src.persistent and dst.state is not None else [],
    )


def abort_allowed(s: Situation) -> tuple[bool, str]:
    """Whether Ferry may abort the migration job now, and if not, why (for people)."""
    if s.postcopy:
        return False, (
            "Post-copy is running: the guest already runs on the destination and its memory "
            "comes from the source; aborting now would lose the guest. Ferry lets it finish."
        )
    return True, ""


def storage_copies_to_delete(
    copies: dict[str, str], referenced: set[str], active_jobs: set[str]
) -> list[str]:
    """Copies of a storage move that are safe to delete: not referenced by the domain's
    live or persistent XML, and their block job no longer runs (cancelled or never
    started). A path the VM uses, or may use at its next boot, is never deleted."""
    return sorted(
        path
        for target, path in copies.items()
        if path not in referenced and target not in active_jobs
    )
