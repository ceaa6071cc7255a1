"""Celery's formats, pure and without I/O: layer 0 (stdlib; msgpack/yaml imported inside functions only).

- ``taskctl.formats.result``: result meta as Celery stores it; every name, from ``result_keys``,
  ``result_payload`` (decoding), ``result_meta`` (meta, exceptions, progress) and ``result_encode`` (writing).
- ``taskctl.formats.message``: broker messages; every name, from ``message_body``, ``message_decode``,
  ``message_records`` (the drain file) and ``message_build`` (task messages, republish rules).
- ``taskctl.formats.control``: remote-control (pidbox) requests and replies, e.g. revoke.
- ``taskctl.formats.safepickle``: a pickle reader that imports nothing and runs nothing (a restricted Unpickler);
  ``taskctl.formats.picklescan``: the opcode pass that bounds what the unpickler may allocate.
- ``taskctl.formats.bounded``: any decoded value made bounded (placeholders for what cannot be shown);
  ``taskctl.formats.loaders``: the JSON, msgpack and YAML loaders that use it.
- ``taskctl.formats.compression``: the one guarded decompression; ``taskctl.formats.times``: the one ISO-8601 parser.
"""
