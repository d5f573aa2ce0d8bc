"""Page-number pagination with a ceiling, so no client can ask for the whole inventory."""

from rest_framework.pagination import PageNumberPagination


class FerryPagination(PageNumberPagination):
    """50 rows by default, up to 500 with ?page_size=."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
