"""A 30 MB report attachment through the report proxy, against a direct S3 GET of the same object.

SeaweedFS (tests/s3server.py) is the S3; a stack runs as `make run` runs it, but with reports in
that S3. A finished run is made directly in the stack's database, its report being one 30 MB file
put straight into the bucket. Each round GETs the object directly from S3 (a presigned URL, plain
HTTP, read in 1 MB pieces and dropped) and through the proxy `GET /api/test-results/<id>/report/
data/big.zip` (with the token, so no redirect), in turn. The web processes' summed VmRSS is sampled
every 20 ms during the proxied GETs. Last lines: `throughput ratio: proxy/direct` (MB/s) and the
peak RSS growth.

    .venv/bin/python bench/proxy.py [--rounds N] [--log stack.log]
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/proxy.py` from anywhere
from bench.common import parse_args, stacks_in_scratch  # noqa: E402
from bench.sse import cpu_seconds, rss_kb  # noqa: E402
from supertest import config, create_app  # noqa: E402
from supertest.outcomes import PASSED  # noqa: E402
from supertest.services import runs  # noqa: E402
from tests.s3server import start_s3_server  # noqa: E402

SIZE = 30 * 1024 * 1024
BUCKET = "bench-test-artifacts"


FIRST_BYTES: dict[str, list[float]] = {}  # URL → seconds until the response's head, each GET


def timed_get(url: str, **kwargs: object) -> float:
    """Seconds to read the whole body, checking its length."""
    start = time.perf_counter()
    with requests.get(url, stream=True, timeout=60, **kwargs) as response:  # type: ignore[arg-type]
        FIRST_BYTES.setdefault(url, []).append(time.perf_counter() - start)
        response.raise_for_status()
        got = sum(len(chunk) for chunk in response.iter_content(1024 * 1024))
    if got != SIZE:
        raise RuntimeError(f"{url}: {got} bytes, not {SIZE}")
    return time.perf_counter() - start


def main() -> None:
    args = parse_args(__doc__, default_rounds=7)
    s3_dir = Path(tempfile.mkdtemp(prefix="st-bench-s3-"))
    s3 = start_s3_server(s3_dir)
    try:
        variant = {"S3_ENDPOINT": s3.endpoint, "AWS_REGION": s3.region, "AWS_ACCESS_KEY_ID": s3.access_key,
                   "AWS_SECRET_ACCESS_KEY": s3.secret_key, "S3_TEST_BUCKET_NAME": BUCKET}
        with stacks_in_scratch(args.log, variant) as bench:
            stack = bench.stacks[0]
            web = next(service.process.pid for service in stack.services if service.name == "web")
            app = create_app(config.from_env(stack.env))
            with app.app_context():
                run_id = runs.create_playground_run("// never queued", "proxy bench", trigger="api").id
                client = s3.client()
                try:
                    client.create_bucket(Bucket=BUCKET)
                except Exception:  # noqa: BLE001 (already there)
                    pass
                key = f"{run_id}/report/data/big.zip"
                client.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(SIZE), ContentType="application/zip")
                runs.finish(run_id, PASSED, report_store="s3")
            direct_url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key},
                                                       ExpiresIn=3600)
            proxy_url = f"{stack.url}/api/test-results/{run_id}/report/data/big.zip"
            headers = {"Authorization": f"Bearer {bench.auth.tokens[stack.url]}"}
            direct: list[float] = []
            proxied: list[float] = []
            cpu: list[float] = []  # the web processes' CPU seconds, each proxied GET
            idle = rss_kb(web)
            peak = idle
            sampling = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not sampling.wait(0.02):
                    peak = max(peak, rss_kb(web))

            timed_get(direct_url), timed_get(proxy_url, headers=headers)  # warm-up, uncounted
            idle = rss_kb(web)
            peak = idle
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            for n in range(1, args.rounds + 1):
                direct.append(timed_get(direct_url))
                before = cpu_seconds(web)
                proxied.append(timed_get(proxy_url, headers=headers))
                cpu.append(cpu_seconds(web) - before)
                print(f"round {n}: direct {SIZE / direct[-1] / 1e6:.0f} MB/s  "
                      f"proxy {SIZE / proxied[-1] / 1e6:.0f} MB/s", flush=True)
            sampling.set()
            sampler.join()
    finally:
        s3.stop()
        shutil.rmtree(s3_dir, ignore_errors=True)  # its 30 MB object and SeaweedFS's files
    a, b = SIZE / statistics.median(direct) / 1e6, SIZE / statistics.median(proxied) / 1e6
    print(f"median direct: {a:.0f} MB/s, proxy: {b:.0f} MB/s")
    print(f"until the response's head, median: direct {statistics.median(FIRST_BYTES[direct_url]) * 1000:.1f} ms, "
          f"proxy {statistics.median(FIRST_BYTES[proxy_url]) * 1000:.1f} ms")
    print(f"web processes' CPU a proxied GET, median: {statistics.median(cpu) * 1000:.0f} ms "
          f"(its wall time {statistics.median(proxied) * 1000:.0f} ms)")
    print(f"throughput ratio: {b / a:.2f}")
    print(f"web processes' RSS: {idle / 1024:.0f} MB before, peak {peak / 1024:.0f} MB "
          f"(+{(peak - idle) / 1024:.1f} MB)")


if __name__ == "__main__":
    main()
