from django.core.management.base import BaseCommand, CommandError

from connectors.base import is_number_text
from connectors.ingest import scope_sync
from connectors.models import Scope, SyncTrigger


class Command(BaseCommand):
    help = "Sync scopes in-process with the service the Celery workers run (all enabled scopes by default)."

    def add_arguments(self, parser):
        parser.add_argument("scopes", nargs="*", help="Scope ids or names; all enabled scopes when omitted.")
        parser.add_argument(
            "--full-scan", action="store_true", help="Also mark items gone from the tool as deleted."
        )

    def handle(self, *args, scopes, full_scan, **options):
        selected = list(self._select(scopes))
        for scope in selected:
            trigger = SyncTrigger.FULL_SCAN if full_scan else SyncTrigger.MANUAL
            result = scope_sync(scope.pk, trigger=trigger, full_scan=full_scan)
            if result.skipped:
                self.stdout.write(f"{scope}: skipped, {result.skipped}")
                continue
            counts = ", ".join(f"{name} {value}" for name, value in result.counts.items())
            self.stdout.write(f"{scope}: {result.outcome} ({counts})")

    def _select(self, names):
        if not names:
            return Scope.objects.filter(enabled=True).select_related("connection")
        found = []
        for name in names:
            lookup = {"pk": int(name)} if is_number_text(name) else {"name": name}
            scope = Scope.objects.filter(**lookup).select_related("connection").first()
            if scope is None:
                raise CommandError(f"no scope with id or name {name!r}; see the scopes in Django admin")
            found.append(scope)
        return found
