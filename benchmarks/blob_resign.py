"""The blob front's SharedKey re-signing of token calls: what it costs per request.

Azurite takes no tokens (cicd_tools/sandbox/storage/azurite.py), so the front, after checking a bearer token and
RBAC, signs the forwarded request with the account key (storage/resign.py). This prints the median and p90 of a
blob HEAD through the front with a token (checked and re-signed) beside one with the account key (forwarded as it
came), interleaved in rounds so load from other processes hits both alike, and the cost of ``resigned_headers``
alone.

Run: ``.venv/bin/python benchmarks/blob_resign.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from azure.storage.blob import BlobClient, BlobServiceClient

from cicd_tools.sandbox.runtime import PRIVATE_ENDPOINT, Sandbox
from cicd_tools.sandbox.storage.resign import resigned_headers


def timed(client: BlobClient, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        client.get_blob_properties()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="HEADs per kind (in 4 rounds)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Sandbox(Path(folder) / "sandbox", propagation_delay=0.3) as box:
        account = box.layout.workspace_storage_account  # shared key allowed: both kinds reach the same account
        endpoint = box.blob_endpoint_of(account, PRIVATE_ENDPOINT)
        keyed = BlobServiceClient(endpoint, connection_verify=str(box.ca_bundle),
                                  credential={"account_name": account, "account_key": box.account_key(account)})
        keyed.create_container("bench-resign")
        keyed.get_blob_client("bench-resign", "b.json").upload_blob(b"{}")
        token = BlobServiceClient(endpoint, credential=box.credential(), connection_verify=str(box.ca_bundle))
        clients = {"token (checked, re-signed)": token.get_blob_client("bench-resign", "b.json"),
                   "account key (forwarded as is)": keyed.get_blob_client("bench-resign", "b.json")}
        samples: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(4):
            for name, client in clients.items():
                timed(client, 10)  # warm the connection
                samples[name] += timed(client, args.requests // 4)
        for name, values in samples.items():
            print(f"{name:32} median {statistics.median(values) * 1000:6.2f} ms   "
                  f"p90 {statistics.quantiles(values, n=10)[-1] * 1000:6.2f} ms   (n={len(values)})")
        headers = [("x-ms-version", "2026-10-06"), ("x-ms-date", "Tue, 08 Dec 2026 01:00:00 GMT"),
                   ("Authorization", "Bearer x"), ("x-ms-client-request-id", "id"), ("User-Agent", "azsdk-python")]
        key, count = box.account_key(account), 5000
        start = time.perf_counter()
        for _ in range(count):
            resigned_headers(account, key, "HEAD", f"https://127.0.0.1:1/{account}/bench-resign/b.json", headers)
        print(f"{'resigned_headers alone':32} {(time.perf_counter() - start) / count * 1e6:6.1f} us per request")


if __name__ == "__main__":
    main()
