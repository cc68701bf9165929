#!/usr/bin/env python3
"""Load generator for llama_server (or any OpenAI-compatible server): N clients send streamed
completions of a prompt of P tokens asking for D new tokens, and it reports requests/s, output
tokens/s, time to first token (TTFT) and inter-token latency (ITL) percentiles.

  python3 bench/serve_bench.py --url http://127.0.0.1:8080 --concurrency 1,8,32,64 \\
      --prompt-tokens 128 --max-tokens 128 --requests 4

The prompt is token ids (the /v1/completions extension llama_server takes), so its length is
exact whatever the tokenizer; --text sends a text prompt instead. Each stream's tokens are
counted from its usage chunk; ITL is the time between consecutive text chunks of a stream.

It speaks HTTP itself (asyncio, standard library only) rather than through the openai client:
the GPU machine has no PyPI, and at thousands of chunks a second the client's own parsing would
be what is measured."""
import argparse
import asyncio
import json
import random
import statistics
import sys
import time

from urllib.parse import urlsplit


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def read_chunked(reader):
    """Yields the pieces of a chunked HTTP body as they arrive."""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def one_request(args, prompt):
    """One streamed completion: TTFT, the gaps between text chunks, completion tokens."""
    url = urlsplit(args.url)
    body = json.dumps({"model": args.model, "prompt": prompt, "max_tokens": args.max_tokens,
                       "temperature": args.temperature, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    auth = f"Authorization: Bearer {args.api_key}\r\n" if args.api_key else ""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
    writer.write((f"POST /v1/completions HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                  f"{auth}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
    await writer.drain()
    status = (await reader.readline()).decode()
    if " 200 " not in status:
        raise RuntimeError(f"server answered {status.strip()}: {(await reader.read()).decode()[:500]}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    first, last, gaps, tokens, pending = None, None, [], 0, b""
    async for piece in read_chunked(reader):
        now = time.perf_counter()
        pending += piece
        *events, pending = pending.split(b"\n\n")
        for event in events:
            if not event.startswith(b"data: ") or event == b"data: [DONE]":
                continue
            chunk = json.loads(event[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if any(c.get("text") for c in chunk["choices"]):
                if first is None:
                    first = now
                else:
                    gaps.append(now - last)
                last = now
    writer.close()
    return {"ttft": (first or time.perf_counter()) - start, "itl": gaps, "tokens": tokens}


async def run_level(args, concurrency):
    rng = random.Random(concurrency)
    # Random ids in a plain range of the vocabulary (no control tokens), different per request.
    prompts = [[rng.randrange(1000, 20000) for _ in range(args.prompt_tokens)] if not args.text
               else args.text for _ in range(concurrency * args.requests)]
    queue = asyncio.Queue()
    for p in prompts:
        queue.put_nowait(p)
    results = []

    async def worker():
        while not queue.empty():
            results.append(await one_request(args, queue.get_nowait()))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    itl = [g for r in results for g in r["itl"]]
    ttft = [r["ttft"] for r in results]
    tokens = sum(r["tokens"] for r in results)
    return {"concurrency": concurrency, "requests": len(results), "seconds": round(wall, 3),
            "requests_per_s": round(len(results) / wall, 3), "output_tokens_per_s": round(tokens / wall, 1),
            "ttft_p50_ms": round(1e3 * percentile(ttft, 50), 2), "ttft_p99_ms": round(1e3 * percentile(ttft, 99), 2),
            "itl_p50_ms": round(1e3 * percentile(itl, 50), 2), "itl_p99_ms": round(1e3 * percentile(itl, 99), 2),
            "mean_tokens_per_request": round(statistics.mean(r["tokens"] for r in results), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--model", default="default")
    ap.add_argument("--concurrency", default="1,8,32,64", help="comma-separated levels (default 1,8,32,64)")
    ap.add_argument("--requests", type=int, default=4, help="requests per client at each level (default 4)")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--text", default=None, help="a text prompt instead of --prompt-tokens random ids")
    ap.add_argument("--json", action="store_true", help="one JSON object per level instead of a table")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if not args.json:
        print(f"{'conc':>5} {'reqs':>5} {'req/s':>8} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} "
              f"{'ITL p50':>8} {'ITL p99':>8}  (ms)")
    for c in levels:
        r = asyncio.run(run_level(args, c))
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{c:>5} {r['requests']:>5} {r['requests_per_s']:>8.2f} {r['output_tokens_per_s']:>10.1f} "
                  f"{r['ttft_p50_ms']:>9.1f} {r['ttft_p99_ms']:>9.1f} {r['itl_p50_ms']:>8.2f} {r['itl_p99_ms']:>8.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
