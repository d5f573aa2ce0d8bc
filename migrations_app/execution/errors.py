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

# What each class means for the person reading the attempt.
EXPLANATIONS = {
    CONNECTION_LOST: "The connection to a host's libvirt was lost during the move.",
    CPU_INCOMPATIBLE: "The destination's CPU cannot run this VM's CPU model.",
    NO_SPACE: "A host ran out of disk space for the VM's storage.",
    TIMEOUT: "The move did not finish within the policy's completion timeout and was aborted.",
    NO_PROGRESS: "The move made no progress for too long; the watchdog aborted it.",
    NOT_CONVERGING: "Memory was dirtied faster than it could be sent; the policy says abort.",
    ABORTED_BY_OPERATOR: "An operator cancelled the move; the VM stays on its source.",
    GUEST_DIED: "The VM arrived on the destination but stopped running during verification.",
    PREFLIGHT_BLOCKED: "A check on live data found a blocker; nothing was moved.",
    WORKER_LOST: "The worker running this move disappeared; the reconciler recorded the outcome.",
    AMBIGUOUS: "Ferry could not tell where the VM is running; an operator must look.",
    STORAGE_NOT_SHARED: (
        "libvirt refused a live move: the disks are not on storage it knows is shared "
        "(use a move with storage copy, or register the pool as shared on both hosts)."
    ),
    LIBVIRT: "libvirt reported an error.",
}

# Substrings of libvirt messages (lower case) that identify a class, most specific first.
_PATTERNS = (
    (ABORTED_BY_OPERATOR, ("operation aborted", "canceled by client", "cancelled by client")),
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
