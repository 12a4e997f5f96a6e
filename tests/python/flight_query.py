"""Query a steplake server with pyarrow's Flight client (Arrow C++), an
independent Flight implementation: GetFlightInfo with a Flight SQL
CommandStatementQuery, then DoGet on each endpoint.

Usage: flight_query.py HOST:PORT SQL ; prints the result as JSON rows.
"""

import json
import sys

import pyarrow.flight as flight


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def statement_query_command(sql):
    """google.protobuf.Any wrapping arrow.flight.protocol.sql.CommandStatementQuery."""
    command = field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, type_url) + field(2, command)


def main():
    address, sql = sys.argv[1], sys.argv[2]
    client = flight.FlightClient(f"grpc://{address}")
    info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_query_command(sql)))
    tables = [client.do_get(endpoint.ticket).read_all() for endpoint in info.endpoints]
    rows = [row for table in tables for row in table.to_pylist()]
    print(json.dumps({"schema": [f.name for f in info.schema], "rows": rows}, default=str))


if __name__ == "__main__":
    main()
