"""manage.py audit_verify: recompute the audit chain and report the first broken link,
checking it against the latest signed anchor of its head (dashboard.audit.anchor)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dashboard.audit.anchor import AnchorInvalid, anchor_latest
from dashboard.audit.verify import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Recompute the SHA-256 chain of the audit trail and report the first broken link "
        "(edited, deleted, inserted or reordered events), and check that it still holds the "
        "head recorded in the latest signed anchor (a cut-off tail or a rebuilt chain). "
        "Exits 1 when the chain is broken."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--expect-head",
            metavar="SEQUENCE:HASH",
            help="a head noted elsewhere (e.g. from a change record), instead of the anchor",
        )
        parser.add_argument(
            "--anchor", metavar="FILE", help="an anchor file (or the sink's file) to check"
        )
        parser.add_argument(
            "--no-anchor", action="store_true", help="check the chain alone, without an anchor"
        )
        parser.add_argument("--chunk-size", type=int, default=10_000)

    def handle(self, *args, **options):
        expect, source = self._expected_head(options)
        verbose = options["verbosity"] > 1
        result = audit_chain_verify(
            chunk_size=options["chunk_size"],
            expect_head=expect,
            progress=(lambda n: self.stderr.write(f"  {n} events checked")) if verbose else None,
        )
        if result.ok:
            head = (
                f"head #{result.head_sequence} {result.head_hash}"
                if result.head_sequence
                else "the trail is empty"
            )
            self.stdout.write(
                f"OK: {result.checked} events verified in {result.seconds:.2f} s; {head}; {source}"
            )
            return
        self.stderr.write(
            f"BROKEN at event #{result.broken_sequence}: {result.problem} "
            f"({result.checked} events before it verified in {result.seconds:.2f} s; {source})"
        )
        raise SystemExit(1)

    def _expected_head(self, options):
        if options["expect_head"]:
            sequence, _, digest = options["expect_head"].partition(":")
            if not sequence.isdigit() or len(digest) != 64:
                raise CommandError("--expect-head must look like 1234:<64 hex digits>")
            return (int(sequence), digest.lower()), f"expected head #{sequence} found"
        if options["no_anchor"]:
            return None, "no anchor checked (--no-anchor)"
        path = Path(options["anchor"]) if options["anchor"] else None
        if path is not None and not path.exists():
            raise CommandError(f"{path} does not exist")
        try:
            anchor = anchor_latest(path)
        except AnchorInvalid as exc:
            self.stderr.write(f"BROKEN: {exc}")
            raise SystemExit(1) from None
        if anchor is None:
            self.stderr.write(
                "WARNING: no anchor of the chain's head yet (FERRY_AUDIT_ANCHOR_DIR): a cut-off "
                "tail or a rebuilt chain cannot be detected"
            )
            return None, "no anchor yet"
        return (anchor.sequence, anchor.hash), f"anchored head #{anchor.sequence} found"
