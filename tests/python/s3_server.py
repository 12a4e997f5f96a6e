"""A real S3-compatible server for the object-storage tests: moto's server
mode on loopback, with one bucket created.

    python s3_server.py BUCKET [PORT]

Prints `listening http://127.0.0.1:PORT` once the bucket exists, then serves
until its stdin closes (the test that started it ends or drops it). Any
access key is accepted. Its data is in memory: a restart starts empty.
"""

import sys

import boto3
from moto.server import ThreadedMotoServer


def main() -> None:
    bucket = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="steplake-test",
        aws_secret_access_key="steplake-test",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    print(f"listening {endpoint}", flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
