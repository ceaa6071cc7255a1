"""Celery's formats, pure and without I/O: layer 0 (stdlib; msgpack/yaml imported inside functions only).

- ``taskctl.formats.safepickle``: a pickle reader that imports nothing and runs nothing (a restricted Unpickler).
- ``taskctl.formats.bounded``: any decoded value made bounded (placeholders for what cannot be shown).
- ``taskctl.formats.result``: result meta as Celery stores it (keys, serializers, compression, exceptions, children).
- ``taskctl.formats.message``: task messages (protocol 2 and 1) and RPC result messages.
- ``taskctl.formats.control``: remote-control (pidbox) requests and replies, e.g. revoke.
"""
