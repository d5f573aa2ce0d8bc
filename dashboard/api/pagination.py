"""Page-number pagination with a ceiling, and costs that do not grow with the table.

Two things make plain page-number pagination slow on large tables: COUNT(*) on every
request and OFFSET over full rows for deep pages. The page is found by walking only the
primary keys in order (an index-only scan) before the full rows of that page are loaded,
and on large tables (≥ 10,000 rows) the count is cached for a few seconds. Whether a next
page exists never depends on that count: one key past the page is fetched to know it, so
a client following `next` links sees every row even while the count is a little stale.
"""

import hashlib

from django.core.cache import cache
from django.core.paginator import Page, Paginator
from rest_framework.pagination import PageNumberPagination

COUNT_CACHE_SECONDS = 10
COUNT_CACHE_MIN_ROWS = 10_000


class _KeysetPage(Page):
    def __init__(self, object_list, number, paginator, has_more: bool):
        super().__init__(object_list, number, paginator)
        self._has_more = has_more

    def has_next(self):
        return self._has_more


class CachedCountKeysetPaginator(Paginator):
    """A Paginator whose large counts are cached and whose pages are fetched by key."""

    @property
    def count(self):
        if not hasattr(self, "_count_value"):
            key = "ferry:count:" + hashlib.sha256(str(self.object_list.query).encode()).hexdigest()
            value = cache.get(key)
            if value is None:
                value = self.object_list.count()
                if value >= COUNT_CACHE_MIN_ROWS:
                    cache.set(key, value, COUNT_CACHE_SECONDS)
            self._count_value = value
        return self._count_value

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        queryset = self.object_list
        ordering = list(queryset.query.order_by) or list(queryset.model._meta.ordering)
        keys = list(queryset.values_list("pk", flat=True)[bottom : bottom + self.per_page + 1])
        has_more = len(keys) > self.per_page
        keys = keys[: self.per_page]
        rows = {obj.pk: obj for obj in queryset.filter(pk__in=keys).order_by(*ordering)}
        return _KeysetPage([rows[k] for k in keys if k in rows], number, self, has_more)


class FerryPagination(PageNumberPagination):
    """50 rows by default, up to 500 with ?page_size=."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    django_paginator_class = CachedCountKeysetPaginator
