"""`manage.py demo`: the living demo in one process (what `make demo` runs).

The first run migrates, generates the demo world (connectors.fakes.world), configures the portal for it
and loads it through the real connectors (vsm.demo); it keeps the fakes' state under var/demo/, so the
next run starts in seconds on the data already there. Then it serves the fake tools on loopback, lets
the simulated teams work every few seconds, runs the due scope syncs in-process (the embedded mode has
no beat) and serves the portal, until Ctrl-C stops all of it.
"""

import logging
import random
import signal
import threading
import time
from datetime import UTC, datetime

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connection
from django.db.backends.signals import connection_created
from django.utils import timezone

from connectors.fakes.world import (
    DEFAULT_SEED,
    SIZES,
    fakes_use_clock,
    tick,
    world_generate,
    world_load,
    world_save,
)
from connectors.fakes.wsgi import LOOPBACK_HOST, PrefixDispatcher, serve, system_clock
from connectors.tasks import integrations_sweep_task
from vsm.demo import DEMO_LOGINS, demo_configure, demo_load, demo_run_due_scopes
from vsm.models import Artifact

SAVE_EVERY_SECONDS = 60
SCHEDULER_POLL_SECONDS = 5
SWEEP_EVERY_SECONDS = 10 * 60  # as beat's integrations-sweep in vsm.settings


