"""The local endpoint under load on loopback: fixed request rates and saturation, single-row and
500-row CSV payloads, p50/p99 latency and errors, through the SageMaker Runtime path
(``POST /endpoints/<name>/invocations``: router -> container instances).

Open loop at a fixed rate: request i is due at ``start + i / rate`` and its latency counts from
that due time (a slow server cannot hide its queueing). Saturation: ``--concurrency`` clients send
back to back. Every run is bounded (``--seconds``) and stays on 127.0.0.1. The load generator
shares the machine's cores with the endpoint. Requests are signed with the lake's key as boto3
signs them (the router checks each signature), once per run: a signature holds for 15 minutes.

    .venv/bin/python benchmarks/endpoint_load.py [--seconds 10] [--instances 2]   (after `make run`)
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

import httpx
from _serving import local_endpoint, published_model, scoring_rows, source_lake

MAX_OUTSTANDING = 512
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]  # as boto3's urllib3 does


def _client(connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=connections),
                             transport=httpx.AsyncHTTPTransport(socket_options=NODELAY))


def _signed(url: str, body: str) -> dict:
    from local_aws.common import credentials
    from local_aws.request_guard import sign

    return sign("POST", url, body.encode(), {"Content-Type": "text/csv", "Accept": "text/csv"}, credentials())


async def _send(client: httpx.AsyncClient, url: str, body: str, headers: dict) -> bool:
    try:
        answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


async def fixed_rate(url: str, body: str, rate: float, seconds: float) -> dict:
    latencies, errors, headers = [], 0, _signed(url, body)
    async with _client(MAX_OUTSTANDING) as client:
        start = time.perf_counter()

        async def one(due: float) -> None:
            nonlocal errors
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ok = await _send(client, url, body, headers)
            latencies.append(time.perf_counter() - due)
            errors += not ok

        total = int(rate * seconds)
        tasks = [asyncio.ensure_future(one(start + i / rate)) for i in range(total)]
        # Bounded: whatever has not finished 10 s after the last request was due counts as an error.
        _, late = await asyncio.wait(tasks, timeout=seconds + 10)
        for task in late:
            task.cancel()
        errors += len(late)
        elapsed = time.perf_counter() - start
    return _summary(latencies, errors, elapsed)


async def saturation(url: str, body: str, concurrency: int, seconds: float) -> dict:
    latencies, errors, headers = [], 0, _signed(url, body)
    async with _client(concurrency) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                ok = await _send(client, url, body, headers)
                latencies.append(time.perf_counter() - sent)
                errors += not ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _summary(latencies, errors, elapsed)


def _summary(latencies: list[float], errors: int, elapsed: float) -> dict:
    ordered = sorted(latencies) or [float("nan")]
    return {
        "requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
        "p50": 1000 * statistics.median(ordered), "p99": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--single-rates", default="50,200")
    parser.add_argument("--batch-rates", default="5,20")
    opts = parser.parse_args()
    lake = source_lake()
    rows = scoring_rows(lake, 500)
    payloads = {"1 row": rows[0] + "\n", "500 rows": "\n".join(rows) + "\n"}
    rates = {"1 row": [float(r) for r in opts.single_rates.split(",")],
             "500 rows": [float(r) for r in opts.batch_rates.split(",")]}
    results = []
    with local_endpoint(published_model(lake), opts.instances) as (runtime, name):
        url = f"{runtime}/endpoints/{name}/invocations"
        for label, body in payloads.items():
            asyncio.run(fixed_rate(url, body, 20, 1))  # warm up connections and the models
            for rate in rates[label]:
                results.append((label, f"fixed {rate:g}/s", asyncio.run(fixed_rate(url, body, rate, opts.seconds))))
            results.append((label, f"saturation, {opts.concurrency} clients",
                            asyncio.run(saturation(url, body, opts.concurrency, opts.seconds))))
    print(f"\nlocal endpoint, {opts.instances} container instance(s) behind the runtime router, "
          f"{opts.seconds:g} s per run, loopback\n")
    print("requests = answered; req/s = answered per second of the run; errors = failed or unanswered in time\n")
    print(f"| {'payload':<8} | {'load':<24} | {'requests':>8} | {'req/s':>8} | {'rows/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |")
    print(f"|{'-' * 10}|{'-' * 26}|{'-' * 10}|{'-' * 10}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for label, load, r in results:
        per = 1 if label == "1 row" else 500
        print(f"| {label:<8} | {load:<24} | {r['requests']:>8} | {r['rps']:>8.1f} | {r['rps'] * per:>9,.0f} | "
              f"{r['p50']:>7.1f} | {r['p99']:>7.1f} | {r['errors']:>6} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
