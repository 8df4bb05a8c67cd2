#!/usr/bin/env bash
# Draws a `make bench` record as a chart: for each figure, each path's ratio to kernel NAT
# in the same run (1.0 = kernel NAT's figure; bulk and new connections: higher is better;
# ping-pong round trip: lower is better). gnuplot (gnuplot-nox) renders the PNG.
# Usage: Benchmarks/bench-chart.sh RESULTS.json OUTPUT.png
set -euo pipefail
results=$1
output=$2
data=$(mktemp)
trap 'rm -f "$data"' EXIT
python3 - "$results" >"$data" <<'PYTHON'
import json, sys
record = json.load(open(sys.argv[1]))
figures = [("bulk1_gbps", "bulk, 1 stream"), ("bulk4_gbps", "bulk, 4 streams"),
           ("connections_per_s", "new conn./s"), ("pingpong_median_us", "RTT (lower: better)")]
paths = [path for path in record["paths"] if path != "kernel-nat"]
print("figure " + " ".join(f'"{path}"' for path in paths))
for key, label in figures:
    values = [record["ratio"][path].get(key) for path in paths]
    print(f'"{label}" ' + " ".join("NaN" if value is None else f"{value:.3f}" for value in values))
PYTHON
columns=$(head -1 "$data" | wc -w)
started=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("started", ""))' "$results")
gnuplot <<GNUPLOT
set terminal pngcairo size 1100,520 font "DejaVu Sans,11"
set output "$output"
set title "vpm make bench, ${started}: ratio to kernel NAT in the same run (median of rounds)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set xrange [-0.6:3.6]
set ylabel "ratio to kernel NAT"
set grid ytics
set key outside right top
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linewidth 2 linecolor rgb "#444444"
plot for [column=2:${columns}] "$data" using column:xtic(1) title columnheader(column)
GNUPLOT
echo "$output"
