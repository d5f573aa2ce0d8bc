"""A web process compiles every template and imports every view before it serves."""

from django.template import engines

from dashboard.warmup import warm_up


def test_warm_up_compiles_every_project_template_into_the_cache():
    loader = engines["django"].engine.template_loaders[0]
    loader.reset()
    warm_up()
    cached = set(loader.get_template_cache)
    for name in (
        "migrations_app/plan_detail.html",
        "migrations_app/status.html",
        "registration/login.html",
        "inventory/vm_detail.html",
    ):
        assert name in cached, sorted(cached)
