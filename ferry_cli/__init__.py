"""The `ferry` command line: a client of Ferry's REST API and plan websockets.

It imports nothing of the server (no Django, no Ferry app): it speaks HTTP and websockets
only, so it can be installed and run on any machine that reaches a Ferry server.
"""
