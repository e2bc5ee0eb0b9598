"""Summary of bench/tracing.sh: CPU per request of each arm, and the spans per traced request.

Usage: python3 bench/tracing_summary.py OUT.json DURATION SPANS
OUT.json is bench/compare.sh --json with --proxy-bins arms base and baseon (optional), off and on;
DURATION the length of each measured run (5s); SPANS the spans the receiver accepted.
"""
import json
import statistics
import sys


def main():
    rep = json.load(open(sys.argv[1]))
    duration, spans = float(sys.argv[2].rstrip("s")), int(sys.argv[3])
    cpu, rate = {}, {}
    for row in rep["rows"]:
        if row.get("error"):
            sys.exit(f"{row['peer']} {row['scenario']}: {row['error']}")
        arm = row["peer"].split("@", 1)[1]
        cpu[(row["scenario"], arm)] = [f["cpu_ms_per_1k_req"] for f in row["runs"]]
        rate[(row["scenario"], arm)] = [f["req_per_s"] for f in row["runs"]]
    arms = [a for a in ("base", "baseon", "off", "on") if any(k[1] == a for k in cpu)]
    print(f"\nCPU ms per 1,000 requests of the proxy (proxy-base, {rep['meta']['shape']}; "
          "every run measures every arm in turn):")
    traced = 0.0
    for sc in sorted({k[0] for k in cpu}):
        for arm in arms:
            runs = cpu[(sc, arm)]
            print(f"  {sc:5} {arm:6}  runs {' '.join(f'{x:6.1f}' for x in runs)}   "
                  f"median {statistics.median(runs):6.1f}   req/s median {statistics.median(rate[(sc, arm)]):7.0f}")

        def ratio(a, b):
            return statistics.median(x / y for x, y in zip(cpu[(sc, a)], cpu[(sc, b)]))

        line = f"  {sc:5} on/off {ratio('on', 'off'):.3f}"
        if "base" in arms:
            line += f"   off/base {ratio('off', 'base'):.3f}"
        if "baseon" in arms:
            line += f"   baseon/base {ratio('baseon', 'base'):.3f}   on/baseon {ratio('on', 'baseon'):.3f}"
        print(line + "   (medians of the per-run ratios)")
        traced += sum(rate[(sc, "on")]) * duration
        if "baseon" in arms:
            traced += sum(rate[(sc, "baseon")]) * duration
    print(f"  spans the receiver accepted per measured traced request: {spans / traced:.2f} "
          f"({spans} spans, {traced:.0f} measured requests)")


if __name__ == "__main__":
    main()
