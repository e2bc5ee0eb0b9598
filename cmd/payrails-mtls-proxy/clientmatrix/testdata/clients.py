"""The client matrix's Python clients: urllib, http.client, requests, httpx, aiohttp.

Usage: python3 clients.py LIBRARY, with the plan in MATRIX_PLAN (see matrix_test.go). The proxy comes
from the environment as each library's users set it (http_proxy, HTTPS_PROXY, SSL_CERT_FILE,
REQUESTS_CA_BUNDLE); only http.client, which reads no environment, is given it in code.
Prints one JSON line per case: case, status, error, body_sha256, proxy_error, content_encoding.
"""
import base64
import hashlib
import json
import os
import ssl
import sys
import urllib.parse

PLAN = json.loads(os.environ["MATRIX_PLAN"])
CHUNK = 64 << 10


def file_chunks():
    with open(PLAN["upload"], "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                return
            yield b


def report(case, status=0, error="", body=b"", headers=None):
    headers = headers or {}
    get = lambda k: next((v for hk, v in headers.items() if hk.lower() == k.lower()), "")
    print(json.dumps({"case": case, "status": status, "error": error, "body_sha256": hashlib.sha256(body).hexdigest(),
                      "proxy_error": get("X-Payrails-Proxy-Error"), "content_encoding": get("Content-Encoding")}), flush=True)


def request_args(case):
    """Method, headers and body of a case; the body as bytes, a file or a generator."""
    name = case["name"]
    if name == "post":
        return "POST", {"Content-Type": "application/json", "X-Idempotency-Key": PLAN["idem"]}, PLAN["json"].encode()
    if name == "upload":
        return "POST", {"Content-Type": "application/octet-stream"}, open(PLAN["upload"], "rb").read()
    if name == "chunked":
        return "POST", {"Content-Type": "application/octet-stream"}, file_chunks()
    if name == "gzip":
        return "GET", {"Accept-Encoding": "gzip"}, None
    return "GET", {}, None


def run_urllib():
    import urllib.error
    import urllib.request
    # build_opener includes ProxyHandler(), which reads http_proxy / https_proxy (user:password too);
    # the default SSL context honours SSL_CERT_FILE.
    opener = urllib.request.build_opener()
    for case in PLAN["cases"]:
        method, headers, body = request_args(case)
        if case["name"] == "chunked":
            headers["Transfer-Encoding"] = "chunked"
        try:
            for url in case["urls"]:
                req = urllib.request.Request(url, data=body, headers=headers, method=method)
                with opener.open(req, timeout=30) as resp:
                    data = resp.read()
                    status, hdrs = resp.status, dict(resp.headers)
            report(case["name"], status, "", data, hdrs)
        except urllib.error.HTTPError as e:
            report(case["name"], e.code, str(e), e.read(), dict(e.headers))
        except Exception as e:  # noqa: BLE001 - what the client shows is the point
            report(case["name"], 0, repr(e))


def run_httpclient():
    import http.client
    proxy = PLAN["proxy"]
    auth = {}
    if proxy["user"]:
        token = base64.b64encode(f'{proxy["user"]}:{proxy["pass"]}'.encode()).decode()
        auth = {"Proxy-Authorization": "Basic " + token}
    conns = {}

    def conn_for(url):
        u = urllib.parse.urlsplit(url)
        key = (u.scheme, u.netloc)
        if key not in conns:
            if u.scheme == "https":  # HTTPS_PROXY: a CONNECT tunnel to the host
                c = http.client.HTTPSConnection(proxy["host"], proxy["port"], timeout=30,
                                                context=ssl.create_default_context(cafile=PLAN["ca"]))
                c.set_tunnel(u.hostname, u.port or 443, headers=auth)
            elif proxy["http"]:  # HTTP_PROXY: absolute-form requests to the proxy
                c = http.client.HTTPConnection(proxy["host"], proxy["port"], timeout=30)
            else:  # base URL
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            conns[key] = c
        return conns[key], u

    for case in PLAN["cases"]:
        method, headers, body = request_args(case)
        try:
            for url in case["urls"]:
                c, u = conn_for(url)
                target = u.path + ("?" + u.query if u.query else "")
                h = dict(headers)
                if u.scheme == "http" and proxy["http"]:
                    target = url
                    h.update(auth)
                c.request(method, target, body=body, headers=h, encode_chunked=case["name"] == "chunked")
                resp = c.getresponse()
                data = resp.read()
            report(case["name"], resp.status, "", data, dict(resp.getheaders()))
        except Exception as e:  # noqa: BLE001
            report(case["name"], 0, repr(e))
            conns.clear()


def run_requests():
    import requests
    # Session: trust_env reads http_proxy / HTTPS_PROXY (user:password too) and REQUESTS_CA_BUNDLE.
    s = requests.Session()
    for case in PLAN["cases"]:
        method, headers, body = request_args(case)
        try:
            for url in case["urls"]:
                r = s.request(method, url, headers=headers, data=body, timeout=30)
            report(case["name"], r.status_code, "", r.content, dict(r.headers))
        except Exception as e:  # noqa: BLE001
            report(case["name"], 0, repr(e))


def run_httpx():
    import httpx
    # trust_env (the default) reads HTTP_PROXY / HTTPS_PROXY (user:password too) and SSL_CERT_FILE.
    with httpx.Client(timeout=30) as c:
        for case in PLAN["cases"]:
            method, headers, body = request_args(case)
            try:
                for url in case["urls"]:
                    r = c.request(method, url, headers=headers, content=body)
                report(case["name"], r.status_code, "", r.content, dict(r.headers))
            except Exception as e:  # noqa: BLE001
                report(case["name"], 0, repr(e))


def run_aiohttp():
    import asyncio
    import aiohttp

    async def agen():
        for b in file_chunks():
            yield b

    async def main():
        # trust_env=True reads HTTP_PROXY / HTTPS_PROXY (user:password too); the default SSL
        # context honours SSL_CERT_FILE.
        async with aiohttp.ClientSession(trust_env=True, timeout=aiohttp.ClientTimeout(total=30)) as s:
            for case in PLAN["cases"]:
                method, headers, body = request_args(case)
                try:
                    for url in case["urls"]:
                        data = agen() if case["name"] == "chunked" else body
                        async with s.request(method, url, headers=headers, data=data) as r:
                            content = await r.read()
                            status, hdrs = r.status, dict(r.headers)
                    report(case["name"], status, "", content, hdrs)
                except Exception as e:  # noqa: BLE001
                    report(case["name"], 0, repr(e))

    asyncio.run(main())


{"urllib": run_urllib, "http.client": run_httpclient, "requests": run_requests, "httpx": run_httpx,
 "aiohttp": run_aiohttp}[sys.argv[1]]()
