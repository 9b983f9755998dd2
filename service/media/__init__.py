"""Media: fetch image bytes for media references (bounded, retried, size- and host-limited).

Knows nothing of posts' meaning or of models: bytes in, bytes (or a reason for failure) out.
"""
