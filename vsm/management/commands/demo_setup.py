from django.core.management.base import BaseCommand

from vsm.sample import sample_world_create


class Command(BaseCommand):
    help = "Load the small sample world and the demo accounts (idempotent), and print the logins."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the portal is served.")

    def handle(self, *args, **options):
        logins = sample_world_create()
        self.stdout.write(f"Demo logins ({options['url']}):")
        for login in logins:
            self.stdout.write(
                f"  {login.role:<14} {login.username:<8} / {login.password:<18} sees {login.sees}"
            )
