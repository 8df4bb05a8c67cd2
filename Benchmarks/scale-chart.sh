#!/usr/bin/env bash
# Draws a `make bench-scale` record: for each case, each datapath's new connections a second
# and round-trip median as a ratio to the same datapath's case with no extra work (flows 0),
# and the engine's bytes per live flow. Flat is 1.0. gnuplot (gnuplot-nox) renders the PNG.
# Usage: Benchmarks/scale-chart.sh RESULTS.json OUTPUT.png
set -euo pipefail
results=$1
output=$2
data=$(mktemp)
trap 'rm -f "$data"' EXIT
python3 - "$results" >"$data" <<'PYTHON'
import json, sys
record = json.load(open(sys.argv[1]))
cases = record["cases"]
datapaths = sorted({c["datapath"] for c in cases})
base = {c["datapath"]: c for c in cases if c["case"] == "flows" and c["value"] == 0}
labels = []
for c in cases:
    label = f'{c["case"]} {c["value"]:,}'
    if c["case"] == "flows" and c["value"] == 0 or label in labels:
        continue
    labels.append(label)
columns = [f"{d} conn/s" for d in datapaths] + [f"{d} RTT" for d in datapaths]
print("case " + " ".join(f'"{column}"' for column in columns))
for label in labels:
    row = []
    for key in ("connect", "pingpong"):
        for d in datapaths:
            match = [c for c in cases if f'{c["case"]} {c["value"]:,}' == label and c["datapath"] == d]
            if not match or d not in base:
                row.append("NaN")
            elif key == "connect":
                row.append(f'{match[0]["connect"]["perSecond"] / base[d]["connect"]["perSecond"]:.3f}')
            else:
                row.append(f'{match[0]["pingpong"]["medianUs"] / base[d]["pingpong"]["medianUs"]:.3f}')
    print(f'"{label}" ' + " ".join(row))
PYTHON
columns=$(head -1 "$data" | wc -w)
gnuplot <<GNUPLOT
set terminal pngcairo size 1200,520 font "DejaVu Sans,11"
set output "$output"
set title "vpm make bench-scale, $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["started"])' "$results"): ratio to the same datapath with no extra work (flat = 1)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set key outside right top vertical
set xtics rotate by -20
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2
plot for [i=2:$columns] "$data" using i:xtic(1) title columnheader(i)
GNUPLOT
