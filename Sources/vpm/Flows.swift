import ArgumentParser
import Control
import Foundation

struct Flows: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the running engine's translations, one flow per line.",
        discussion: """
            Aligned columns for people, --json for programs. The flow count goes to stderr. \
            --watch follows the table as it changes, like `conntrack -E`: [NEW], [UPDATE] (a \
            state change) and [DESTROY] lines as they happen, or JSON lines with --json, until \
            interrupted; the filters apply to each event's flow.
            """)

    @Option(help: "Control socket path.") var socket = ControlSocket.defaultPath
    @Flag(help: "Print JSON (an array of flows, one per line; with --watch, one event object per line).") var json = false
    @Flag(help: "Follow the flow table: print each new flow, state change and removal as it happens.") var watch = false
    @Option(help: "Only flows of this AID.") var aid: String?
    @Option(help: "Only flows with this initial or virtual port.") var port: UInt16?
    @Option(help: "Only flows in this state (opening, established, closing, closed, udp, udpStream).") var state: String?

    func matches(_ flow: FlowRecord) -> Bool {
        (aid == nil || flow.aid == aid)
            && (port == nil || flow.initialPort == port || flow.virtualPort == port)
            && (state == nil || flow.state == state)
    }

    func run() throws {
        if watch { return try follow() }
        // The table comes a piece per line (every line but the last says `more`), however
        // large it is; an engine older than pieces answers in one line, which is also the last.
        var request = ControlRequest(.flows)
        request.pieces = true
        var received: [FlowRecord] = []
        var complete = false
        do {
            try ControlSocket.stream(request, to: socket, timeoutSeconds: 30) { response in
                if let error = response.error { throw Failure("the engine says: \(error)") }
                received += (response.flows ?? []).filter(matches)
                complete = response.more != true
                return !complete
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure("\(error)")
        }
        guard complete else {
            throw Failure("the engine closed the connection before the last flows: it stopped, or this vpm read too slowly (30 s on one piece); run `vpm flows` again")
        }
        let flows = received
            .sorted { ($0.aid, $0.client, $0.clientPort) < ($1.aid, $1.client, $1.clientPort) }
        if json {
            printFlowsJSON(flows)
        } else {
            print(FlowRecord.table(flows), terminator: "")
        }
        log("\(flows.count) flow\(flows.count == 1 ? "" : "s")")
    }

    /// `--json`: an array with one flow per line, written by hand (`FlowRecord.appendJSON`, the
    /// keys and values Foundation's encoder writes) a megabyte at a time, so a table of a
    /// million flows prints in seconds, without a second copy of the output in memory.
    private func printFlowsJSON(_ flows: [FlowRecord]) {
        var out: [UInt8] = [UInt8(ascii: "[")]
        out.reserveCapacity(1 << 20 + 4096)
        for (index, flow) in flows.enumerated() {
            out.append(contentsOf: (index == 0 ? "\n" : ",\n").utf8)
            flow.appendJSON(to: &out)
            if out.count >= 1 << 20 {
                FileHandle.standardOutput.write(Data(out))
                out.removeAll(keepingCapacity: true)
            }
        }
        out.append(contentsOf: (flows.isEmpty ? "]\n" : "\n]\n").utf8)
        FileHandle.standardOutput.write(Data(out))
    }

    /// Written at once, unbuffered: a pipe to grep sees each event as it happens.
    private func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// `--watch`: one line per event.
    private func follow() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var started = false
        do {
            try ControlSocket.stream(ControlRequest(.watch), to: socket) { response in
                if let error = response.error { throw Failure("the engine says: \(error)") }
                if !started {
                    started = true
                    log("watching the flow table of \(socket); interrupt to stop")
                }
                if let lost = response.lost {
                    log("\(lost) event\(lost == 1 ? "" : "s") lost: this watcher fell behind the engine's event ring")
                }
                for event in response.events ?? [] where matches(event.flow) {
                    if json {
                        emit(String(decoding: try encoder.encode(event), as: UTF8.self))
                    } else {
                        emit(FlowRecord.eventLine(event))
                    }
                }
                return true
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure("\(error)")
        }
        throw Failure("the engine closed the connection (it stopped?); run `vpm flows --watch` again once it runs")
    }
}
