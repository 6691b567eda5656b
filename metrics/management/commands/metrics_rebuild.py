from time import perf_counter

from django.core.management.base import BaseCommand, CommandError

from metrics.services import product_rollups_rebuild
from vsm.models import Product


class Command(BaseCommand):
    help = "Rebuild the flow-metric rollups of the given products (all products when none is named)."

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", metavar="product-slug")

    def handle(self, *args, **options):
        slugs = options["slugs"]
        products = Product.objects.order_by("slug")
        if slugs:
            products = products.filter(slug__in=slugs)
            unknown = sorted(set(slugs) - {product.slug for product in products})
            if unknown:
                raise CommandError(f"no product with the slug {', '.join(unknown)}")
        total_started = perf_counter()
        for product in products:
            started = perf_counter()
            result = product_rollups_rebuild(product)
            self.stdout.write(
                f"{product.slug}: {result.items} flow items, {result.load_rows} daily load rows "
                f"in {perf_counter() - started:.2f} s"
            )
        self.stdout.write(f"rebuilt {len(products)} products in {perf_counter() - total_started:.2f} s")
