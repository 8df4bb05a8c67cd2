#!/usr/bin/env bash
# Builds the libFuzzer harnesses and runs each for SECONDS (default 60). See Fuzz/README.md.
#
#   Fuzz/run.sh [SECONDS]        build both, run PacketFuzz then NegotiationFuzz
#   FUZZ_TARGETS=PacketFuzz Fuzz/run.sh 300
#   Fuzz/run.sh --build-only
#   FUZZ_PREBUILT=1 Fuzz/run.sh 20   run the harnesses --build-only made, without building
#   Fuzz/run.sh --coverage       line coverage of the sources by the saved corpora (llvm-cov)
#
# Exits non-zero when a harness finds a crash (or an invariant violation, a leak, an
# out-of-memory or a timeout) and prints where the input that triggers it was saved.
# Everything it writes is under Fuzz/.build-fuzz/ (git-ignored): binaries, the SwiftPM scratch
# build of swift-crypto, the growing corpora, crash inputs and logs.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/Fuzz/.build-fuzz
SPM=$OUT/spm
SWIFT=${SWIFT:-swift}
SWIFTC=${SWIFTC:-swiftc}
TARGETS=${FUZZ_TARGETS:-PacketFuzz NegotiationFuzz}

MODE=fuzz
SECONDS_EACH=60
case "${1:-}" in
    --build-only) MODE=build ;;
    --coverage) MODE=coverage ;;
    "") ;;
    *[!0-9]*) echo "usage: Fuzz/run.sh [SECONDS | --build-only | --coverage]" >&2; exit 2 ;;
    *) SECONDS_EACH=$1 ;;
esac

mkdir -p "$OUT/bin" "$OUT/logs"

# Swift's own crash backtracer reads the stack in a way ASan reports as a stack-buffer-underflow,
# which hides the real report; without it a trap reaches libFuzzer, which prints the stack.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}

# Both harnesses: libFuzzer + AddressSanitizer, optimised as the engine ships (-O keeps
# preconditions and overflow checks; an out-of-bounds raw-pointer access is ASan's to catch).
SWIFTFLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g
            -enable-upcoming-feature InternalImportsByDefault -use-ld=lld)
SUFFIX=
if [ "$MODE" = coverage ]; then
    # Same harnesses, built for llvm-cov instead of ASan, to replay the corpora once.
    SWIFTFLAGS=(-sanitize=fuzzer -profile-generate -profile-coverage-mapping -parse-as-library -Onone
                -enable-upcoming-feature InternalImportsByDefault -use-ld=lld)
    SUFFIX=-coverage
fi