def sqlite_for_threads(sender, connection, **kwargs) -> None:
    """The web server reads while the scheduler syncs: WAL lets readers run beside one writer."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")


class Command(BaseCommand):
    help = (
        "Run the living demo: the fake tools with a year of history on loopback, the real syncs, links and "
        "metrics, simulated teams at work and the portal, until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Where the portal listens.")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--fake-port", type=int, default=8800, help="Where the fake tools listen (loopback)."
        )
        parser.add_argument(
            "--fake-host",
            default=LOOPBACK_HOST,
            help="Where the fake tools listen. Anything but loopback only on a private container network "
            "(docker compose --profile demo): the fakes accept published demo credentials.",
        )
        parser.add_argument(
            "--fakes-url",
            default="",
            help="The fake tools' address as the portal and workers reach it (default: from host and port).",
        )
        parser.add_argument("--size", choices=sorted(SIZES), default="default")
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
        parser.add_argument(
            "--tick-seconds", type=float, default=5.0, help="How often the simulated teams work."
        )
        parser.add_argument(
            "--no-live", action="store_true", help="Serve the world as loaded, without ticks."
        )
        parser.add_argument(
            "--tools-only",
            action="store_true",
            help="Serve only the fake tools and the simulated teams: the portal, workers and beat run "
            "elsewhere (docker compose --profile demo).",
        )

    def handle(self, *args, **options):
        # Ctrl-C and a plain kill both stop everything and keep the state (a shell may start us with
        # SIGINT ignored, which Python would keep).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # a line per rollup refresh: noise
        connection_created.connect(sqlite_for_threads)
        connection.close()  # the next query opens a connection with the pragmas
        call_command("migrate", interactive=False, verbosity=0)
        state = settings.VAR_DIR / "demo" / "world.pickle"
        fakes_url = (
            options["fakes_url"].rstrip("/") or f"http://{options['fake_host']}:{options['fake_port']}"
        )

        if Artifact.objects.exists() and not state.exists():
            raise CommandError(
                f"The database holds artifacts but the demo's fake tools have no saved state ({state}): "
                "run `make demo-reset` to start afresh (it deletes var/)."
            )
        if state.exists() and Artifact.objects.exists():
            self.stdout.write(f"Reloading the demo world from {state} (make demo-reset starts afresh).")
            fakes = world_load(state, now=system_clock)
            demo_configure(fakes_url, options["size"])
        else:
            fakes = self.create(options, fakes_url, state)

        try:
            server = serve(
                {f"/{name}": fake for name, fake in fakes.items()},
                host=options["fake_host"],
                port=options["fake_port"],
                private_network=options["fake_host"] != LOOPBACK_HOST,
            )
        except OSError as error:
            raise CommandError(
                f"Cannot serve the fake tools on port {options['fake_port']}: {error}"
            ) from error
        stop = threading.Event()
        threads = []
        if not options["tools_only"]:
            threads.append(
                threading.Thread(target=self.schedule, args=(stop,), name="demo-scheduler", daemon=True)
            )
        if not options["no_live"]:
            threads.append(
                threading.Thread(
                    target=self.work, args=(stop, fakes, options, state), name="demo-ticker", daemon=True
                )
            )
        with server:
            for thread in threads:
                thread.start()
            self.print_logins(options, fakes_url)
            try:
                if options["tools_only"]:
                    while not stop.wait(3600):
                        pass
                else:
                    call_command(
                        "runserver",
                        f"{options['host']}:{options['port']}",
                        use_reloader=False,
                        skip_checks=True,
                    )
            except KeyboardInterrupt:
                pass
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)
                world_save(fakes, state)
                self.stdout.write("Demo stopped; its state is kept for the next `make demo`.")

    def create(self, options, fakes_url: str, state) -> dict:
        started = time.perf_counter()
        now = timezone.now().replace(microsecond=0)
        self.stdout.write(f"Generating the demo world ({options['size']}, seed {options['seed']})...")
        world = world_generate(options["seed"], options["size"], now)
        demo_configure(fakes_url, options["size"])
        self.stdout.write("Syncing every scope through the connectors, linking, computing the metrics...")
        dispatcher = PrefixDispatcher({f"/{name}": fake for name, fake in world.fakes.items()})
        report = demo_load(transport=httpx.WSGITransport(app=dispatcher))
        for message in report.failures:
            self.stderr.write(f"  {message}")
        read = sum(counts.get("read", 0) for counts in report.counts.values())
        self.stdout.write(f"Loaded {read} items in {time.perf_counter() - started:.0f} s.")
        fakes_use_clock(world.fakes, system_clock)
        world_save(world.fakes, state)
        return world.fakes

    def schedule(self, stop: threading.Event) -> None:
        """The embedded mode's beat: sync the scopes whose schedule is due, in this process, and now and
        then pass the integrations over all their items (their safety net, and their retries)."""
        swept = time.monotonic()
        while not stop.wait(SCHEDULER_POLL_SECONDS):
            try:
                demo_run_due_scopes()
                if time.monotonic() - swept > SWEEP_EVERY_SECONDS:
                    integrations_sweep_task()
                    swept = time.monotonic()
            except Exception as error:  # keep the demo running; the sync run records the details
                self.stderr.write(f"scheduled sync failed: {error!r}")
            finally:
                close_old_connections()

    def work(self, stop: threading.Event, fakes: dict, options, state) -> None:
        """The simulated teams: a tick every few seconds; the fakes' state is kept every minute."""
        rng = random.Random(f"{options['seed']}-live-{datetime.now(UTC).isoformat()}")  # noqa: S311
        saved = time.monotonic()
        while not stop.wait(options["tick_seconds"]):
            tick(rng, fakes, datetime.now(UTC))
            if time.monotonic() - saved > SAVE_EVERY_SECONDS:
                world_save(fakes, state)
                saved = time.monotonic()

    def print_logins(self, options, fakes_url: str) -> None:
        url = (
            "the portal's own address"
            if options["tools_only"]
            else f"http://{options['host']}:{options['port']}"
        )
        self.stdout.write("")
        self.stdout.write(f"The portal: {url}   (fake tools at {fakes_url}; Ctrl-C stops everything)")
        for login in DEMO_LOGINS:
            self.stdout.write(
                f"  {login.role:<14} {login.username:<8} / {login.password:<18} sees {login.sees}"
            )
        self.stdout.write("")
