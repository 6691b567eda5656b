from django.core.management.base import BaseCommand, CommandError

from connectors.fakes import FAKE_TOOLS
from connectors.fakes.wsgi import CONTROL_PREFIX, LOOPBACK_HOST, serve


class Command(BaseCommand):
    help = (
        "Serve the fake tools (for now Jira) on loopback for the demo and end-to-end tests, until Ctrl-C. "
        "Each fake starts empty: seed it through its fake-only /_fake/ control endpoints."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", default=LOOPBACK_HOST, help="A loopback address; nothing else is allowed."
        )
        parser.add_argument("--port", type=int, default=8800)

    def handle(self, *args, **options):
        fakes = {prefix: make_fake() for prefix, make_fake in FAKE_TOOLS.items()}
        try:
            server = serve(fakes, host=options["host"], port=options["port"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        except OSError as error:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {error}") from error

        self.stdout.write(f"Fake tools at {server.base_url} (Ctrl-C to stop):")
        for prefix, fake in fakes.items():
            credentials = "  ".join(f"{name}={value}" for name, value in fake.credentials().items())
            self.stdout.write(f"  {fake.label:<18} {server.url(prefix)}  {credentials}")
            self.stdout.write(
                f"  {'':<18} {server.url(prefix)}{CONTROL_PREFIX}/... (fake-only control endpoints)"
            )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
        finally:
            server.server_close()
