"""manage.py audit_verify: recompute the audit chain and report the first broken link."""

from django.core.management.base import BaseCommand, CommandError

from dashboard.audit.verify import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Recompute the SHA-256 chain of the audit trail and report the first broken link "
        "(edited, deleted, inserted or reordered events). Exits 1 when the chain is broken."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--expect-head",
            metavar="SEQUENCE:HASH",
            help="a head noted earlier (e.g. from a change record): also detects a cut tail",
        )
        parser.add_argument("--chunk-size", type=int, default=10_000)

    def handle(self, *args, **options):
        expect = None
        if options["expect_head"]:
            sequence, _, digest = options["expect_head"].partition(":")
            if not sequence.isdigit() or len(digest) != 64:
                raise CommandError("--expect-head must look like 1234:<64 hex digits>")
            expect = (int(sequence), digest.lower())
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
                f"OK: {result.checked} events verified in {result.seconds:.2f} s; {head}"
            )
            return
        self.stderr.write(
            f"BROKEN at event #{result.broken_sequence}: {result.problem} "
            f"({result.checked} events before it verified in {result.seconds:.2f} s)"
        )
        raise SystemExit(1)
