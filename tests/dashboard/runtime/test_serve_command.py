"""`manage.py serve`: bad arguments are refused with the reason, before anything starts."""

import socket

import pytest
from django.core.management import CommandError, call_command


def test_several_web_processes_need_redis(settings):
    settings.REDIS_URL = ""
    with pytest.raises(CommandError, match="needs REDIS_URL"):
        call_command("serve", "--web-processes", "2", "--port", "0")


def test_zero_web_processes_is_refused():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("serve", "--web-processes", "0")


def test_a_port_in_use_is_refused_with_the_reason():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}"):
            call_command("serve", "--port", str(port), "--workers", "0")