build_packet() {
    echo "== building PacketFuzz (Sources/Packet + Fuzz/PacketFuzz.swift)"
    "$SWIFTC" "${SWIFTFLAGS[@]}" -module-name PacketFuzz \
        Sources/Packet/*.swift Fuzz/PacketFuzz.swift -o "$OUT/bin/PacketFuzz$SUFFIX"
}

# The decoder's files only: NegotiationMessage*.swift and NegotiationRequest.swift need Crypto
# and Foundation, not SwiftNIO. swift-crypto is built once by SwiftPM into its own scratch
# path (never .build/), then its object files are linked in.
NEGOTIATION_SOURCES=(
    Sources/Negotiation/NegotiationMessage.swift
    Sources/Negotiation/NegotiationMessage+JSON.swift
    Sources/Negotiation/NegotiationMessage+Key.swift
    Sources/Negotiation/NegotiationMessageError.swift
    Sources/Negotiation/NegotiationRequest.swift
)

build_negotiation() {
    echo "== building swift-crypto (SwiftPM, scratch path Fuzz/.build-fuzz/spm)"
    if [ ! -d "$SPM/checkouts" ] && [ -d .build/checkouts ] && [ -d .build/repositories ]; then
        # Reuse the dependencies the main build already resolved, so no network is needed.
        # Copied, not shared: nothing is ever written into .build/.
        mkdir -p "$SPM"
        cp -a .build/repositories .build/checkouts .build/workspace-state.json "$SPM/"
    fi
    if ! "$SWIFT" build --package-path "$ROOT" --scratch-path "$SPM" -c release --target Crypto \
            > "$OUT/logs/crypto-build.log" 2>&1; then
        tail -30 "$OUT/logs/crypto-build.log" >&2
        echo "run.sh: swift-crypto did not build (log: Fuzz/.build-fuzz/logs/crypto-build.log)" >&2
        return 1
    fi
    local release
    release=$("$SWIFT" build --package-path "$ROOT" --scratch-path "$SPM" -c release --show-bin-path)
    local objects=()
    local dir
    for dir in Crypto CryptoBoringWrapper CCryptoBoringSSL CCryptoBoringSSLShims; do
        while IFS= read -r -d '' object; do objects+=("$object"); done \
            < <(find "$release/$dir.build" -name '*.o' -print0)
    done
    echo "== building NegotiationFuzz (${#NEGOTIATION_SOURCES[@]} files of Sources/Negotiation + Fuzz/NegotiationFuzz.swift)"
    "$SWIFTC" "${SWIFTFLAGS[@]}" -module-name NegotiationFuzz -I "$release/Modules" \
        "${NEGOTIATION_SOURCES[@]}" Fuzz/NegotiationFuzz.swift "${objects[@]}" \
        -o "$OUT/bin/NegotiationFuzz$SUFFIX"
}

# The committed seeds: packets as hex text (one file per packet), negotiation inputs as is.
prepare_seeds() {
    local target=$1 seeds=$OUT/seeds/$1
    rm -rf "$seeds"
    mkdir -p "$seeds" "$OUT/corpus/$target" "$OUT/artifacts/$target"
    case $target in
        PacketFuzz)
            local file
            for file in Fuzz/seeds/packet/*.hex; do
                xxd -r -p "$file" > "$seeds/$(basename "$file" .hex)"
            done
            ;;
        NegotiationFuzz)
            cp Fuzz/seeds/negotiation/* "$seeds/"
            ;;
    esac
}

run_target() {
    local target=$1
    local log=$OUT/logs/$target.log artifacts=$OUT/artifacts/$target
    local extra=()
    case $target in
        PacketFuzz) extra=(-max_len=4096 -use_value_profile=1) ;;
        # The longest accepted line is 4096 bytes, plus the mode byte.
        NegotiationFuzz) extra=(-max_len=4200 -dict=Fuzz/negotiation.dict) ;;
    esac
    prepare_seeds "$target"
    # Crash inputs from an earlier run would otherwise be reported again.
    find "$artifacts" -maxdepth 1 -type f -delete
    echo "== fuzzing $target for ${SECONDS_EACH}s (log: ${log#"$ROOT"/})"
    local status=0
    # The first directory receives new inputs; the seeds and the committed corpus (what
    # longer runs found, minimized: Fuzz/corpus/, see Fuzz/README.md) are only read.
    local committed=()
    [ -d "Fuzz/corpus/$target" ] && committed=("Fuzz/corpus/$target")
    "$OUT/bin/$target" "${extra[@]}" \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$OUT/corpus/$target" "$OUT/seeds/$target" "${committed[@]}" > "$log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "!! $target FAILED (exit $status). Report:" >&2
        grep -E -A40 '^==[0-9]+== ?ERROR|Fatal error|invariant violated|^SUMMARY' "$log" | head -80 >&2 || tail -40 "$log" >&2
        local input
        for input in "$artifacts"/*; do
            [ -e "$input" ] || continue
            echo "!! input: ${input#"$ROOT"/} ($(wc -c < "$input") bytes)" >&2
            xxd "$input" | head -20 >&2
            echo "!! reproduce: SWIFT_BACKTRACE=enable=no Fuzz/.build-fuzz/bin/$target ${input#"$ROOT"/}" >&2
        done
        return 1
    fi
    echo "   $target: no crash; corpus: $(find "$OUT/corpus/$target" -type f | wc -l) inputs in ${OUT#"$ROOT"/}/corpus/$target"
}

for target in $TARGETS; do
    case $target in
        PacketFuzz | NegotiationFuzz) ;;
        *) echo "run.sh: unknown target $target (PacketFuzz, NegotiationFuzz)" >&2; exit 2 ;;
    esac
    # FUZZ_PREBUILT=1: run what an earlier --build-only made (make test builds the harnesses
    # beside its tests).
    if [ "${FUZZ_PREBUILT:-0}" = 1 ] && [ "$MODE" = fuzz ]; then
        [ -x "$OUT/bin/$target" ] || { echo "run.sh: FUZZ_PREBUILT=1, but no $OUT/bin/$target: run Fuzz/run.sh --build-only first" >&2; exit 2; }
        continue
    fi
    case $target in
        PacketFuzz) build_packet ;;
        NegotiationFuzz) build_negotiation ;;
    esac
done
[ "$MODE" = build ] && exit 0

if [ "$MODE" = coverage ]; then
    # The toolchain's own llvm tools: the system ones may not read this compiler's profiles.
    TOOLS=$(dirname "$(command -v "$SWIFTC")")
    mkdir -p "$OUT/coverage"
    for target in $TARGETS; do
        prepare_seeds "$target"
        profile=$OUT/coverage/$target
        rm -f "$profile".profraw
        LLVM_PROFILE_FILE=$profile.profraw "$OUT/bin/$target-coverage" -runs=0 \
            "$OUT/corpus/$target" "$OUT/seeds/$target" > "$OUT/logs/$target-coverage.log" 2>&1
        "$TOOLS/llvm-profdata" merge -sparse "$profile.profraw" -o "$profile.profdata"
        case $target in
            PacketFuzz) sources=(Sources/Packet/*.swift) ;;
            NegotiationFuzz) sources=("${NEGOTIATION_SOURCES[@]}") ;;
        esac
        echo "== $target: coverage of ${#sources[@]} source files by $(find "$OUT/corpus/$target" "$OUT/seeds/$target" -type f | wc -l) inputs"
        "$TOOLS/llvm-cov" report "$OUT/bin/$target-coverage" -instr-profile="$profile.profdata" "${sources[@]}"
        "$TOOLS/llvm-cov" show "$OUT/bin/$target-coverage" -instr-profile="$profile.profdata" \
            -show-line-counts-or-regions "${sources[@]}" > "$profile.txt"
        echo "   line by line: ${profile#"$ROOT"/}.txt"
    done
    exit 0
fi

failed=()
for target in $TARGETS; do
    run_target "$target" || failed+=("$target")
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "run.sh: crash found in: ${failed[*]} (inputs under Fuzz/.build-fuzz/artifacts/)" >&2
    exit 1
fi
echo "run.sh: no crash in $TARGETS"
