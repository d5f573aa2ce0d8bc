"""OpenAPI extensions: the API token scheme keeps the name clients know ("tokenAuth").

drf-spectacular names django-rest-knox's scheme "knoxApiToken"; to clients it is the same
`Authorization: Token <key>` header as before, so the committed contract keeps its name.
"""

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme


class FerryTokenScheme(KnoxTokenScheme):
    name = "tokenAuth"
    priority = 1
