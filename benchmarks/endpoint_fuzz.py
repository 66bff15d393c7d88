"""A long fuzz of the local endpoint, with the memory of each process watched as it goes.

The test suite's fuzz (tests/unit/test_endpoint_fuzz.py) sends 2,000 derandomized requests; this
sends many more with fresh seeds, every other one a valid request of 1 to 500 scoring rows of the
published model, over one keep-alive connection, and samples the resident memory (VmRSS) of the
router and of both containers at checkpoints. A leak shows as growth that keeps going after the
first checkpoints; allocator warm-up shows as a step that levels off.

    .venv/bin/python benchmarks/endpoint_fuzz.py [--requests 20000] [--checkpoints 8]

Needs `make run` first (the published model and the sample's scoring input). Bounded traffic to
127.0.0.1 only; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

from _serving import ENDPOINT, local_endpoint, published_model, scoring_rows, source_lake

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests/unit")]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="requests in all, half of them fuzz")
    parser.add_argument("--checkpoints", type=int, default=8)
    args = parser.parse_args()

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from test_endpoint_fuzz import Client, _check, _headers, accepts, bodies, content_types, names

    from local_aws import endpoints

    lake = source_lake()
    rows = scoring_rows(lake, 500)
    rng = random.Random(0)
    with local_endpoint(published_model(lake)) as (url, name):
        router_pid = json.load(urllib.request.urlopen(f"{url}/ping", timeout=5))["pid"]
        containers = [i["pid"] for i in endpoints.describe_endpoint(name)["Local"]["Instances"]]
        processes = {"router": router_pid, **{f"container-{k}": pid for k, pid in enumerate(containers)}}
        parts = urllib.parse.urlsplit(url)
        client = Client(parts.hostname, parts.port)
        path = f"/endpoints/{ENDPOINT}/invocations"
        samples: list[tuple[int, dict]] = []
        valid_ok = Counter()

        def valid() -> None:
            body = "".join(line + "\n" for line in rng.sample(rows, rng.choice([1, 1, 10, 100, 500])))
            status, _, _ = client.post(path, body.encode(), {"Content-Type": "text/csv"})
            valid_ok[status] += 1

        for _ in range(200):  # warm-up: the first allocations are not a leak
            valid()
        samples.append((sum(client.statuses.values()), {k: rss_mb(p) for k, p in processes.items()}))
        step = max(args.requests // args.checkpoints, 1)
        started = time.perf_counter()

        @settings(max_examples=args.requests // 2, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(body=bodies, content_type=content_types, accept=accepts,
               name=st.one_of(st.just(ENDPOINT), st.just(ENDPOINT), st.just(ENDPOINT), names), chunked=st.booleans())
        def fuzz(body, content_type, accept, name, chunked):
            target = f"/endpoints/{urllib.parse.quote(name, safe='')}/invocations"
            _check(*client.post(target, body, _headers(content_type, accept), chunked))
            valid()
            sent = sum(client.statuses.values())
            if sent - samples[-1][0] >= step:
                samples.append((sent, {k: rss_mb(p) for k, p in processes.items()}))

        fuzz()
        seconds = time.perf_counter() - started
        samples.append((sum(client.statuses.values()), {k: rss_mb(p) for k, p in processes.items()}))
        client.close()

    total = sum(client.statuses.values())
    print(f"\n{total} requests in {seconds:.0f} s ({total / seconds:.0f}/s), statuses {dict(sorted(client.statuses.items()))}, "
          f"valid requests answered 200: {valid_ok[200]} of {sum(valid_ok.values())}, reconnects {client.reconnects}")
    print("\n| requests | " + " | ".join(f"{k} MB" for k in processes) + " |")
    print("|---|" + "---|" * len(processes))
    for sent, rss in samples:
        print(f"| {sent:,} | " + " | ".join(f"{rss[k]:.0f}" for k in processes) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
