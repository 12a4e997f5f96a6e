#!/usr/bin/env bash
# Regenerates the checked-in gRPC stubs (steplake/v1/ingest_pb2*.py and
# their .pyi type stubs) from proto/steplake/v1/ingest.proto.
#
# Needs grpcio-tools and mypy-protobuf at the versions below; the generated
# code then requires grpcio >= the grpcio-tools version and a protobuf
# runtime >= the gencode version printed in ingest_pb2.py, which is what
# pyproject.toml pins. Run from anywhere:  python/scripts/generate_protos.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
"$python" -m pip install --quiet "grpcio-tools==1.85.1" "mypy-protobuf==5.1.0"
"$python" -m grpc_tools.protoc \
  -I "$here/../proto" \
  --python_out="$here" \
  --pyi_out="$here" \
  --grpc_python_out="$here" \
  --mypy_grpc_out="$here" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$(command -v "$python")")/protoc-gen-mypy_grpc" \
  "$here/../proto/steplake/v1/ingest.proto"
echo "generated into $here/steplake/v1"
