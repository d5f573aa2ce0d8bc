"""What a check returns: a finding with a stable id, a severity, a message a person
understands, a remedy, and the evidence (the values that were compared)."""

from dataclasses import dataclass, field

BLOCKER = "blocker"
WARNING = "warning"
INFO = "info"
OK = "ok"
SEVERITY_ORDER = {BLOCKER: 0, WARNING: 1, INFO: 2, OK: 3}


@dataclass(slots=True)
class Finding:
    """The verdict of one check on one item (and one destination)."""

    check_id: str
    severity: str
    message: str
    remedy: str = ""
    evidence: dict = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        return self.severity == BLOCKER

    def as_dict(self) -> dict:
        return {
            "check_id": self.check_id,
            "severity": self.severity,
            "message": self.message,
            "remedy": self.remedy,
            "evidence": self.evidence,
        }


def ok(check_id: str, message: str, **evidence) -> Finding:
    """A passing finding."""
    return Finding(check_id, OK, message, "", evidence)


def worst(findings) -> str:
    """The most severe severity among findings (ok when empty)."""
    best = OK
    for finding in findings:
        if SEVERITY_ORDER[finding.severity] < SEVERITY_ORDER[best]:
            best = finding.severity
    return best


def mib(value_bytes: int | None) -> int:
    """Bytes to whole MiB (0 when unknown)."""
    return int((value_bytes or 0) // (1024 * 1024))


def gib_text(value_mib: float) -> str:
    """A MiB figure as a short GiB text for messages."""
    return f"{value_mib / 1024:.1f} GiB"
