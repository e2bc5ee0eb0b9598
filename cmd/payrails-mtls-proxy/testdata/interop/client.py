"""Interop client: Python's urllib through http_proxy, as legacy Python services call.

Usage: client.py BASE_URL NAME. Prints one JSON line per operation.
"""
import hashlib
import json
import sys
import urllib.request

UPLOAD = 1024 * 1024 + 123
DOWNLOAD = 10 * 1024 * 1024


def pattern(n):
    block = bytes((ord("a") + i % 26) for i in range(26 * 1024))
    sent = 0
    while sent < n:
        chunk = block[: min(len(block), n - sent)]
        sent += len(chunk)
        yield chunk


def call(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, resp.read()


def main():
    base, name = sys.argv[1], sys.argv[2]
    status, body = call("GET", base + "/v1/echo?q=1", headers={"X-Interop": name})
    print(json.dumps({"op": "get", "status": status, "body": body.decode()}))
    status, body = call("POST", base + "/v1/payments", data=b'{"amount":1000,"currency":"EUR"}',
                        headers={"Content-Type": "application/json", "X-Idempotency-Key": "key-" + name,
                                 "X-Interop": name})
    print(json.dumps({"op": "post", "status": status, "body": body.decode()}))
    # An iterable body without Content-Length makes urllib send it chunked.
    status, body = call("POST", base + "/v1/upload", data=pattern(UPLOAD),
                        headers={"Content-Type": "application/octet-stream", "X-Interop": name})
    print(json.dumps({"op": "upload", "status": status, "body": body.decode()}))
    req = urllib.request.Request(base + "/bytes/%d" % DOWNLOAD, headers={"X-Interop": name})
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(req, timeout=120) as resp:
        status = resp.status
        while True:
            chunk = resp.read(65536)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    print(json.dumps({"op": "download", "status": status, "bytes": size, "sha256": digest.hexdigest()}))


if __name__ == "__main__":
    main()
