"""steplake's wire API (generated from proto/steplake/v1/ingest.proto).

Do not edit the ``*_pb2*`` modules: regenerate them with
``python/scripts/generate_protos.sh``.
"""
