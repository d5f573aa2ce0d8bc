"""Errors classified for people: a small set of classes an operator can act on, each with
a sentence that says what happened; libvirt's own message is kept beside it as evidence."""

from dataclasses import dataclass

CONNECTION_LOST = "connection_lost"
CPU_INCOMPATIBLE = "cpu_incompatible"
NO_SPACE = "no_space"
TIMEOUT = "timeout"
NO_PROGRESS = "no_progress"
NOT_CONVERGING = "not_converging"
ABORTED_BY_OPERATOR = "aborted_by_operator"
GUEST_DIED = "guest_died_after_switchover"
PREFLIGHT_BLOCKED = "preflight_blocked"
WORKER_LOST = "worker_lost"
AMBIGUOUS = "ambiguous_state"
STORAGE_NOT_SHARED = "storage_not_shared"
LIBVIRT = "libvirt_error"
CALL_TIMEOUT = "libvirt_call_timeout"
ABORTED_ELSEWHERE = "aborted_outside_ferry"
POSTCOPY_FAILED = "postcopy_failed"
SPLIT_BRAIN = "both_copies_ran"
PARTIAL_STORAGE_MOVE = "partial_storage_move"
SHARED_STORAGE_UNPROVEN = "shared_storage_unproven"
PREEMPTED = "preempted"
HOOK_FAILED = "hook_failed"

# What each class means for the person reading the attempt.
EXPLANATIONS = {
    CONNECTION_LOST: "The connection to a host's libvirt was lost during the move.",
    CPU_INCOMPATIBLE: "The destination's CPU cannot run this VM's CPU model.",
    NO_SPACE: "A host ran out of disk space for the VM's storage.",
    TIMEOUT: "The move did not finish within the policy's completion timeout and was aborted.",
    NO_PROGRESS: "The move made no progress for too long; the watchdog aborted it.",
    NOT_CONVERGING: "Memory was dirtied faster than it could be sent; the policy says abort.",
    ABORTED_BY_OPERATOR: "An operator cancelled the move before the guest switched hosts.",
    PREEMPTED: "An urgent plan needed this move's slot: it was stopped in pre-copy, the VM "
    "stays on its source and the move starts again when a slot is free.",
    GUEST_DIED: "The VM arrived on the destination but stopped running during verification.",
    PREFLIGHT_BLOCKED: "A check on live data found a blocker; nothing was moved.",
    HOOK_FAILED: "A pre-migration hook failed (or did not answer in time); the VM was not touched.",
    WORKER_LOST: "The worker running this move disappeared; the reconciler recorded the outcome.",
    AMBIGUOUS: "Ferry could not tell where the VM is running; an operator must look.",
    STORAGE_NOT_SHARED: (
        "libvirt refused a live move: the disks are not on storage it knows is shared "
        "(use a move with storage copy, or register the pool as shared on both hosts)."
    ),
    LIBVIRT: "libvirt reported an error.",
    ABORTED_ELSEWHERE: (
        "The job was aborted outside Ferry (by libvirt, QEMU or another client of the host)."
    ),
    CALL_TIMEOUT: "A libvirt call did not answer in time; Ferry stopped acting on the move.",
    POSTCOPY_FAILED: (
        "Post-copy failed: the guest's memory is split between the hosts, so neither side "
        "was resumed; Ferry recovers it when the hosts can reach each other again."
    ),
    SPLIT_BRAIN: (
        "The VM ran on both hosts at once; Ferry paused the copy that is not the move's "
        "outcome (nothing was destroyed) and an operator must decide."
    ),
    PARTIAL_STORAGE_MOVE: (
        "Some disks moved and others did not; the VM runs with each disk on a valid copy "
        "and an operator decides whether to finish or undo the move."
    ),
    SHARED_STORAGE_UNPROVEN: (
        "The disks' pool looks shared by both hosts but a file written through one host is "
        "not seen through the other: it is not shared storage."
    ),
}

# Substrings of libvirt messages (lower case) that identify a class, most specific first.
_PATTERNS = (
    # Ferry's own aborts are classified by the runner, which knows it sent them; an abort
    # libvirt reports otherwise came from libvirt, QEMU or another client.
    (ABORTED_ELSEWHERE, ("operation aborted", "canceled by client", "cancelled by client")),
    (STORAGE_NOT_SHARED, ("unsafe migration", "without shared storage")),
    (CPU_INCOMPATIBLE, ("cpu is incompatible", "guest cpu doesn't match", "unsupported cpu")),
    (NO_SPACE, ("no space left", "enospc", "not enough space", "insufficient space")),
    (
        CONNECTION_LOST,
        (
            "end of file while reading",
            "connection reset",
            "connection refused",
            "client socket is closed",
            "cannot recv data",
            "cannot write data",
            "broken pipe",
            "unable to connect",
            "failed to connect",
            "no route to host",
            "keepalive",
            "disconnected",
            "lost connection",
            "closed connection",
            "connection closed",
        ),
    ),
    (TIMEOUT, ("timed out", "timeout")),
)


@dataclass
class ExecutionError(Exception):
    """A classified failure of one attempt (raised inside the runner and drivers)."""

    error_class: str
    message: str
    libvirt_message: str = ""

    def __str__(self):
        return self.message


def classify_message(text: str, default: str = LIBVIRT) -> str:
    """The error class for a libvirt message."""
    lowered = (text or "").lower()
    for error_class, needles in _PATTERNS:
        if any(needle in lowered for needle in needles):
            return error_class
    return default


def from_libvirt(exc: Exception, context: str = "") -> ExecutionError:
    """Classify a libvirt exception; the message says what failed, libvirt's is evidence."""
    raw = exc.get_error_message() if hasattr(exc, "get_error_message") else str(exc)
    raw = raw or str(exc)
    error_class = classify_message(raw)
    prefix = f"{context}: " if context else ""
    return ExecutionError(error_class, f"{prefix}{EXPLANATIONS[error_class]}", raw)
