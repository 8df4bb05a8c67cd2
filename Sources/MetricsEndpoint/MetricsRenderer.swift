public import Control
import Prometheus
import Synchronization

/// Turns snapshots into the Prometheus text format through swift-prometheus' registry.
///
/// The engine's counters are plain integers its threads own (`vpm stats` sums them on
/// request); each scrape publishes them: a counter moves by what it grew since the last
/// scrape, a gauge is set. Names come from `EngineStatistics.counters` (key → snake case,
/// `vpm_` prefix, `_total` for counters), help texts too: the table `vpm stats` renders is
/// the one declaration.
public final class MetricsRenderer: Sendable {
    private struct State {
        var counters: [String: Counter] = [:]
        var gauges: [String: Gauge] = [:]
        var published: [String: UInt64] = [:]
    }

    private let registry = PrometheusCollectorRegistry()
    private let state = Mutex(State())

    public init() {}

    /// The metric name of a counter of the table: `packetsQueued` → `vpm_packets_queued_total`.
    public static func name(_ counter: EngineCounter) -> String {
        "vpm_" + snakeCase(counter.key) + (counter.kind == .counter ? "_total" : "")
    }

    static func snakeCase(_ key: String) -> String {
        var name = ""
        for character in key {
            if character.isUppercase {
                name += "_" + character.lowercased()
            } else {
                name.append(character)
            }
        }
        return name
    }

    /// The text a scrape answers with.
    public func render(_ snapshot: MetricsSnapshot) -> String {
        state.withLock { state in
            publish(snapshot, into: &state)
            return registry.emitToString() + Self.histogram(
                "vpm_first_verdict_seconds",
                help: "time from the batch carrying a connection's first packet to its verdict (held SYNs: with their negotiation)",
                snapshot.queues.map { (["queue": "\($0.queue)"], $0.statistics.firstVerdict) })
        }
    }

    /// A histogram in the text format. swift-prometheus' histograms record observations
    /// themselves; ours are counted by the queue threads (no lock on the packet path), so
    /// their already-bucketed counts are written here.
    static func histogram(_ name: String, help: String, _ series: [([String: String], HistogramRecord)]) -> String {
        guard !series.isEmpty else { return "" }
        var text = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (labels, histogram) in series {
            let pairs = sorted(labels).map { "\($0.0)=\"\($0.1)\"" }
            var cumulative: UInt64 = 0
            for (index, count) in histogram.buckets.enumerated() {
                cumulative += count
                let bound = index < histogram.bounds.count ? "\(histogram.bounds[index])" : "+Inf"
                text += "\(name)_bucket{\((pairs + ["le=\"\(bound)\""]).joined(separator: ","))} \(cumulative)\n"
            }
            let plain = pairs.isEmpty ? "" : "{\(pairs.joined(separator: ","))}"
            text += "\(name)_sum\(plain) \(histogram.sum)\n\(name)_count\(plain) \(histogram.count)\n"
        }
        return text
    }

    private func publish(_ snapshot: MetricsSnapshot, into state: inout State) {
        gauge("vpm_info", ["version": snapshot.version, "datapath": snapshot.datapath],
              help: "vpm's version and datapath (always 1)", value: 1, &state)
        for counter in EngineStatistics.counters {
            switch counter.scope {
            case .queue:
                for (queue, statistics) in snapshot.queues {
                    publish(counter, ["queue": "\(queue)"], statistics[keyPath: counter.value], &state)
                }
            case .engine:
                publish(counter, [:], snapshot.total[keyPath: counter.value], &state)
            }
        }
        for (queue, statistics) in snapshot.queues {
            for (reason, value) in statistics.reasons {
                count("vpm_drops_by_reason_total", ["queue": "\(queue)", "reason": reason],
                      help: "packets dropped or connections refused, by reason (DropReason identifiers)", value: value, &state)
            }
        }
        for (reason, value) in snapshot.total.reasonsInKernel {
            count("vpm_refused_in_kernel_by_reason_total", ["reason": reason],
                  help: "connection starts the socket datapath's program refused, by reason (DropReason identifiers)", value: value, &state)
        }
        for (outcome, value) in snapshot.total.negotiations {
            count("vpm_negotiations_total", ["outcome": outcome],
                  help: "negotiations this engine served as the server side, by outcome", value: value, &state)
        }
        // Groups that emptied since the last scrape read 0, not their last count.
        let present = Set(snapshot.flows.map { Self.key("vpm_flows_by_aid", ["aid": $0.aid, "mode": $0.mode]) })
        for (key, gauge) in state.gauges where key.hasPrefix("vpm_flows_by_aid{") && !present.contains(key) {
            gauge.set(to: 0)
        }
        for group in snapshot.flows {
            gauge("vpm_flows_by_aid", ["aid": group.aid, "mode": group.mode],
                  help: "flows in the flow table, by AID and mode", value: UInt64(group.count), &state)
        }
        gauge("vpm_virtual_ports_in_use", [:], help: "virtual ports held by instances", value: UInt64(snapshot.virtualPortsInUse), &state)
        gauge("vpm_virtual_ports_free", [:], help: "virtual ports left to allocate", value: UInt64(snapshot.virtualPortsFree), &state)
    }

    private func publish(_ counter: EngineCounter, _ labels: [String: String], _ value: UInt64, _ state: inout State) {
        switch counter.kind {
        case .counter: count(Self.name(counter), labels, help: counter.help, value: value, &state)
        case .gauge: gauge(Self.name(counter), labels, help: counter.help, value: value, &state)
        }
    }

    /// Moves the counter up to `value` (counters only grow; one that went back, as after an
    /// engine's counters restarted, keeps its last value until it passes it).
    private func count(_ name: String, _ labels: [String: String], help: String, value: UInt64, _ state: inout State) {
        let key = Self.key(name, labels)
        let counter = state.counters[key] ?? {
            let made = registry.makeCounter(descriptor: Self.descriptor(name, help), labels: Self.sorted(labels))
            state.counters[key] = made
            return made
        }()
        let last = state.published[key] ?? 0
        if value > last {
            counter.increment(by: Int64(clamping: value - last))
            state.published[key] = value
        }
    }

    private func gauge(_ name: String, _ labels: [String: String], help: String, value: UInt64, _ state: inout State) {
        let key = Self.key(name, labels)
        let gauge = state.gauges[key] ?? {
            let made = registry.makeGauge(descriptor: Self.descriptor(name, help), labels: Self.sorted(labels))
            state.gauges[key] = made
            return made
        }()
        gauge.set(to: Double(value))
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    private static func sorted(_ labels: [String: String]) -> [(String, String)] {
        labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    private static func key(_ name: String, _ labels: [String: String]) -> String {
        name + "{" + sorted(labels).map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
    }
}
